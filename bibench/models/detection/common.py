"""What both detectors share: the target format, detection post-processing, the base class.

Targets travel as one padded tensor (N, G, 6) per batch: rows (label, x1, y1, x2, y2, ignore)
with 0-based labels, label -1 for padding and ignore = 1 for VOC 'difficult' / COCO crowd
objects (left out of training, ignored by the metrics), so that a detection task's targets are
a plain tensor like every other task's. Data whose images were resized adds two columns (N, G, 8)
on every row, padding included: the size (x, y) of one original pixel in the resized image,
which the VOC07 metric needs to apply the devkit's pixel widths in original pixels. The
network's forward returns raw head outputs only (exportable); decoding and NMS (`detect`) run
outside the graph.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bibench.models.detection.ops import batched_nms, clip_boxes, decode_boxes

PADDING_LABEL = -1


def split_targets(targets: Tensor) -> list[tuple[Tensor, Tensor]]:
    """(boxes (G, 4), labels (G,)) of every image for training: padding and ignored rows out."""
    out = []
    for rows in targets:
        real = (rows[:, 0] != PADDING_LABEL) & (rows[:, 5] == 0)
        out.append((rows[real, 1:5].float(), rows[real, 0].long()))
    return out


def ground_truth(targets: Tensor, ignore_key: str = "difficult") -> list[dict]:
    """Per-image ground truth for the metrics: boxes, labels and the ignore flags under
    `ignore_key` ('difficult' for VOC07 mAP, 'iscrowd' for COCO)."""
    out = []
    for rows in targets:
        gt = {}
        if rows.shape[-1] >= 8:
            gt["pixel"] = rows[0, 6:8].numpy().astype(np.float64)
        rows = rows[rows[:, 0] != PADDING_LABEL].numpy()
        gt.update(boxes=rows[:, 1:5], labels=rows[:, 0].astype(int), **{ignore_key: rows[:, 5] > 0})
        out.append(gt)
    return out


def pad_targets(boxes: list[Tensor], labels: list[Tensor],
                ignore: list[Tensor] | None = None) -> Tensor:
    """The padded (N, G, 6) form of per-image boxes, labels and ignore flags."""
    width = max([len(b) for b in boxes] + [1])
    out = torch.full((len(boxes), width, 6), float(PADDING_LABEL))
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        out[i, : len(b), 0] = lab.float()
        out[i, : len(b), 1:5] = b.float()
        out[i, : len(b), 5] = 0.0 if ignore is None else ignore[i].float()
    return out


def select_detections(boxes: Tensor, scores: Tensor, score_thr: float, nms_thr: float,
                      max_per_image: int, pre_nms: int = 1000) -> dict[str, Tensor]:
    """Per-class boxes (P, C, 4) and scores (P, C) -> kept detections of one image: the
    `pre_nms` best (box, class) pairs above `score_thr`, per-class NMS, `max_per_image` kept."""
    num_classes = scores.shape[1]
    labels = torch.arange(num_classes, device=scores.device).expand_as(scores)
    boxes = boxes.expand(-1, num_classes, -1) if boxes.shape[1] == 1 else boxes
    mask = scores > score_thr
    boxes, scores, labels = boxes[mask], scores[mask], labels[mask]
    top = scores.topk(min(len(scores), pre_nms)).indices
    boxes, scores, labels = boxes[top], scores[top], labels[top]
    keep = batched_nms(boxes, scores, labels, nms_thr, max_per_image)
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}


def decode_per_class(reference: Tensor, deltas: Tensor, stds: tuple[float, ...],
                     height: int, width: int) -> Tensor:
    """Class-specific (P, C*4) or shared (P, 4) deltas -> clipped boxes (P, C or 1, 4)."""
    deltas = deltas.reshape(len(reference), -1, 4)
    boxes = decode_boxes(reference[:, None, :].expand_as(deltas), deltas, stds)
    return clip_boxes(boxes, height, width)


def softmax_scores(logits: Tensor) -> Tensor:
    """Object-class probabilities from (P, C + 1) logits whose last column is background."""
    return F.softmax(logits, dim=-1)[:, :-1]


class Detector(nn.Module):
    """A detector: forward -> raw head outputs; `loss` for training; `detect` for inference."""

    num_classes: int

    def loss(self, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def detect(self, images: Tensor) -> list[dict[str, Tensor]]:
        raise NotImplementedError

    def trace_input(self, images: Tensor) -> tuple[Tensor, ...]:
        """The arguments `forward` takes for a batch of `images` (binarize() traces them)."""
        return (images,)
