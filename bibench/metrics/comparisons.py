"""Which algorithm beats which, per task and architecture: results/comparisons.parquet, and
the bootstrap replicates the report's intervals are drawn from (results/bootstrap.parquet).

Every algorithm of a (task, architecture), FP32 included, is resampled with one shared draw of
test examples and seeds (bibench.metrics.significance.Draws), so that the difference of any two
algorithms' replicate values is a paired bootstrap, and so is any quantity computed from several
algorithms at once (the rank agreement with the paper, a track's overall metric).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from bibench.catalog import FP32
from bibench.metrics.significance import (
    A_BETTER,
    B_BETTER,
    REPLICATES,
    Draws,
    difference,
    draws,
    replicate_means,
    replicate_metric,
)

# Metrics that are a mean of a per-example score (per point: the fraction of an example's
# points): their replicates are one matrix product; any other is recomputed per replicate.
MEAN_PER_EXAMPLE = frozenset({"accuracy"})
REGRESSION_METRICS = frozenset({"pearson_spearman"})
GENERIC_REPLICATES = 500  # a metric recomputed per replicate costs a call each


def _task_metric(name: str):
    """The task metric on numpy predictions and targets (predicted labels, or outputs)."""
    import torch

    from bibench.evaluation.task_metrics import TASK_METRICS

    fn = TASK_METRICS[name]
    dtype = np.float32 if name in REGRESSION_METRICS else np.int64

    def metric(pred: np.ndarray, target: np.ndarray) -> float:
        return float(fn(torch.from_numpy(np.ascontiguousarray(pred, dtype)),
                        torch.from_numpy(np.ascontiguousarray(target, dtype))))

    return metric


def _cells(clean: pd.DataFrame) -> tuple[np.ndarray, dict[str, dict[int, np.ndarray]], int]:
    """(targets (examples, points), {algorithm: {seed: predictions}}, examples) of one
    (task, arch)'s clean rows that carry predictions."""
    usable = clean[clean["predictions"].notna() & (clean["status"] == "ok")]
    first = usable.iloc[0]
    n = int(first["n_samples"])
    target = np.asarray(first["targets"], np.float64).reshape(n, -1)
    preds: dict[str, dict[int, np.ndarray]] = {}
    for r in usable.itertuples():
        preds.setdefault(r.algorithm, {})[int(r.seed)] = np.asarray(
            r.predictions, np.float64).reshape(n, -1)
    return target, preds, n


def _replicates(target: np.ndarray, per_seed: dict[int, np.ndarray], seeds: list[int],
                metric: str, d: Draws) -> tuple[float, np.ndarray]:
    """(the algorithm's mean metric over its seeds, its replicate values)."""
    if metric in MEAN_PER_EXAMPLE:
        scores = np.full((len(seeds), len(target)), np.nan)
        for i, s in enumerate(seeds):
            if s in per_seed:
                scores[i] = (per_seed[s] == target).mean(axis=1)
        return float(np.nanmean(scores)), replicate_means(scores, d)
    fn = _task_metric(metric)
    squeeze = (lambda a: a[:, 0]) if target.shape[1] == 1 else (lambda a: a)
    preds = [squeeze(per_seed[s]) if s in per_seed else None for s in seeds]
    mean = float(np.mean([fn(p, squeeze(target)) for p in preds if p is not None]))
    return mean, replicate_metric(preds, squeeze(target), fn, d)


def compare_algorithms(evals: pd.DataFrame, *, replicates: int = REPLICATES
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(comparisons: one row per pair of binarized algorithms of each (task, arch), with the
    paired difference of their clean metric, its 95% interval and which is better or 'tied';
    bootstrap: every algorithm's replicate values of that metric, FP32 included)."""
    comparisons, boot = [], []
    clean = evals[evals["condition"] == "clean"]
    for (task, arch), group in clean.groupby(["task", "arch"], sort=True):
        if not (group["predictions"].notna() & (group["status"] == "ok")).any():
            continue  # detection, or nothing evaluated: no per-example outcome
        metric = str(group["metric"].iloc[0])
        target, preds, n = _cells(group)
        seeds = sorted({s for per in preds.values() for s in per})
        reps = replicates if metric in MEAN_PER_EXAMPLE else min(replicates, GENERIC_REPLICATES)
        d = draws(n, len(seeds), replicates=reps)
        values = {a: _replicates(target, preds[a], seeds, metric, d) for a in sorted(preds)}
        for algo, (_, rep) in values.items():
            boot += [{"task": task, "arch": arch, "algorithm": algo, "replicate": r,
                      "value": float(v)} for r, v in enumerate(rep)]
        method = ("paired bootstrap over test examples" + (" and seeds" if len(seeds) > 1
                                                           else " (one seed)"))
        binarized = [a for a in values if a != FP32]
        for a, b in itertools.combinations(binarized, 2):
            common = sorted(set(preds[a]) & set(preds[b]))
            diff = difference(values[a][0], values[b][0], values[a][1], values[b][1],
                              seeds=len(common), examples=n)
            better = {A_BETTER: a, B_BETTER: b}.get(diff.verdict, "tied")
            comparisons.append({
                "task": task, "arch": arch, "metric": metric, "algorithm_a": a,
                "algorithm_b": b, "mean_a": values[a][0], "mean_b": values[b][0],
                "difference": diff.mean, "ci95_low": diff.low, "ci95_high": diff.high,
                "p_value": diff.p_value, "better": better, "seeds": len(common),
                "n_examples": n, "replicates": reps, "method": method})
    return (pd.DataFrame(comparisons, columns=COMPARISON_COLUMNS),
            pd.DataFrame(boot, columns=["task", "arch", "algorithm", "replicate", "value"]))


COMPARISON_COLUMNS = ["task", "arch", "metric", "algorithm_a", "algorithm_b", "mean_a", "mean_b",
                      "difference", "ci95_low", "ci95_high", "p_value", "better", "seeds",
                      "n_examples", "replicates", "method"]


def beats(comparisons: pd.DataFrame, task: str, arch: str):
    """`beats(a, b)`: whether a is significantly better than b on (task, arch)."""
    part = comparisons[(comparisons["task"] == task) & (comparisons["arch"] == arch)]
    wins = {(r.better, r.algorithm_b if r.better == r.algorithm_a else r.algorithm_a)
            for r in part.itertuples() if r.better != "tied"}
    return lambda a, b: (a, b) in wins
