"""ONNX export of the detectors: raw head outputs in the graph, decoding and NMS outside.

SSD300 is one graph: images -> (class logits, box deltas). Faster R-CNN is two graphs with the
proposal NMS between them: `body` (images -> stride-16 features, RPN logits, RPN deltas) and
`roi_head` (one image's features, RoIs -> class logits, box deltas). `ort_detect` runs the
graphs in onnxruntime and the model's own Python post-processing, so parity covers boxes and
scores after NMS as well as the raw outputs.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from bibench.export.onnx import Parity
from bibench.io import atomic_write
from bibench.latency.timing import ort_session
from bibench.models.detection.faster_rcnn import FasterRCNN

if TYPE_CHECKING:
    from bibench.export.forms import FormInput

GraphSpec = tuple[nn.Module, tuple[Tensor, ...], list[str], list[str], dict]


def detector_graphs(model: nn.Module, images: Tensor) -> dict[str, GraphSpec]:
    """The graphs to export: name -> (module, example inputs, input names, output names, axes)."""
    batch = {0: "batch"}
    if isinstance(model, FasterRCNN):
        features = model.body(images[:1])[0]
        rois = torch.tensor([[0.0, 0.0, 0.0, 32.0, 32.0], [0.0, 8.0, 4.0, 40.0, 60.0]])
        return {
            "body": (model.body, (images,), ["images"], ["features", "rpn_logits", "rpn_deltas"],
                     {"images": batch, "features": batch, "rpn_logits": batch,
                      "rpn_deltas": batch}),
            "roi_head": (model.roi_head, (features, rois), ["features", "rois"],
                         ["cls_logits", "box_deltas"],
                         {"rois": {0: "rois"}, "cls_logits": {0: "rois"},
                          "box_deltas": {0: "rois"}}),
        }
    return {"detector": (model, (images,), ["images"], ["cls_logits", "box_deltas"],
                         {"images": batch, "cls_logits": batch, "box_deltas": batch})}


def main_graph(model: nn.Module) -> nn.Module:
    """The graph that takes the images: the whole SSD, Faster R-CNN's body (backbone + RPN).
    The workflow's `model.onnx` of a detection cell; QONNX and OpenVINO forms lower it, and
    latency times it."""
    return model.body if isinstance(model, FasterRCNN) else model


def cell_graph_files(model: nn.Module, onnx: str | Path) -> dict[str, Path]:
    """Where a cell's graphs go: the main graph at `onnx` (model.onnx), any other graph
    beside it as model.<graph>.onnx (Faster R-CNN's roi_head)."""
    onnx = Path(onnx)
    names = ("body", "roi_head") if isinstance(model, FasterRCNN) else ("detector",)
    return {name: onnx if i == 0 else onnx.with_name(f"{onnx.stem}.{name}.onnx")
            for i, name in enumerate(names)}


def export_detector(model: nn.Module, images: Tensor, folder: str | Path,
                    opset: int = 18, files: dict[str, Path] | None = None) -> dict[str, Path]:
    """Write every graph of the detector as `<folder>/<name>.onnx`, or where `files` says
    (graph name -> path); each checked by onnx.checker."""
    model = model.eval()
    folder = Path(folder)
    paths = {}
    for name, (module, args, inputs, outputs, axes) in detector_graphs(model, images).items():
        path = Path(files[name]) if files else folder / f"{name}.onnx"

        def write(tmp: str, module=module, args=args, inputs=inputs, outputs=outputs,
                  axes=axes) -> None:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, args, tmp, dynamo=False, opset_version=opset,
                                  input_names=inputs, output_names=outputs, dynamic_axes=axes)

        atomic_write(path, write)
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        paths[name] = path
    return paths


def _run(session, **inputs: Tensor) -> list[Tensor]:
    return [torch.from_numpy(np.asarray(a))
            for a in session.run(None, {k: v.numpy() for k, v in inputs.items()})]


@torch.no_grad()
def ort_detect(model: nn.Module, paths: dict[str, Path], images: Tensor, optimize: bool = True
               ) -> tuple[list[dict[str, Tensor]], list[Tensor]]:
    """Detections computed by onnxruntime's graphs + the model's post-processing, and the raw
    outputs (per image for Faster R-CNN's RoI head) for comparison with PyTorch.

    `optimize=False` turns off onnxruntime's graph rewrites: its conv + BatchNorm fusion rounds
    differently, which flips signs of values near 0 in binarized networks (an untrained one
    then disagrees everywhere); without it the outputs match PyTorch to float precision.
    """
    sessions = {name: ort_session(path, optimize=optimize) for name, path in paths.items()}
    if not isinstance(model, FasterRCNN):
        logits, deltas = _run(sessions["detector"], images=images)
        return model.postprocess(logits, deltas), [logits, deltas]
    features, rpn_logits, rpn_deltas = _run(sessions["body"], images=images)
    size = tuple(images.shape[-2:])
    proposals = model.proposals(model.anchors(features), rpn_logits, rpn_deltas, size,
                                model.test_proposals)
    detections, raw = [], [rpn_logits, rpn_deltas]
    for i, props in enumerate(proposals):
        rois = model.rois([props])
        cls_logits, box_deltas = _run(sessions["roi_head"], features=features[i:i + 1],
                                      rois=rois)
        detections += model.postprocess([props], cls_logits, box_deltas, size)
        raw += [cls_logits, box_deltas]
    return detections, raw


@torch.no_grad()
def detection_parity(model: nn.Module, paths: dict[str, Path], images: Tensor, atol: float,
                     reference: list[dict[str, Tensor]] | None = None) -> Parity:
    """onnxruntime's detections (the graphs + the model's own post-processing) against
    PyTorch's (`reference`, computed when None), image by image, after NMS.

    `argmax_agreement`: the fraction of images where both keep the same objects (count and
    labels); `within_tolerance`: of those, boxes and scores within `atol` times the image's
    box scale (max(1, max |coordinate|)); `max_abs_logit_diff`: the largest box or score
    difference among agreeing images. onnxruntime's graph rewrites are off (they flip signs at 0
    in binarized networks: docs/detection.md).
    """
    got, _ = ort_detect(model, paths, images, optimize=False)
    want = reference if reference is not None else model.eval().detect(images)
    same, close, worst = 0, 0, 0.0
    for g, w in zip(got, want, strict=True):
        if len(g["labels"]) != len(w["labels"]) or not torch.equal(g["labels"], w["labels"]):
            continue
        same += 1
        if not len(w["labels"]):
            close += 1
            continue
        diff = max(float((g["boxes"] - w["boxes"]).abs().max()),
                   float((g["scores"] - w["scores"]).abs().max()))
        worst = max(worst, diff)
        close += diff <= atol * max(1.0, float(w["boxes"].abs().max()))
    n = len(want)
    return Parity(argmax_agreement=same / n if n else float("nan"), max_abs_logit_diff=worst,
                  n_samples=n, within_tolerance=close / n if n else float("nan"))


def write_onnx_form(f: FormInput) -> dict:
    """A detector's ONNX form: every graph of the detector (model.onnx: the one that takes the
    images; Faster R-CNN's RoI head beside it), checked in onnxruntime on boxes and scores
    after NMS against PyTorch's detections of the parity samples (computed when None)."""
    from bibench.export.onnx import parity_row

    paths = export_detector(f.model, f.x[:1], Path(f.path).parent, opset=f.settings["opset"],
                            files=cell_graph_files(f.model, f.path))
    parity = detection_parity(f.model, paths, f.x, f.settings["logit_atol"],
                              reference=f.detections)
    size = sum(p.stat().st_size for p in paths.values())
    return {**f.base, **parity_row("onnx", parity, f.settings, f.enforce), "file_bytes": size,
            "packed_bytes": size}
