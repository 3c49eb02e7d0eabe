"""Faster R-CNN (Ren et al. 2015) with a ResNet-18 C4 backbone, as the authors' mmdetection
config `resnet18_faster-rcnn` (see docs/detection.md for every setting and deviation).

- Backbone: ResNet-18 (ImageNet stem) stages 1-3, output stride 16.
- RPN on the stride-16 map: 3x3 conv (256 channels at full width), sigmoid objectness and box
  deltas for 15 anchors per cell (base 16 px x scales 2/4/8/16/32 x ratios 0.5/1/2); proposals
  by NMS 0.7.
- RoI head: RoIAlign 14x14 (aligned, sampling ratio 2) into ResNet-18 stage 4 (stride 2) as the
  shared head, average-pooled to 512-d; a softmax classifier over C + 1 (background last) and
  class-specific box regression (target stds 0.1/0.1/0.2/0.2). Test: score 0.02, NMS 0.5, 100
  detections per image.

The exported network is two graphs with NMS between them: `body` (image -> stride-16 features,
RPN logits and deltas) and `roi_head` (features, RoIs -> class logits, box deltas). `forward`
runs both on given RoIs (the form binarize() traces).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bibench.models import Architecture, register_architecture
from bibench.models.detection.common import (
    Detector,
    decode_per_class,
    select_detections,
    softmax_scores,
    split_targets,
)
from bibench.models.detection.ops import (
    base_anchors,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    grid_anchors,
    match_anchors,
    nms,
    roi_align,
    sample_anchors,
)
from bibench.models.resnet import RESNET_BLOCKS, ResNet

RPN_STDS = (1.0, 1.0, 1.0, 1.0)
RCNN_STDS = (0.1, 0.1, 0.2, 0.2)


class Body(nn.Module):
    """Backbone (stem + stages 1-3) and RPN head: image -> (features, objectness, deltas)."""

    def __init__(self, resnet: ResNet, rpn_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv1, self.bn1, self.act1, self.maxpool = (resnet.conv1, resnet.bn1, resnet.act1,
                                                         resnet.maxpool)
        self.layer1, self.layer2, self.layer3 = resnet.layer1, resnet.layer2, resnet.layer3
        c3 = resnet.layer3[-1].conv2.out_channels
        self.rpn = nn.ModuleDict({
            "conv": nn.Conv2d(c3, rpn_channels, 3, 1, 1),
            "act": nn.ReLU(),
            "cls": nn.Conv2d(rpn_channels, num_anchors, 1),
            "reg": nn.Conv2d(rpn_channels, 4 * num_anchors, 1),
        })

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.maxpool(self.act1(self.bn1(self.conv1(images))))
        features = self.layer3(self.layer2(self.layer1(x)))
        h = self.rpn["act"](self.rpn["conv"](features))
        n = images.shape[0]  # not len(): the exported graph keeps the batch dim dynamic
        # (N, A, H, W) -> (N, H*W*A): row-major cells, then anchors, as grid_anchors
        logits = self.rpn["cls"](h).permute(0, 2, 3, 1).reshape(n, -1)
        deltas = self.rpn["reg"](h).permute(0, 2, 3, 1).reshape(n, -1, 4)
        return features, logits, deltas


class RoIHead(nn.Module):
    """RoIAlign -> ResNet stage 4 -> average pool -> class logits (C + 1), deltas (C * 4)."""

    def __init__(self, layer4: nn.Module, channels: int, num_classes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.layer4 = layer4
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.cls_score = nn.Linear(channels, num_classes + 1)
        self.bbox_pred = nn.Linear(channels, 4 * num_classes)

    def forward(self, features: Tensor, rois: Tensor) -> tuple[Tensor, Tensor]:
        crops = roi_align(features, rois, 14, 1.0 / self.stride, sampling_ratio=2, aligned=True)
        x = self.pool(self.layer4(crops)).flatten(1)
        return self.cls_score(x), self.bbox_pred(x)


class FasterRCNN(Detector):
    """Faster R-CNN, ResNet-18 C4. `width` scales every channel count (64 = the paper's)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64,
                 anchor_scales: tuple[float, ...] = (2, 4, 8, 16, 32),
                 anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
                 proposals: tuple[int, int] = (2000, 1000), rcnn_samples: int = 512,
                 rpn_samples: int = 256) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stride = 16
        self.anchors_base = base_anchors(16, anchor_scales, anchor_ratios)
        resnet = ResNet(RESNET_BLOCKS["resnet18"], in_channels, 1, stem="imagenet", width=width)
        self.body = Body(resnet, rpn_channels=4 * width, num_anchors=len(self.anchors_base))
        self.roi_head = RoIHead(resnet.layer4, 8 * width, num_classes, self.stride)
        self.train_proposals, self.test_proposals = proposals
        self.rpn_samples, self.rcnn_samples = rpn_samples, rcnn_samples
        self.rpn_nms, self.rcnn_nms, self.score_thr, self.max_per_image = 0.7, 0.5, 0.02, 100

    def forward(self, images: Tensor, rois: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        features, rpn_logits, rpn_deltas = self.body(images)
        cls_logits, box_deltas = self.roi_head(features, rois)
        return rpn_logits, rpn_deltas, cls_logits, box_deltas

    def trace_input(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Images and one RoI per image (forward needs RoIs)."""
        h, w = images.shape[-2:]
        rois = images.new_tensor([[float(i), 0.0, 0.0, w / 2, h / 2] for i in range(len(images))])
        return images, rois

    def anchors(self, features: Tensor) -> Tensor:
        return grid_anchors(self.anchors_base, self.stride, *features.shape[-2:]).to(
            features.device)

    @torch.no_grad()
    def proposals(self, anchors: Tensor, logits: Tensor, deltas: Tensor, size: tuple[int, int],
                  count: int) -> list[Tensor]:
        """Per image: the 6 x `count` top-scoring decoded anchors, NMS 0.7, `count` kept."""
        out = []
        for obj, delta in zip(logits, deltas, strict=True):
            top = obj.topk(min(len(obj), 6 * count)).indices  # nms_pre 12000 / 6000
            boxes = clip_boxes(decode_boxes(anchors[top], delta[top], RPN_STDS), *size)
            wide = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
            boxes, scores = boxes[wide], obj[top][wide]
            out.append(boxes[nms(boxes, scores, self.rpn_nms, max_keep=count)])
        return out

    @staticmethod
    def rois(per_image: list[Tensor]) -> Tensor:
        """(K, 5) RoIs (batch index, box) from per-image boxes."""
        return torch.cat([torch.cat([b.new_full((len(b), 1), float(i)), b], 1)
                          for i, b in enumerate(per_image)])

    def _rpn_loss(self, anchors: Tensor, logits: Tensor, deltas: Tensor,
                  gts: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """Sigmoid cross-entropy on sampled anchors and L1 on positive deltas (mmdetection)."""
        cls_terms, reg_terms, count = [], [], 0
        for obj, delta, (boxes, _) in zip(logits, deltas, gts, strict=True):
            assigned = match_anchors(box_iou(boxes, anchors), 0.7, 0.3, min_pos_iou=0.3)
            pos, neg = sample_anchors(assigned, self.rpn_samples, 0.5, None)
            target = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).to(obj)
            cls_terms.append(F.binary_cross_entropy_with_logits(
                obj[torch.cat([pos, neg])], target, reduction="sum"))
            goal = encode_boxes(anchors[pos], boxes[assigned[pos]], RPN_STDS)
            reg_terms.append(F.l1_loss(delta[pos], goal, reduction="sum"))
            count += len(pos) + len(neg)
        count = max(count, 1)
        return torch.stack(cls_terms).sum() / count, torch.stack(reg_terms).sum() / count

    @torch.no_grad()
    def _rcnn_targets(self, proposals: list[Tensor], gts: list[tuple[Tensor, Tensor]]
                      ) -> tuple[Tensor, Tensor, Tensor]:
        """Sampled RoIs (ground truths added as proposals), their labels and box targets."""
        rois, labels, goals = [], [], []
        for props, (boxes, classes) in zip(proposals, gts, strict=True):
            props = torch.cat([boxes, props])
            assigned = match_anchors(box_iou(boxes, props), 0.5, 0.5, 0.5,
                                     match_low_quality=False)
            pos, neg = sample_anchors(assigned, self.rcnn_samples, 0.25, None)
            rois.append(props[torch.cat([pos, neg])])
            labels.append(torch.cat([classes[assigned[pos]],
                                     classes.new_full((len(neg),), self.num_classes)]))
            goal = boxes.new_zeros(len(pos) + len(neg), 4)
            goal[: len(pos)] = encode_boxes(props[pos], boxes[assigned[pos]], RCNN_STDS)
            goals.append(goal)
        return self.rois(rois), torch.cat(labels), torch.cat(goals)

    def loss(self, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
        gts = split_targets(targets)
        features, rpn_logits, rpn_deltas = self.body(images)
        anchors = self.anchors(features)
        rpn_cls, rpn_reg = self._rpn_loss(anchors, rpn_logits, rpn_deltas, gts)
        proposals = self.proposals(anchors, rpn_logits.detach(), rpn_deltas.detach(),
                                   tuple(images.shape[-2:]), self.train_proposals)
        rois, labels, goals = self._rcnn_targets(proposals, gts)
        cls_logits, box_deltas = self.roi_head(features, rois)
        positive = labels < self.num_classes
        chosen = box_deltas.reshape(len(rois), -1, 4)[positive, labels[positive]]
        rcnn_reg = F.l1_loss(chosen, goals[positive], reduction="sum") / max(len(rois), 1)
        return {"rpn_cls": rpn_cls, "rpn_reg": rpn_reg,
                "rcnn_cls": F.cross_entropy(cls_logits, labels), "rcnn_reg": rcnn_reg}

    def postprocess(self, proposals: list[Tensor], cls_logits: Tensor, box_deltas: Tensor,
                    size: tuple[int, int]) -> list[dict[str, Tensor]]:
        """Class scores and decoded boxes of the RoIs -> per-image detections (NMS 0.5)."""
        out, start = [], 0
        for props in proposals:
            end = start + len(props)
            boxes = decode_per_class(props, box_deltas[start:end], RCNN_STDS, *size)
            out.append(select_detections(boxes, softmax_scores(cls_logits[start:end]),
                                         self.score_thr, self.rcnn_nms, self.max_per_image))
            start = end
        return out

    @torch.no_grad()
    def detect(self, images: Tensor) -> list[dict[str, Tensor]]:
        features, rpn_logits, rpn_deltas = self.body(images)
        size = tuple(images.shape[-2:])
        proposals = self.proposals(self.anchors(features), rpn_logits, rpn_deltas, size,
                                   self.test_proposals)
        cls_logits, box_deltas = self.roi_head(features, self.rois(proposals))
        return self.postprocess(proposals, cls_logits, box_deltas, size)


def faster_rcnn_r18(input_shape: tuple[int, ...], num_classes: int, **kwargs) -> FasterRCNN:
    return FasterRCNN(input_shape[0], num_classes, **kwargs)


def faster_rcnn_r18_small(input_shape: tuple[int, ...], num_classes: int,
                          **kwargs) -> FasterRCNN:
    """A quarter of the channels and fewer RoIs, for the embedded task on a CPU."""
    options = {"width": 16, "anchor_scales": (1, 2, 4), "proposals": (100, 50),
               "rcnn_samples": 32, **kwargs}
    return FasterRCNN(input_shape[0], num_classes, **options)


# Full precision besides the stem: the ResNet's 1x1 shortcuts (as every ResNet here), the whole
# RPN head and the two predictors. Backbone stages 1-3 and the stage-4 shared head are binarized.
FASTER_RCNN_FP = ("*.shortcut.*", "body.rpn.*", "roi_head.cls_score", "roi_head.bbox_pred")

register_architecture(Architecture(
    name="faster_rcnn_r18", family="cnn", build=faster_rcnn_r18, keep_fp=FASTER_RCNN_FP,
    description="Faster R-CNN, ResNet-18 C4 (stride 16, RoIAlign 14x14 into stage 4)"))
register_architecture(Architecture(
    name="faster_rcnn_r18_small", family="cnn", build=faster_rcnn_r18_small,
    keep_fp=FASTER_RCNN_FP,
    description="Faster R-CNN ResNet-18 C4 at width 16, anchor scales 1/2/4 (embedded task)"))
