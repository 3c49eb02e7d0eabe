"""Detection metrics: PASCAL VOC07 mAP (11-point, IoU 0.5) and COCO mAP@[.5:.95] (pycocotools).

Both take per-image lists of plain arrays:
- ground truth: {"boxes": (G, 4) x1y1x2y2, "labels": (G,) int, "difficult": (G,) bool (optional),
  "pixel": (2,) one original pixel in the boxes' coordinates (optional, default (1, 1))}
- detections: {"boxes": (D, 4) x1y1x2y2, "scores": (D,), "labels": (D,) int}

VOC follows the VOC2007 devkit (VOCevaldet): detections sorted by score, each matched to the
ground truth of its image and class it overlaps most; a match with IoU >= 0.5 is a true
positive unless that object is already taken (false positive) or 'difficult' (ignored: neither
true nor false); AP is the mean over recall points 0, 0.1, ..., 1 of the best precision at
recall >= that point (paper Appendix A.2). The mean runs over classes with at least one
non-difficult object. `legacy_coordinates` keeps the devkit's "+1" pixel widths, and applies
them in the image's original pixels: a ground truth whose boxes were rescaled carries "pixel",
the size (x, y) of one original pixel in its coordinates (IoU is invariant to scaling each axis,
so the devkit's IoU on original boxes equals this one on rescaled boxes).
COCO's AP is pycocotools' own (a real dependency, not a rewrite); `coco_results` writes
detections as COCO's official results file (the release's image and category ids).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

VOC_IOU = 0.5


def _iou_one_to_many(box: np.ndarray, boxes: np.ndarray, plus_one: np.ndarray) -> np.ndarray:
    """IoU with the devkit's pixel-inclusive widths: `plus_one` is (x, y), one original pixel
    in the boxes' coordinates ((0, 0) for continuous boxes)."""
    px, py = plus_one
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + px
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + py
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = (box[2] - box[0] + px) * (box[3] - box[1] + py)
    areas = (boxes[:, 2] - boxes[:, 0] + px) * (boxes[:, 3] - boxes[:, 1] + py)
    return inter / np.maximum(area + areas - inter, np.finfo(np.float64).eps)


def interpolated_ap(recall: np.ndarray, precision: np.ndarray, points: int = 11) -> float:
    """Mean over `points` evenly spaced recall levels of the best precision at recall >= level.

    points=11 is VOC07's AP; points=101 is COCO's interpolation of the same curve. Levels are
    np.linspace's, compared exactly, as pycocotools and the devkit's Python port do (so a
    recall of 3/10 falls just short of the level 3 * 0.1 there too).
    """
    total = 0.0
    for level in np.linspace(0.0, 1.0, points):
        above = precision[recall >= level]
        total += float(above.max()) if above.size else 0.0
    return total / points


def _class_tp_fp(gts: Sequence[dict], dets: Sequence[dict], cls: int, iou_thr: float,
                 legacy: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """True/false positive flags of class `cls`'s detections by score, and its object count."""
    gt_boxes, gt_hard, taken, plus_one, n_pos = {}, {}, {}, {}, 0
    for i, gt in enumerate(gts):
        plus_one[i] = (np.asarray(gt.get("pixel", (1.0, 1.0)), np.float64) if legacy
                       else np.zeros(2))
        keep = np.asarray(gt["labels"]) == cls
        gt_boxes[i] = np.asarray(gt["boxes"], dtype=np.float64).reshape(-1, 4)[keep]
        hard = np.asarray(gt.get("difficult", np.zeros(keep.shape, bool)), bool)[keep]
        gt_hard[i], taken[i] = hard, np.zeros(len(hard), bool)
        n_pos += int((~hard).sum())
    rows = [(float(s), i, np.asarray(b, np.float64)) for i, d in enumerate(dets)
            for b, s, lab in zip(np.asarray(d["boxes"]).reshape(-1, 4), d["scores"], d["labels"],
                                 strict=True) if int(lab) == cls]
    rows.sort(key=lambda r: -r[0])  # stable: equal scores keep image order
    tp, fp = np.zeros(len(rows)), np.zeros(len(rows))
    for k, (_, i, box) in enumerate(rows):
        if len(gt_boxes[i]) == 0:
            fp[k] = 1
            continue
        iou = _iou_one_to_many(box, gt_boxes[i], plus_one[i])
        j = int(iou.argmax())
        if iou[j] < iou_thr:
            fp[k] = 1
        elif not gt_hard[i][j]:
            if taken[i][j]:
                fp[k] = 1
            else:
                tp[k], taken[i][j] = 1, True
    return tp, fp, n_pos


def voc_ap_per_class(gts: Sequence[dict], dets: Sequence[dict], num_classes: int, *,
                     iou_thr: float = VOC_IOU, points: int = 11,
                     legacy_coordinates: bool = True) -> dict[int, float]:
    """AP of every class that has at least one non-difficult object."""
    if len(gts) != len(dets):
        raise ValueError(f"{len(dets)} detection lists for {len(gts)} images")
    aps = {}
    for cls in range(num_classes):
        tp, fp, n_pos = _class_tp_fp(gts, dets, cls, iou_thr, legacy_coordinates)
        if n_pos == 0:
            continue
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        recall = tp / n_pos
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps[cls] = interpolated_ap(recall, precision, points)
    return aps


def voc07_map(gts: Sequence[dict], dets: Sequence[dict], num_classes: int, **options) -> float:
    """VOC07 mAP: mean 11-point AP at IoU 0.5 over classes with objects ('difficult' ignored)."""
    aps = voc_ap_per_class(gts, dets, num_classes, **options)
    if not aps:
        raise ValueError("no class has a non-difficult object: mAP is undefined")
    return float(np.mean(list(aps.values())))


def _xywh(boxes: Any) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def _coco_ground_truth(gts: Sequence[dict], num_classes: int) -> dict:
    """An in-memory COCO instances dict; a ground truth's 'iscrowd' flags (if any) are kept."""
    images, annotations = [], []
    for i, gt in enumerate(gts):
        images.append({"id": i + 1, "width": 0, "height": 0})
        crowd = np.asarray(gt.get("iscrowd", np.zeros(len(gt["labels"]), int)), int)
        for box, label, c in zip(_xywh(gt["boxes"]), gt["labels"], crowd, strict=True):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                "category_id": int(label) + 1, "bbox": box.tolist(),
                                "area": float(box[2] * box[3]), "iscrowd": int(c)})
    categories = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_eval(gts: Sequence[dict], dets: Sequence[dict], num_classes: int) -> dict[str, float]:
    """pycocotools' bbox evaluation: {"map": AP@[.5:.95], "ap50": AP@0.5, "ap75": AP@0.75}.

    Labels are 0-based class indices (category id = label + 1); at most 100 detections per
    image count, as COCO's standard maxDets.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(gts) != len(dets):
        raise ValueError(f"{len(dets)} detection lists for {len(gts)} images")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_gt = COCO()
        coco_gt.dataset = _coco_ground_truth(gts, num_classes)
        coco_gt.createIndex()
        results = [{"image_id": i + 1, "category_id": int(lab) + 1, "bbox": box.tolist(),
                    "score": float(s)}
                   for i, d in enumerate(dets)
                   for box, s, lab in zip(_xywh(d["boxes"]), d["scores"], d["labels"],
                                          strict=True)]
        if not results:
            return {"map": 0.0, "ap50": 0.0, "ap75": 0.0}
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = [max(float(s), 0.0) for s in evaluator.stats[:3]]  # -1 means "no objects"
    return dict(zip(("map", "ap50", "ap75"), stats, strict=True))


def coco_map(gts: Sequence[dict], dets: Sequence[dict], num_classes: int) -> float:
    """COCO mAP@[.5:.95] (pycocotools)."""
    return coco_eval(gts, dets, num_classes)["map"]


def coco_results(detections: Sequence[dict], targets: Any, image_ids: Sequence[int],
                 category_ids: Sequence[int]) -> list[dict]:
    """Detections as COCO's official results file (`loadRes`, the evaluation server): image and
    category ids of the release, boxes [x, y, w, h] in the original image's pixels.

    `targets` are the task's test targets; where they carry the pixel columns (the official
    loaders' resized images), boxes are scaled back by them. `image_ids` and `category_ids`
    are `TaskData.test_ids` and `TaskData.class_ids` of the task the detections were made on.
    """
    if len(detections) != len(image_ids):
        raise ValueError(f"{len(detections)} detection lists for {len(image_ids)} image ids")
    rows = np.asarray(targets, dtype=np.float64)
    results = []
    for i, d in enumerate(_as_numpy(detections)):
        pixel = rows[i, 0, 6:8] if rows.shape[-1] >= 8 and rows.shape[1] else np.ones(2)
        boxes = np.asarray(d["boxes"], np.float64).reshape(-1, 4) / np.tile(pixel, 2)
        for box, score, label in zip(_xywh(boxes), d["scores"], d["labels"], strict=True):
            results.append({"image_id": int(image_ids[i]),
                            "category_id": int(category_ids[int(label)]),
                            "bbox": [round(float(v), 2) for v in box],
                            "score": round(float(score), 5)})
    return results


def _as_numpy(detections: Sequence[dict]) -> list[dict]:
    return [{k: np.asarray(v) for k, v in d.items()} for d in detections]


def _classes(gts: Sequence[dict], dets: Sequence[dict]) -> int:
    labels = [np.asarray(x["labels"]).reshape(-1) for x in [*gts, *dets]]
    return int(max((lab.max() for lab in labels if lab.size), default=-1)) + 1


def voc07_map_metric(detections: Sequence[dict], targets: Any) -> float:
    """VOC07 mAP of per-image detections against padded (N, G, 6) targets (task metric form).
    Classes without objects are left out of the mean, so the class count need not be given."""
    from bibench.models.detection.common import ground_truth

    gts = ground_truth(targets, "difficult")
    return voc07_map(gts, _as_numpy(detections), _classes(gts, detections))


def coco_map_metric(detections: Sequence[dict], targets: Any) -> float:
    """COCO mAP@[.5:.95] (pycocotools) of per-image detections against padded targets."""
    from bibench.models.detection.common import ground_truth

    gts = ground_truth(targets, "iscrowd")
    return coco_map(gts, _as_numpy(detections), _classes(gts, detections))
