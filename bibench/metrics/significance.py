"""Whether one algorithm beats another beyond noise: paired tests on the same test examples.

Two algorithms of the same task and architecture are scored on the same test examples, and
with several seeds on the same seeds (the default config pairs them: every algorithm starts
from the FP32 model of the same seed). Their difference is tested on those pairs, which removes
the spread that comes from which examples happen to be hard:

- the statistic is the task metric of A minus that of B, averaged over seeds;
- its 95% interval is a paired bootstrap: each replicate draws the test examples with
  replacement (the same draw for both algorithms) and, with several seeds, the seeds too, then
  recomputes both metrics (any task metric, not only accuracy);
- A beats B when the interval lies above 0, B beats A when it lies below, and otherwise they
  are *tied*: the data cannot tell them apart. A tie is never reported as a difference.

With one seed the interval covers the test-set sampling only: a second seed can still reverse a
significant difference, so a one-seed result says so wherever it is shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
REPLICATES = 2000
BOOTSTRAP_SEED = 0  # the replicates are drawn the same way on every run: results are exact
A_BETTER, B_BETTER, TIED = "a", "b", "tied"

Metric = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Difference:
    """metric(A) - metric(B) on paired test examples (and seeds), with its interval."""
    mean: float
    low: float
    high: float
    p_value: float  # two-sided, from the bootstrap distribution (at least 1 / replicates)
    seeds: int
    examples: int

    @property
    def verdict(self) -> str:
        """'a' (A is better), 'b' (B is better) or 'tied', for a higher-is-better metric."""
        if self.low > 0:
            return A_BETTER
        if self.high < 0:
            return B_BETTER
        return TIED


@dataclass(frozen=True)
class Draws:
    """One bootstrap draw shared by every algorithm of a (task, architecture), so that any two
    algorithms' replicate values are paired: how often each test example (replicates,
    examples) and each seed (replicates, seeds) is drawn in each replicate."""
    examples: np.ndarray
    seeds: np.ndarray

    @property
    def replicates(self) -> int:
        return len(self.examples)


def draws(examples: int, seeds: int, *, replicates: int = REPLICATES,
          seed: int = BOOTSTRAP_SEED) -> Draws:
    """Test examples drawn with replacement and, with several seeds, the seeds too."""
    rng = np.random.default_rng(seed)
    ex = rng.multinomial(examples, np.full(examples, 1.0 / examples), size=replicates)
    sd = (rng.multinomial(seeds, np.full(seeds, 1.0 / seeds), size=replicates) if seeds > 1
          else np.ones((replicates, 1), np.int64))
    return Draws(ex.astype(np.float64), sd.astype(np.float64))


def replicate_means(scores: np.ndarray, d: Draws) -> np.ndarray:
    """Per replicate, the mean over drawn seeds of the mean per-example score over drawn
    examples; `scores` (seeds, examples), a row of NaN for a seed the algorithm lacks (the
    replicate then averages the seeds it has; NaN if it drew none of them)."""
    scores = np.atleast_2d(np.asarray(scores, np.float64))
    have = ~np.isnan(scores).any(axis=1)
    weights = d.seeds * have  # (R, S)
    per_seed = np.nan_to_num(scores) @ d.examples.T / d.examples.sum(axis=1)  # (S, R)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights * per_seed.T).sum(axis=1) / weights.sum(axis=1)


def replicate_metric(predictions: Sequence[np.ndarray | None], target: np.ndarray,
                     metric: Metric, d: Draws) -> np.ndarray:
    """Per replicate, any task metric recomputed on the drawn examples, averaged over the
    drawn seeds; `predictions` per seed (None where the algorithm lacks that seed)."""
    out = np.full(d.replicates, np.nan)
    for r in range(d.replicates):
        idx = np.repeat(np.arange(len(target)), d.examples[r].astype(np.int64))
        values = [metric(p[idx], target[idx]) for s, p in enumerate(predictions)
                  if p is not None for _ in range(int(d.seeds[r, s]))]
        if values:
            out[r] = float(np.mean(values))
    return out


def difference(mean_a: float, mean_b: float, boot_a: np.ndarray, boot_b: np.ndarray, *,
               seeds: int, examples: int) -> Difference:
    """A minus B from paired replicate values (the same Draws for both)."""
    boot = np.asarray(boot_a) - np.asarray(boot_b)
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        nan = float("nan")
        return Difference(mean_a - mean_b, nan, nan, nan, seeds, examples)
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    p = 2 * min(float(np.mean(boot <= 0)), float(np.mean(boot >= 0)))
    return Difference(mean_a - mean_b, float(low), float(high),
                      float(min(max(p, 1 / boot.size), 1.0)), seeds, examples)


def paired_difference(scores_a: np.ndarray, scores_b: np.ndarray, *,
                      replicates: int = REPLICATES, seed: int = BOOTSTRAP_SEED) -> Difference:
    """The difference of two mean-per-example metrics (accuracy: 1/0 per example; per-point
    accuracy: each example's fraction right), from per-example scores of shape (seeds,
    examples), paired on both axes."""
    a, b = np.atleast_2d(np.asarray(scores_a, float)), np.atleast_2d(np.asarray(scores_b, float))
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired scores must have one shape, got {a.shape} and {b.shape}")
    d = draws(a.shape[1], a.shape[0], replicates=replicates, seed=seed)
    return difference(float(np.nanmean(a)), float(np.nanmean(b)), replicate_means(a, d),
                      replicate_means(b, d), seeds=a.shape[0], examples=a.shape[1])


def paired_metric_difference(pred_a: np.ndarray, pred_b: np.ndarray, target: np.ndarray,
                             metric: Metric, *, replicates: int = 1000,
                             seed: int = BOOTSTRAP_SEED) -> Difference:
    """The difference of any task metric (F1, MCC, correlation, mIoU, ...) from predictions of
    shape (seeds, examples, ...) against targets (examples, ...), recomputed per replicate."""
    pa, pb, t = np.asarray(pred_a), np.asarray(pred_b), np.asarray(target)
    if pa.shape != pb.shape or pa.shape[1:] != t.shape[:1] + pa.shape[2:] or pa.size == 0:
        raise ValueError(f"predictions {pa.shape} and {pb.shape} do not pair with targets "
                         f"{t.shape}")
    seeds, n = pa.shape[:2]
    d = draws(n, seeds, replicates=replicates, seed=seed)
    mean_a = float(np.mean([metric(p, t) for p in pa]))
    mean_b = float(np.mean([metric(p, t) for p in pb]))
    return difference(mean_a, mean_b, replicate_metric(list(pa), t, metric, d),
                      replicate_metric(list(pb), t, metric, d), seeds=seeds, examples=n)


def tied_with_best(means: Mapping[str, float], beats: Callable[[str, str], bool]) -> list[str]:
    """The algorithms the data cannot tell from the one with the best mean: the best itself and
    every algorithm it does not beat significantly (`beats(a, b)`: a significantly better)."""
    if not means:
        return []
    top = max(means, key=means.get)
    return [a for a in sorted(means, key=means.get, reverse=True)
            if a == top or not beats(top, a)]


def rank_interval(replicate_values: Sequence[Mapping[str, float]], reference: Mapping[str, float],
                  rank_correlation: Callable[[Mapping[str, float], Mapping[str, float]], float]
                  ) -> tuple[float, float]:
    """95% interval of a rank correlation with `reference` over bootstrap replicates of our
    values (each replicate: algorithm -> value on resampled examples and seeds)."""
    values = np.array([rank_correlation(r, reference) for r in replicate_values], float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)
