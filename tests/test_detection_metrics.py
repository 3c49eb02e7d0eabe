"""VOC07 and COCO detection metrics on small cases whose answer is known, and the VOC matcher
cross-checked against pycocotools' AP@0.5 where both definitions coincide."""

from __future__ import annotations

import numpy as np
import pytest

from bibench.evaluation.detection_metrics import (
    coco_eval,
    coco_map,
    interpolated_ap,
    voc07_map,
    voc_ap_per_class,
)


def gt(boxes, labels, difficult=None):
    out = {"boxes": np.array(boxes, float), "labels": np.array(labels)}
    if difficult is not None:
        out["difficult"] = np.array(difficult, bool)
    return out


def det(boxes, scores, labels):
    return {"boxes": np.array(boxes, float).reshape(-1, 4), "scores": np.array(scores),
            "labels": np.array(labels)}


A, B, HARD = [0, 0, 10, 10], [50, 50, 60, 60], [100, 0, 110, 10]


def test_eleven_point_ap_of_a_known_curve():
    # TP, FP, TP over 2 objects: recall .5 .5 1, precision 1 .5 2/3
    # levels 0-0.5 (6 of them) get 1, levels 0.6-1 (5) get 2/3: (6 + 5 * 2/3) / 11
    value = interpolated_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]))
    assert value == pytest.approx((6 + 10 / 3) / 11)


def test_voc07_map_tp_fp_duplicates_and_difficult():
    gts = [gt([A, B, HARD], [0, 0, 0], [False, False, True])]
    expected = (6 + 10 / 3) / 11
    dets = [det([A, [200, 200, 210, 210], B], [0.9, 0.8, 0.7], [0, 0, 0])]
    assert voc07_map(gts, dets, 1) == pytest.approx(expected)
    # a detection of the difficult object is ignored (neither TP nor FP)...
    with_hard = [det([A, HARD, [200, 200, 210, 210], B], [0.9, 0.85, 0.8, 0.7], [0] * 4)]
    assert voc07_map(gts, with_hard, 1) == pytest.approx(expected)
    # ...and a second detection of an object already found is a false positive
    duplicate = [det([A, A, B], [0.9, 0.8, 0.7], [0, 0, 0])]
    assert voc07_map(gts, duplicate, 1) == pytest.approx(expected)


def test_voc07_map_iou_threshold_and_classes():
    gts = [gt([A], [0]), gt([B], [1])]
    # IoU of [0, 0, 10, 5] with A is 0.5 without +1 widths; 66/121 with the devkit's +1
    half = [det([[0, 0, 10, 5]], [0.9], [0]), det([B], [0.9], [1])]
    assert voc07_map(gts, half, 2, legacy_coordinates=False) == pytest.approx(1.0)
    assert voc07_map(gts, half, 2) == pytest.approx(1.0)
    below = [det([[0, 0, 10, 4]], [0.9], [0]), det([B], [0.9], [1])]  # IoU 0.4 (55/121)
    assert voc_ap_per_class(gts, below, 2) == pytest.approx({0: 0.0, 1: 1.0})
    wrong_class = [det([A], [0.5], [1]), det([B], [0.9], [1])]  # class 0: 0; class 1: 1
    assert voc07_map(gts, wrong_class, 2) == pytest.approx(0.5)
    # a class without objects is left out of the mean, not counted as 0
    assert voc07_map(gts, [det([A], [0.9], [0]), det([B], [0.9], [1])], 5) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="images"):
        voc07_map(gts, half[:1], 2)


def test_coco_map_known_cases():
    gts = [gt([[0, 0, 100, 100]], [0]), gt([[10, 10, 60, 60]], [1])]
    perfect = [det([[0, 0, 100, 100]], [0.9], [0]), det([[10, 10, 60, 60]], [0.8], [1])]
    assert coco_map(gts, perfect, 2) == pytest.approx(1.0)
    # IoU 0.72 for class 0: matched at thresholds .50-.70 (5 of 10); class 1 missed entirely
    partial = [det([[0, 0, 100, 72]], [0.9], [0]), det([], [], [])]
    result = coco_eval(gts, partial, 2)
    assert result["map"] == pytest.approx((0.5 + 0.0) / 2)
    assert result["ap50"] == pytest.approx(0.5)
    assert result["ap75"] == pytest.approx(0.0)
    assert coco_map(gts, [det([], [], []), det([], [], [])], 2) == 0.0


def separated_case(seed: int, num_classes: int = 3, images: int = 12):
    """Objects on a coarse grid (never two near each other) and detections that are jittered
    copies, misses and scattered false positives: the VOC and COCO matchers then agree."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(images):
        cells = rng.choice(16, size=rng.integers(1, 6), replace=False)
        boxes = np.array([[100 * (c % 4), 100 * (c // 4)] for c in cells], float)
        boxes = np.concatenate([boxes + 10, boxes + 10 + rng.uniform(30, 60, (len(cells), 2))], 1)
        labels = rng.integers(0, num_classes, len(cells))
        gts.append(gt(boxes, labels))
        found = rng.random(len(cells)) < 0.8
        d_boxes = boxes[found] + rng.normal(0, 4, (found.sum(), 4))
        d_labels = labels[found]
        n_fp = rng.integers(0, 4)
        fp = rng.uniform(0, 350, (n_fp, 2))
        d_boxes = np.concatenate([d_boxes, np.concatenate([fp, fp + 20], 1)])
        d_labels = np.concatenate([d_labels, rng.integers(0, num_classes, n_fp)])
        dets.append(det(d_boxes, rng.random(len(d_boxes)), d_labels))
    return gts, dets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voc_matcher_agrees_with_pycocotools_ap50(seed):
    gts, dets = separated_case(seed)
    aps = voc_ap_per_class(gts, dets, 3, points=101, legacy_coordinates=False)
    ours = float(np.mean(list(aps.values())))
    theirs = coco_eval(gts, dets, 3)["ap50"]
    assert 0.2 < theirs < 0.99  # a non-trivial curve
    assert ours == pytest.approx(theirs, abs=1e-9)


def _resized_targets(tmp_path, width, height, boxes, labels, size=300):
    """The official loaders' targets of one width x height image resized to size x size."""
    from PIL import Image

    from bibench.data.official.detection import DetectionRecord, decode_all

    path = tmp_path / "image.jpg"
    Image.new("RGB", (width, height)).save(path)
    record = DetectionRecord(path, np.asarray(boxes, np.float32), np.asarray(labels, np.int64),
                             np.zeros(len(labels), bool))
    return decode_all([record], size)[1]


def test_voc07_metric_applies_the_devkits_pixel_widths_in_original_pixels(tmp_path):
    """A 72x52 px car (1-based corners, as VOC writes them) in a 500x406 image and a detection
    shifted 24.1 px: the devkit's IoU on original pixels is 0.498 (AP 0). Adding "+1" to the
    boxes rescaled to 300x300 gave IoU 0.51 there (AP 1)."""
    from bibench.evaluation.detection_metrics import voc07_map_metric

    car, shifted = [100, 100, 171, 151], [124.1, 100, 195.1, 151]
    assert voc07_map([gt([car], [0])], [det([shifted], [0.9], [0])], 1) == 0.0  # the devkit
    targets = _resized_targets(tmp_path, 500, 406, [car], [0])
    scale = np.array([300 / 500, 300 / 406] * 2)
    resized = [{"boxes": np.array([shifted]) * scale, "scores": np.array([0.9]),
                "labels": np.array([0])}]
    assert voc07_map_metric(resized, targets) == 0.0
    # the same boxes without the pixel columns are what the old metric computed
    assert voc07_map_metric(resized, targets[..., :6]) == 1.0
    # a detection the devkit accepts is still accepted
    near = [{"boxes": np.array([[110.0, 100, 181, 151]]) * scale, "scores": np.array([0.9]),
             "labels": np.array([0])}]
    assert voc07_map([gt([car], [0])], [det([[110, 100, 181, 151]], [0.9], [0])], 1) == 1.0
    assert voc07_map_metric(near, targets) == 1.0


def test_coco_results_carry_the_releases_ids_and_original_pixels(tmp_path):
    """Detections made on resized images are written as COCO's results file: category ids of
    the release, boxes in original pixels; pycocotools scores them against the original
    annotation as a perfect detection."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from bibench.evaluation.detection_metrics import coco_results

    xywh = [40.0, 30.0, 120.0, 80.0]
    xyxy = [40.0, 30.0, 160.0, 110.0]
    targets = _resized_targets(tmp_path, 640, 480, [xyxy], [1])
    scale = np.array([300 / 640, 300 / 480] * 2)
    detections = [{"boxes": np.array([xyxy]) * scale, "scores": np.array([0.8]),
                   "labels": np.array([1])}]
    results = coco_results(detections, targets, image_ids=[139], category_ids=(1, 18))
    assert results == [{"image_id": 139, "category_id": 18, "bbox": xywh, "score": 0.8}]
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {
            "images": [{"id": 139, "width": 640, "height": 480}],
            "annotations": [{"id": 1, "image_id": 139, "category_id": 18, "bbox": xywh,
                             "area": 9600.0, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]}
        truth.createIndex()
        evaluator = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="1 detection lists for 2 image ids"):
        coco_results(detections, targets, image_ids=[1, 2], category_ids=(1, 18))
