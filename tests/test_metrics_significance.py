"""Paired tests between algorithms (bibench.metrics.significance) on cases whose answer is
known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest, spearmanr

from bibench.metrics.significance import (
    A_BETTER,
    B_BETTER,
    TIED,
    paired_difference,
    paired_metric_difference,
    rank_interval,
    tied_with_best,
)


def _pairs(a_only: int, b_only: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-example correctness of A and B: `a_only` examples only A gets right, and so on."""
    a = [1] * a_only + [0] * b_only + [1] * both + [0] * neither
    b = [0] * a_only + [1] * b_only + [1] * both + [0] * neither
    return np.array([a], float), np.array([b], float)


def test_one_seed_matches_the_hand_computed_interval_and_mcnemar():
    """1000 examples, A alone right on 60, B alone on 30: difference 0.03; the paired
    differences have variance 0.09 - 0.03^2, so the normal 95% interval is
    0.03 +- 1.96 * sqrt(0.0891 / 1000) = [0.0115, 0.0485]. McNemar's exact test on the 90
    discordant pairs gives p = 0.0021: both say A is better."""
    a, b = _pairs(60, 30, 700, 210)
    diff = paired_difference(a, b)
    half = 1.96 * math.sqrt((0.09 - 0.03**2) / 1000)
    assert diff.mean == pytest.approx(0.03)
    assert diff.low == pytest.approx(0.03 - half, abs=0.002)
    assert diff.high == pytest.approx(0.03 + half, abs=0.002)
    assert diff.verdict == A_BETTER and diff.seeds == 1 and diff.examples == 1000
    mcnemar = binomtest(30, 90, 0.5).pvalue
    assert mcnemar == pytest.approx(0.0021, abs=2e-4)
    assert diff.p_value == pytest.approx(mcnemar, abs=0.004)
    assert paired_difference(b, a).verdict == B_BETTER


def test_a_tie_is_never_reported_as_a_difference():
    """Equal numbers of examples won by each side, identical predictions, or a difference
    within the sampling noise of 200 examples (3 against 1: McNemar p = 0.63) are ties."""
    for a, b in (_pairs(20, 20, 100, 60), _pairs(0, 0, 150, 50), _pairs(3, 1, 150, 46)):
        diff = paired_difference(a, b)
        assert diff.verdict == TIED and diff.low <= 0 <= diff.high
    assert paired_difference(*_pairs(0, 0, 150, 50)).p_value == 1.0


def test_seeds_are_resampled_with_the_examples():
    """Three seeds: A wins clearly on two and loses as clearly on the third. Over examples
    alone the pooled difference looks solid; resampling the seeds too shows it is not."""
    rows = [_pairs(80, 0, 100, 20), _pairs(80, 0, 100, 20), _pairs(0, 90, 100, 10)]
    a = np.concatenate([r[0] for r in rows])
    b = np.concatenate([r[1] for r in rows])
    diff = paired_difference(a, b)
    assert diff.seeds == 3 and diff.mean == pytest.approx((0.4 + 0.4 - 0.45) / 3)
    assert diff.verdict == TIED
    # the same seed three times is a clear win
    assert paired_difference(np.repeat(a[:1], 3, 0), np.repeat(b[:1], 3, 0)).verdict == A_BETTER


def test_any_metric_is_recomputed_per_replicate():
    """F1 of the positive class (not a mean over examples): B predicts every example
    positive, A gets them right; the difference is F1(A) - F1(B) = 1 - 2/3."""
    target = np.array([1] * 50 + [0] * 50)
    a, b = target[None, :], np.ones((1, 100), int)

    def f1(pred, t):
        tp = ((pred == 1) & (t == 1)).sum()
        return 2 * tp / (2 * tp + ((pred == 1) & (t == 0)).sum() + ((pred == 0) & (t == 1)).sum())

    diff = paired_metric_difference(a, b, target, f1, replicates=300)
    assert diff.mean == pytest.approx(1 - 2 / 3) and diff.verdict == A_BETTER
    assert paired_metric_difference(a, a, target, f1, replicates=50).verdict == TIED
    with pytest.raises(ValueError, match="do not pair"):
        paired_metric_difference(a, b[:, :90], target, f1)


def test_results_are_the_same_on_every_run():
    a, b = _pairs(12, 5, 100, 20)
    assert paired_difference(a, b) == paired_difference(a, b)


def test_tied_with_best_lists_what_the_best_does_not_beat():
    means = {"x": 0.9, "y": 0.89, "z": 0.7}
    beats = {("x", "z"), ("y", "z")}
    assert tied_with_best(means, lambda a, b: (a, b) in beats) == ["x", "y"]
    assert tied_with_best(means, lambda a, b: True) == ["x"]
    assert tied_with_best({}, lambda a, b: True) == []


def test_rank_interval_covers_the_replicates():
    reference = {"a": 3.0, "b": 2.0, "c": 1.0}
    same = [{"a": 0.9, "b": 0.8, "c": 0.7}] * 10
    reversed_ = [{"a": 0.7, "b": 0.8, "c": 0.9}] * 10

    def rho(ours, paper):
        common = sorted(set(ours) & set(paper))
        return spearmanr([ours[k] for k in common], [paper[k] for k in common]).statistic

    assert rank_interval(same, reference, rho) == pytest.approx((1.0, 1.0))
    low, high = rank_interval(same + reversed_, reference, rho)
    assert low == pytest.approx(-1.0) and high == pytest.approx(1.0)
