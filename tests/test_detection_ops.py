"""Box operations of the detectors on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from bibench.models.detection.ops import (
    IGNORED,
    NEGATIVE,
    base_anchors,
    batched_nms,
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


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_iou_of_boxes_with_known_overlap():
    a = t([0, 0, 2, 2])
    b = t([1, 1, 3, 3], [0, 0, 2, 1], [5, 5, 6, 6], [0, 0, 2, 2])
    # overlap 1 of union 7; half of the box; disjoint; identical
    assert box_iou(a, b)[0].tolist() == pytest.approx([1 / 7, 0.5, 0.0, 1.0])


def test_encode_and_decode_known_deltas():
    ref = t([0, 0, 10, 10])
    target = t([5, 5, 15, 25])  # centre (10, 15) vs (5, 5); same width; twice the height
    deltas = encode_boxes(ref, target)
    assert deltas[0].tolist() == pytest.approx([0.5, 1.0, 0.0, math.log(2)])
    scaled = encode_boxes(ref, target, stds=(0.1, 0.1, 0.2, 0.2))
    assert scaled[0].tolist() == pytest.approx([5.0, 10.0, 0.0, math.log(2) / 0.2])
    assert decode_boxes(ref, scaled, stds=(0.1, 0.1, 0.2, 0.2))[0].tolist() == pytest.approx(
        [5, 5, 15, 25], abs=1e-5)


def test_decode_clips_huge_scale_and_clip_boxes_limits_to_image():
    box = decode_boxes(t([0, 0, 10, 10]), t([0, 0, 100, 0]))[0]
    assert box[2] - box[0] == pytest.approx(10 * 1000 / 16, rel=1e-5)
    assert clip_boxes(t([-5, -2, 50, 8]), height=6, width=40)[0].tolist() == [0, 0, 40, 6]


def test_base_anchors_scales_and_ratios():
    anchors = base_anchors(16, scales=(2, 4), ratios=(0.5, 1.0))
    w = anchors[:, 2] - anchors[:, 0]
    h = anchors[:, 3] - anchors[:, 1]
    # ratio-major: (0.5, 2), (0.5, 4), (1, 2), (1, 4); ratio = h / w, area = (16 s)^2
    assert w.tolist() == pytest.approx([32 * 2**0.5, 64 * 2**0.5, 32, 64], rel=1e-5)
    assert h.tolist() == pytest.approx([32 / 2**0.5, 64 / 2**0.5, 32, 64], rel=1e-5)
    assert anchors[2].tolist() == [-16, -16, 16, 16]


def test_grid_anchors_are_centred_on_cells_in_row_major_order():
    grid = grid_anchors(t([-1, -1, 1, 1], [-2, -2, 2, 2]), stride=4, height=2, width=3)
    assert grid.shape == (12, 4)
    assert grid[0].tolist() == [1, 1, 3, 3]  # cell (0, 0), centre (2, 2)
    assert grid[1].tolist() == [0, 0, 4, 4]  # second anchor of the same cell
    assert grid[2].tolist() == [5, 1, 7, 3]  # cell (0, 1), centre (6, 2)
    assert grid[6].tolist() == [1, 5, 3, 7]  # cell (1, 0), centre (2, 6)


def test_nms_drops_overlapping_lower_scores_only():
    boxes = t([0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30])  # IoU(0, 1) = 90 / 110
    scores = torch.tensor([0.8, 0.9, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.85).tolist() == [1, 0, 2]


def test_nms_suppressed_box_does_not_suppress_others():
    # A overlaps B (IoU 1/3), B overlaps C (1/3), A and C are disjoint: B goes, C stays.
    boxes = t([0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10])
    assert nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.3).tolist() == [0, 2]


def test_batched_nms_keeps_overlapping_boxes_of_other_classes():
    boxes = t([0, 0, 10, 10], [1, 0, 11, 10], [1, 0, 11, 10])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1]
    assert batched_nms(boxes[:0], scores[:0], torch.tensor([], dtype=torch.int64), 0.5).numel() == 0


def hot_pixel(y: int, x: int, size: int = 4) -> torch.Tensor:
    f = torch.zeros(1, 1, size, size)
    f[0, 0, y, x] = 1.0
    return f


def test_roi_align_samples_known_pixels():
    f = hot_pixel(1, 1)
    roi = t([0, 1, 1, 2, 2])  # exactly pixel (1, 1)
    # aligned: box [0.5, 1.5]; 2 samples per axis at 0.75 and 1.25, each weighs 0.75 on pixel 1
    assert roi_align(f, roi, 1, 1.0, 2, aligned=True).item() == pytest.approx(0.75 * 0.75)
    # legacy: box [1, 2]; samples at 1.25 and 1.75 weigh 0.75 and 0.25: mean 0.5 per axis
    assert roi_align(f, roi, 1, 1.0, 2, aligned=False).item() == pytest.approx(0.25)


def test_roi_align_linear_map_bins_and_scale():
    f = (10 * torch.arange(4.0)[:, None] + torch.arange(4.0)[None, :])[None, None]  # 10y + x
    # image box [2, 2, 6, 6] at scale 0.5 -> [1, 1, 3, 3] -> aligned [0.5, 2.5]: bins of 1,
    # centres at 1 and 2, and bilinear sampling of a linear map is exact
    out = roi_align(f, t([0, 2, 2, 6, 6]), 2, 0.5, 2, aligned=True)
    assert out[0, 0].flatten().tolist() == pytest.approx([11, 12, 21, 22])


def test_roi_align_borders_and_batch_index():
    f = torch.stack([torch.ones(1, 4, 4), 2 * torch.ones(1, 4, 4)])
    inside_border = t([1, -0.4, -0.4, 0.4, 0.4])  # samples in (-1, 0) read the edge pixel
    assert roi_align(f, inside_border, 1, 1.0, 1).item() == pytest.approx(2.0)
    far_out = t([0, -20, -20, -10, -10])  # every sample beyond -1 reads 0
    assert roi_align(f, far_out, 2, 1.0, 2).abs().sum().item() == 0.0
    half_out = t([0, -3, 0, 1, 4])  # aligned x in [-3.5, 0.5]: samples -2.5 (reads 0), -0.5 (edge)
    out = roi_align(f, half_out, (1, 2), 1.0, 1)
    assert out[0, 0, 0].tolist() == pytest.approx([0.0, 1.0])
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi_align(f, far_out, 2, 1.0, 0)


def test_match_anchors_thresholds_and_low_quality_matches():
    iou = t([0.8, 0.45, 0.2, 0.0], [0.1, 0.6, 0.35, 0.29])
    assert match_anchors(iou, 0.7, 0.3, match_low_quality=False).tolist() == [
        0, IGNORED, IGNORED, NEGATIVE]
    # gt 1's best anchor (IoU 0.6) is claimed by it
    assert match_anchors(iou, 0.7, 0.3).tolist() == [0, 1, IGNORED, NEGATIVE]
    # a min_pos_iou above 0.6 refuses that match
    assert match_anchors(iou, 0.7, 0.3, min_pos_iou=0.65).tolist() == [
        0, IGNORED, IGNORED, NEGATIVE]
    assert match_anchors(iou[:0], 0.7, 0.3).tolist() == [NEGATIVE] * 4


def test_sample_anchors_respects_fraction():
    assigned = torch.full((110,), NEGATIVE)
    assigned[:10] = 3
    assigned[10:15] = IGNORED
    pos, neg = sample_anchors(assigned, 16, 0.25, torch.Generator().manual_seed(0))
    assert len(pos) == 4 and len(neg) == 12
    assert (assigned[pos] == 3).all() and (assigned[neg] == NEGATIVE).all()
    assert len(set(neg.tolist())) == 12
