"""The detectors: registry, output shapes, training steps, which layers binarize() binarizes,
and ONNX export (raw head outputs in the graph, NMS outside) against PyTorch in onnxruntime."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bibench.algorithms.base import BinarizedLayer
from bibench.binarize import binarize, binarized_layers
from bibench.models import build_model, get_architecture
from bibench.models.detection.common import ground_truth, pad_targets, split_targets
from bibench.models.detection.ssd import _map_sizes

pytestmark = pytest.mark.usefixtures("one_thread")

DETECTORS = ["faster_rcnn_r18", "faster_rcnn_r18_small", "ssd300_vgg16", "ssd300_vgg16_small"]
SHAPE = (1, 96, 96)


def targets() -> torch.Tensor:
    return pad_targets([torch.tensor([[8.0, 10, 40, 50], [50, 20, 90, 70]]),
                        torch.tensor([[20.0, 30, 70, 80]])],
                       [torch.tensor([1, 2]), torch.tensor([0])])


def example_input(model: nn.Module, images: torch.Tensor):
    if hasattr(model, "roi_head"):
        return images, torch.tensor([[0.0, 4, 4, 40, 40], [1.0, 10, 20, 80, 90]])
    return images


def test_targets_round_trip_without_padding_and_ignored_rows():
    (b0, l0), (b1, l1) = split_targets(targets())
    assert b0.tolist() == [[8, 10, 40, 50], [50, 20, 90, 70]] and l0.tolist() == [1, 2]
    assert b1.tolist() == [[20, 30, 70, 80]] and l1.tolist() == [0]
    flagged = pad_targets([torch.tensor([[1.0, 2, 3, 4], [5, 6, 7, 8]])], [torch.tensor([3, 4])],
                          [torch.tensor([False, True])])
    (boxes, labels), = split_targets(flagged)
    assert boxes.tolist() == [[1, 2, 3, 4]] and labels.tolist() == [3]
    gt = ground_truth(flagged)[0]
    assert gt["labels"].tolist() == [3, 4] and gt["difficult"].tolist() == [False, True]
    assert ground_truth(flagged, "iscrowd")[0]["iscrowd"].tolist() == [False, True]


def test_registered_as_cnns_with_head_policies():
    for name in DETECTORS:
        arch = get_architecture(name)
        assert arch.family == "cnn" and arch.keep_fp
    assert "body.rpn.*" in get_architecture("faster_rcnn_r18").keep_fp
    assert "cls_heads.*" in get_architecture("ssd300_vgg16").keep_fp


def test_ssd300_default_boxes_and_maps_at_300():
    model = build_model("ssd300_vgg16", (3, 300, 300), 20)
    assert _map_sizes(300) == [38, 19, 10, 5, 3, 1]
    # 38^2*4 + 19^2*6 + 10^2*6 + 5^2*6 + 3^2*4 + 1*4: the SSD paper's 8732 boxes
    assert model.priors.shape == (8732, 4)
    logits, deltas = model(torch.zeros(1, 3, 300, 300))
    assert logits.shape == (1, 8732, 21) and deltas.shape == (1, 8732, 4)
    first = model.priors[:4]  # cell (0, 0) at stride 8: centre (4, 4), sizes 21 and sqrt(21*45)
    assert (first[:, 2] - first[:, 0]).tolist() == pytest.approx(
        [21, (21 * 45) ** 0.5, 21 * 2**0.5, 21 / 2**0.5], rel=1e-5)
    assert ((first[:, :2] + first[:, 2:]) / 2).flatten().tolist() == pytest.approx([4.0] * 8)


def test_faster_rcnn_stride_16_and_fifteen_anchors():
    model = build_model("faster_rcnn_r18", (3, 96, 128), 20)
    features, logits, deltas = model.body(torch.zeros(1, 3, 96, 128))
    assert features.shape == (1, 256, 6, 8)
    assert logits.shape == (1, 6 * 8 * 15) and deltas.shape == (1, 6 * 8 * 15, 4)
    cls, reg = model.roi_head(features, torch.tensor([[0.0, 0, 0, 64, 64]]))
    assert cls.shape == (1, 21) and reg.shape == (1, 80)


@pytest.mark.parametrize("name", ["faster_rcnn_r18_small", "ssd300_vgg16_small"])
def test_training_step_reaches_backbone_and_heads(name):
    torch.manual_seed(0)
    model = build_model(name, SHAPE, 3)
    losses = model.loss(torch.rand(2, *SHAPE), targets())
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.weight.grad.abs().sum() > 0
    heads = [p for n, p in model.named_parameters() if "bbox_pred" in n or "reg_heads" in n]
    assert sum(p.grad.abs().sum() for p in heads) > 0


def test_ssd_overfits_one_image():
    torch.manual_seed(0)
    model = build_model("ssd300_vgg16_small", SHAPE, 3)
    images = torch.zeros(1, *SHAPE)
    images[0, 0, 10:50, 8:40] = 1.0
    goal = pad_targets([torch.tensor([[8.0, 10, 40, 50]])], [torch.tensor([1])])
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    first = None
    for _ in range(40):
        loss = sum(model.loss(images, goal).values())
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first
    best = model.eval().detect(images)[0]
    assert best["labels"][0].item() == 1


def expected_binary_layers(name: str) -> set[str]:
    if name.startswith("faster"):
        body = {f"body.layer{s}.{b}.conv{c}" for s in (1, 2, 3) for b in (0, 1) for c in (1, 2)}
        return body | {f"roi_head.layer4.{b}.conv{c}" for b in (0, 1) for c in (1, 2)}
    # the small SSD has conv-BN-ReLU blocks: VGG16 convs at these indices, conv1_1 (0) kept
    vgg = {f"features1.{i}" for i in (3, 7, 10, 14, 17, 20, 24, 27, 30)}
    return vgg | {f"features2.{i}" for i in (1, 4, 7, 11, 14)} | {
        f"extras.{k}.{i}" for k in range(4) for i in (0, 3)}


@pytest.mark.parametrize("name", ["faster_rcnn_r18_small", "ssd300_vgg16_small"])
def test_binarize_keeps_first_layer_and_heads_full_precision(name):
    arch = get_architecture(name)
    model = build_model(name, SHAPE, 3)
    images = torch.rand(2, *SHAPE)
    binary = binarize(model, "bnn", keep_fp=arch.keep_fp, keep_first_last=arch.keep_first_last,
                      example_input=example_input(model, images))
    assert {n for n, _ in binarized_layers(binary)} == expected_binary_layers(name)
    assert not any(isinstance(m, nn.ReLU) for m in binary.modules())
    for kept in ("body.conv1", "body.rpn.conv", "roi_head.cls_score", "features1.0",
                 "cls_heads.0", "reg_heads.5"):
        if kept.split(".")[0] in dict(binary.named_children()):
            assert not isinstance(binary.get_submodule(kept), BinarizedLayer)
    losses = binary.loss(images, targets())
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("name", ["faster_rcnn_r18_small", "ssd300_vgg16_small"])
@pytest.mark.parametrize("algorithm", [None, "bnn"])
def test_onnx_export_agrees_with_pytorch(tmp_path, name, algorithm):
    from bibench.export.detection import export_detector, ort_detect

    torch.manual_seed(0)
    model = build_model(name, SHAPE, 3)
    images = torch.rand(2, *SHAPE)
    if algorithm:
        model = binarize(model, algorithm, keep_fp=get_architecture(name).keep_fp,
                         example_input=example_input(model, images))
    model.eval()
    paths = export_detector(model, images, tmp_path)
    # onnxruntime's conv+BN fusion flips signs at 0 in an untrained binary net: off for those
    got, raw = ort_detect(model, paths, images, optimize=algorithm is None)
    want = model.detect(images)
    assert len(raw) >= 2 and all(torch.isfinite(r).all() for r in raw)
    if hasattr(model, "roi_head"):
        _, rpn_logits, rpn_deltas = model.body(images)
        assert torch.allclose(raw[0], rpn_logits, atol=1e-4)
        assert torch.allclose(raw[1], rpn_deltas, atol=1e-4)
    else:
        logits, deltas = model(images)
        assert torch.allclose(raw[0], logits, atol=1e-4)
        assert torch.allclose(raw[1], deltas, atol=1e-4)
    for g, w in zip(got, want, strict=True):
        assert len(w["boxes"]) > 0
        assert matched_fraction(g, w) >= 0.95 and matched_fraction(w, g) >= 0.95


def matched_fraction(a: dict, b: dict, top: int = 50) -> float:
    """Share of a's best `top` detections that b has too (same label, IoU > 0.99, score within
    1e-4). Untrained nets score many boxes alike: float noise may swap near-ties at the
    pre-NMS cut, so an exact element-wise comparison would test rounding, not the export."""
    from bibench.models.detection.ops import box_iou

    n = min(top, len(a["boxes"]))
    iou = box_iou(a["boxes"][:n], b["boxes"])
    same = ((a["labels"][:n, None] == b["labels"][None]) & (iou > 0.99)
            & ((a["scores"][:n, None] - b["scores"][None]).abs() < 1e-4))
    return same.any(dim=1).float().mean().item()
