"""Whether a cell's numbers mean something: the at-chance and convergence rules, in one place.

A benchmark that ranks noise misleads. Two facts decide whether a cell's clean metric can be
compared with others:

- *At chance*: a classifier whose clean accuracy is within `CHANCE_MARGIN` (5 points) of what
  always answering the test set's most frequent class scores has learned nothing usable. Its
  accuracy gap under corruption (paper Eq. 4) is near zero, so any ratio that divides by it
  explodes (the robustness track showed 700-1200% for such cells); it is marked `at chance`,
  left out of those ratios and never marked best or worst in the report.
- *Converged*: a training run levelled off when its last epoch lowered the mean training loss
  by less than `LEVELLED_OFF` (10%) of the previous epoch's value, or by less than
  `LOSS_FLOOR` (0.01) in absolute terms: a loss near zero (0.02 -> 0.015) still falls by a
  large fraction, but a change of 0.01 nats in mean cross-entropy moves the probability given
  to the right answer by about 1%, which is no further learning a metric could show. A run
  with one epoch, or whose loss still falls faster, is `not converged`: its number is shown
  with that note.

- *Eval gap*: every training run measures its model in eval mode on a fixed sample of its
  training data after training (bibench.training.batchnorm). A model that scores more than
  `EVAL_GAP` (10 points) below what its own last epoch scored on the same data is not being
  evaluated as it was trained (stale BatchNorm statistics were the case that made this rule):
  it is marked `eval gap` and never marked best or worst. Accuracy rises over an epoch, so a
  trained model normally scores at or above its last epoch's running accuracy.
- *Seed-unstable*: with several seeds, an algorithm whose clean metric ranges over more than
  `SEED_RANGE_LIMIT` (10 points) between seeds of the same task and architecture depends on
  its seed more than on anything a ranking could name (speech's DFSMNs reached 54 points before
  the BatchNorm estimate): it is marked `unstable over seeds (range R points)` and never marked
  best or worst; its mean and interval are still shown.

The rules apply to accuracy-like metrics of classification tasks and to detection mAP, whose
chance level is what random boxes score (`random_boxes_level`); other metrics (mIoU,
correlation, ...) have no chance level here and are never marked at chance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

CHANCE_MARGIN = 0.05  # "a few points" above the majority class
LEVELLED_OFF = 0.10  # the last epoch's relative loss decrease below which training levelled off
LOSS_FLOOR = 0.01  # ... or its absolute decrease below which it did (a near-zero loss)
SEED_RANGE_LIMIT = 0.10  # a clean metric's max - min over seeds above which a cell is unstable
EVAL_GAP = 0.10  # eval-mode training accuracy this far below the last epoch's: not comparable
CHANCE_METRICS = frozenset({"accuracy"})
DETECTION_METRICS = frozenset({"voc07_map", "coco_map"})
RANDOM_BOXES_PER_IMAGE = 10

CONVERGED, NOT_CONVERGED, NOT_TRAINED = "converged", "not converged", "not trained"
AT_CHANCE = "at chance"
EVAL_GAP_MARK = "eval gap"
UNSTABLE_MARK = "unstable over seeds"


def chance_level(labels: np.ndarray, metric: str) -> float:
    """Score of always answering the most frequent class of `labels`, or of random boxes for a
    detection metric (`labels` are then padded targets); NaN for metrics without one."""
    if metric in DETECTION_METRICS:
        return random_boxes_level(labels, metric)
    labels = np.asarray(labels).reshape(-1)
    if metric not in CHANCE_METRICS or labels.size == 0 or labels.dtype.kind not in "iub":
        return float("nan")
    return float(np.bincount(labels).max()) / labels.size


def at_chance(value: float, chance: float, margin: float = CHANCE_MARGIN) -> bool:
    """Whether `value` is no more than `margin` above `chance` (False when either is NaN)."""
    if math.isnan(value) or math.isnan(chance):
        return False
    return value <= chance + margin


def convergence(losses: Sequence[float], status: str = "ok") -> str:
    """`converged` when the last epoch lowered the loss by less than LEVELLED_OFF of its value
    or by less than LOSS_FLOOR, `not converged` otherwise (one epoch cannot show it),
    `not trained` for a failed run."""
    if status != "ok" or not losses or any(math.isnan(v) for v in losses):
        return NOT_TRAINED
    if len(losses) < 2:
        return NOT_CONVERGED
    previous, last = losses[-2], losses[-1]
    if previous <= 0 or previous - last < LOSS_FLOOR:
        return CONVERGED
    return CONVERGED if (previous - last) / previous < LEVELLED_OFF else NOT_CONVERGED


def seed_ranges(clean: pd.DataFrame) -> dict[tuple[str, str, str], float]:
    """Per (task, arch, algorithm) with more than one seed: the clean metric's range (max -
    min) over its seeds. `clean` holds metrics.parquet's clean rows."""
    ranges: dict[tuple[str, str, str], float] = {}
    if "value" not in clean.columns or clean.empty:
        return ranges
    for key, rows in clean.groupby(["task", "arch", "algorithm"]):
        values = rows["value"].dropna()
        if rows["seed"].nunique() > 1 and len(values) > 1:
            ranges[tuple(key)] = float(values.max() - values.min())
    return ranges


def unstable_over_seeds(clean: pd.DataFrame, limit: float = SEED_RANGE_LIMIT
                        ) -> dict[tuple[str, str, str], str]:
    """The cells whose seeds disagree by more than `limit`, each with its mark."""
    return {key: f"{UNSTABLE_MARK} (range {100 * r:.1f} points > {100 * limit:.0f})"
            for key, r in seed_ranges(clean).items() if r > limit + 1e-9}  # float noise


def eval_gap(last_epoch_accuracy: float, eval_accuracy: float, gap: float = EVAL_GAP) -> bool:
    """Whether the eval-mode accuracy on the training sample is more than `gap` below the last
    epoch's training accuracy (False when either is NaN: no per-sample accuracy)."""
    if math.isnan(last_epoch_accuracy) or math.isnan(eval_accuracy):
        return False
    return eval_accuracy < last_epoch_accuracy - gap


def random_boxes_level(targets: np.ndarray, metric: str, per_image: int = RANDOM_BOXES_PER_IMAGE,
                       seed: int = 0) -> float:
    """The detection metric of a detector that knows only the box statistics: `per_image`
    boxes per image, each of the size of a ground-truth box drawn at random, placed anywhere
    within the ground truth's extent, with a random class of those present and a random score.

    A binarized detector that scores this has learned nothing usable (its boxes are noise, and
    their NMS order flips with rounding between engines), as a classifier at its majority
    class has not. `targets` are padded (N, G, 6) rows: label (-1 = padding), x1, y1, x2, y2,
    ignore flag.
    """
    import torch

    from bibench.evaluation.task_metrics import TASK_METRICS

    rows = np.asarray(targets, dtype=np.float64)
    real = rows[..., 0] >= 0
    boxes, labels = rows[real][:, 1:5], rows[real][:, 0].astype(np.int64)
    if len(boxes) == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    sizes = boxes[:, 2:4] - boxes[:, 0:2]
    extent = boxes[:, 2:4].max(0)
    classes = np.unique(labels)
    detections = []
    for _ in range(len(rows)):
        wh = sizes[rng.integers(0, len(sizes), per_image)]
        xy = rng.uniform(0, 1, (per_image, 2)) * np.maximum(extent - wh, 0)
        detections.append({"boxes": torch.as_tensor(np.concatenate([xy, xy + wh], 1)),
                           "scores": torch.as_tensor(rng.random(per_image)),
                           "labels": torch.as_tensor(rng.choice(classes, per_image))})
    return float(TASK_METRICS[metric](detections, torch.as_tensor(rows, dtype=torch.float32)))
