"""Whether a cell's numbers mean something: the at-chance and convergence rules, in one place.

A benchmark that ranks noise misleads. Two facts decide whether a cell's clean metric can be
compared with others:

- *At chance*: a classifier whose clean accuracy is within `CHANCE_MARGIN` (5 points) of what
  always answering the test set's most frequent class scores has learned nothing usable. Its
  accuracy gap under corruption (paper Eq. 4) is near zero, so any ratio that divides by it
  explodes (the robustness track showed 700-1200% for such cells); it is marked `at chance`,
  left out of those ratios and never marked best or worst in the report.
- *Converged*: a training run levelled off when its last epoch lowered the mean training loss
  by less than `LEVELLED_OFF` (10%) of the previous epoch's value. A run with one epoch, or
  whose loss still falls faster, is `not converged`: its number is shown with that note.

The rules apply to accuracy-like metrics of classification tasks; other metrics (mIoU,
correlation, ...) have no chance level here and are never marked at chance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

CHANCE_MARGIN = 0.05  # "a few points" above the majority class
LEVELLED_OFF = 0.10  # the last epoch's relative loss decrease below which training levelled off
CHANCE_METRICS = frozenset({"accuracy"})

CONVERGED, NOT_CONVERGED, NOT_TRAINED = "converged", "not converged", "not trained"
AT_CHANCE = "at chance"


def chance_level(labels: np.ndarray, metric: str) -> float:
    """Score of always answering the most frequent class of `labels`; NaN for metrics without
    a chance level."""
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
    """`converged` when the last epoch lowered the loss by less than LEVELLED_OFF of its value,
    `not converged` otherwise (one epoch cannot show it), `not trained` for a failed run."""
    if status != "ok" or not losses or any(math.isnan(v) for v in losses):
        return NOT_TRAINED
    if len(losses) < 2:
        return NOT_CONVERGED
    previous, last = losses[-2], losses[-1]
    if previous <= 0:
        return CONVERGED
    return CONVERGED if (previous - last) / previous < LEVELLED_OFF else NOT_CONVERGED
