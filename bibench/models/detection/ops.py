"""Box operations of the detectors, in plain torch (torchvision's compiled ops do not load here).

Boxes are (x1, y1, x2, y2) in pixels, width = x2 - x1 (mmdetection v2's convention). Every
function is traceable for ONNX except `nms`, which stays outside the exported graphs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

# Largest log-scale a decoded box may grow by (mmdetection's wh_ratio_clip = 16/1000).
MAX_LOG_SCALE = math.log(1000.0 / 16)


def box_area(boxes: Tensor) -> Tensor:
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU (len(a), len(b)); 0 where both boxes are empty."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union.clamp(min=torch.finfo(a.dtype).eps)


def _centre_size(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def encode_boxes(reference: Tensor, target: Tensor,
                 stds: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """Deltas (dx, dy, dw, dh) that move `reference` boxes onto `target`, divided by `stds`."""
    rx, ry, rw, rh = _centre_size(reference)
    tx, ty, tw, th = _centre_size(target)
    deltas = torch.stack([(tx - rx) / rw, (ty - ry) / rh, torch.log(tw / rw), torch.log(th / rh)],
                         dim=-1)
    return deltas / deltas.new_tensor(stds)


def decode_boxes(reference: Tensor, deltas: Tensor,
                 stds: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)) -> Tensor:
    """Inverse of `encode_boxes`; scale deltas are clipped so that boxes cannot explode."""
    deltas = deltas * deltas.new_tensor(stds)
    rx, ry, rw, rh = _centre_size(reference)
    cx = rx + deltas[..., 0] * rw
    cy = ry + deltas[..., 1] * rh
    w = rw * deltas[..., 2].clamp(-MAX_LOG_SCALE, MAX_LOG_SCALE).exp()
    h = rh * deltas[..., 3].clamp(-MAX_LOG_SCALE, MAX_LOG_SCALE).exp()
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def clip_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def base_anchors(base_size: float, scales: tuple[float, ...], ratios: tuple[float, ...]) -> Tensor:
    """Anchors centred on (0, 0): ratio r = h/w, scale s: w = base*s/sqrt(r), h = base*s*sqrt(r).

    Ordered ratio-major (all scales of the first ratio first), as mmdetection's AnchorGenerator.
    """
    r = torch.tensor(ratios, dtype=torch.float32).sqrt()
    s = torch.tensor(scales, dtype=torch.float32)
    ws = (base_size * s[None, :] / r[:, None]).reshape(-1)
    hs = (base_size * s[None, :] * r[:, None]).reshape(-1)
    return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)


def grid_anchors(base: Tensor, stride: float, height: int, width: int) -> Tensor:
    """`base` anchors centred on every cell of a (height, width) map: (height*width*A, 4).

    Cell (i, j) is centred at ((j + 0.5) * stride, (i + 0.5) * stride); order is row-major over
    cells, then anchors, matching a head output permuted to (H, W, A).
    """
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) * stride
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)
    return (shifts + base[None]).reshape(-1, 4)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float,
        max_keep: int | None = None) -> Tensor:
    """Indices kept by greedy non-maximum suppression, by decreasing score.

    A box is dropped when its IoU with a kept, higher-scoring box exceeds `iou_threshold`.
    Runs on the CPU in O(kept x boxes) time and O(boxes) memory (no full IoU matrix); stops
    after `max_keep` boxes (greedy order makes the first ones final).
    """
    order = scores.detach().argsort(descending=True)
    b = boxes.detach()[order].cpu().double().numpy()
    area = (b[:, 2] - b[:, 0]).clip(min=0) * (b[:, 3] - b[:, 1]).clip(min=0)
    remaining = np.arange(len(b))
    keep: list[int] = []
    while remaining.size and (max_keep is None or len(keep) < max_keep):
        i, rest = remaining[0], remaining[1:]
        keep.append(int(i))
        w = (np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0])).clip(min=0)
        h = (np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1])).clip(min=0)
        inter = w * h
        iou = inter / np.maximum(area[i] + area[rest] - inter, np.finfo(np.float64).eps)
        remaining = rest[iou <= iou_threshold]
    return order[torch.tensor(keep, dtype=torch.int64).to(order.device)]


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float,
                max_keep: int | None = None) -> Tensor:
    """NMS within each label only: boxes of different labels never suppress each other."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    # shift each label's boxes to a region of their own, one NMS for all
    offset = labels.to(boxes.dtype) * (boxes.max() - boxes.min() + 1)
    return nms(boxes + offset[:, None], scores, iou_threshold, max_keep)


def _bilinear_weights(coords: Tensor, valid: Tensor, size: int) -> Tensor:
    """Interpolation weights (..., size) of sample `coords` along one axis of length `size`.

    RoIAlign's bilinear rule (torchvision/Detectron2): a sample outside [-1, size] reads 0;
    otherwise it is clamped to [0, size-1] and split between its two neighbours, which is the
    tent function max(0, 1 - |c - k|) over the pixel indices k.
    """
    c = coords.clamp(0, size - 1)[..., None]
    k = torch.arange(size, dtype=coords.dtype, device=coords.device)
    return (1 - (c - k).abs()).clamp(min=0) * valid[..., None].to(coords.dtype)


def _axis_weights(start: Tensor, length: Tensor, bins: int, samples: int, size: int) -> Tensor:
    """(K, bins, size): each bin's average interpolation weight over its `samples` points."""
    step = length / bins
    i = torch.arange(bins, dtype=start.dtype, device=start.device)
    j = (torch.arange(samples, dtype=start.dtype, device=start.device) + 0.5) / samples
    coords = start[:, None, None] + (i[None, :, None] + j[None, None, :]) * step[:, None, None]
    valid = (coords >= -1) & (coords <= size)
    return _bilinear_weights(coords, valid, size).mean(dim=2)


def roi_align(features: Tensor, rois: Tensor, output_size: int | tuple[int, int],
              spatial_scale: float, sampling_ratio: int, aligned: bool = True) -> Tensor:
    """RoIAlign (He et al. 2017) with torchvision's semantics, for a fixed `sampling_ratio`.

    `rois` is (K, 5): batch index, x1, y1, x2, y2 in image pixels. Each output bin averages
    sampling_ratio x sampling_ratio bilinear samples placed evenly inside it; `aligned=True`
    shifts the box by -0.5 pixel so that pixel centres sit at integer + 0.5 (Detectron2).
    Written as two matrix products per image (separable bilinear weights), so it traces to
    ONNX without a custom operator. Returns (K, C, out_h, out_w).
    """
    if sampling_ratio < 1:
        raise ValueError("roi_align needs sampling_ratio >= 1 (the adaptive mode is not "
                         "implemented: it makes the sample count depend on the data)")
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    _, _, height, width = features.shape
    offset = 0.5 if aligned else 0.0
    boxes = rois[:, 1:] * spatial_scale - offset
    roi_w = boxes[:, 2] - boxes[:, 0]
    roi_h = boxes[:, 3] - boxes[:, 1]
    if not aligned:  # legacy behaviour: RoIs at least one pixel wide
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    wy = _axis_weights(boxes[:, 1], roi_h, out_h, sampling_ratio, height)  # (K, out_h, H)
    wx = _axis_weights(boxes[:, 0], roi_w, out_w, sampling_ratio, width)  # (K, out_w, W)
    batch = rois[:, 0].round().long()
    parts = []
    for n in range(features.shape[0]):  # a RoI of another image gets all-zero weights
        mask = (batch == n).to(features.dtype)[:, None, None]
        rows = torch.matmul((wy * mask)[:, None], features[n][None])  # (K, C, out_h, W)
        parts.append(torch.matmul(rows, wx[:, None].transpose(-1, -2)))
    return torch.stack(parts).sum(dim=0)


# Assignment codes of `match_anchors`.
NEGATIVE = -1
IGNORED = -2


def match_anchors(iou: Tensor, pos_thr: float, neg_thr: float,
                  min_pos_iou: float = 0.0, match_low_quality: bool = True) -> Tensor:
    """Per anchor: the matched ground-truth index, NEGATIVE or IGNORED (mmdetection's MaxIoU).

    `iou` is (G, A). An anchor is positive if its best IoU >= pos_thr, negative if < neg_thr,
    ignored in between; with `match_low_quality`, every ground truth also claims the anchors
    that overlap it best (if that IoU >= min_pos_iou), so no object is left without an anchor.
    """
    num_gt, num_anchors = iou.shape
    assigned = torch.full((num_anchors,), IGNORED, dtype=torch.int64, device=iou.device)
    if num_gt == 0:
        return assigned.fill_(NEGATIVE)
    best_iou, best_gt = iou.max(dim=0)
    assigned[best_iou < neg_thr] = NEGATIVE
    positive = best_iou >= pos_thr
    assigned[positive] = best_gt[positive]
    if match_low_quality:
        gt_best = iou.max(dim=1).values
        for g in range(num_gt):
            if gt_best[g] >= min_pos_iou and gt_best[g] > 0:
                assigned[iou[g] == gt_best[g]] = g
    return assigned


def sample_anchors(assigned: Tensor, num: int, pos_fraction: float,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Random positive and negative indices: at most num*pos_fraction positives, rest negatives."""
    pos = (assigned >= 0).nonzero().flatten()
    neg = (assigned == NEGATIVE).nonzero().flatten()
    n_pos = min(len(pos), int(num * pos_fraction))
    pos = pos[torch.randperm(len(pos), generator=generator)[:n_pos].to(pos.device)]
    n_neg = min(len(neg), num - n_pos)
    neg = neg[torch.randperm(len(neg), generator=generator)[:n_neg].to(neg.device)]
    return pos, neg
