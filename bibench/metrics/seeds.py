"""Seeds: the mean of a metric over seeds with its 95% confidence interval (Student's t).

With n seeds the interval is mean +- t(0.975, n-1) * s / sqrt(n), s the sample standard
deviation: the t-distribution, because n is small (2-5 seeds) and the normal quantile would
make the interval too narrow. With one seed there is no interval (NaN), never a zero width.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

# metrics.parquet columns that vary with the seed, summarised in results/summary.parquet
QUANTITIES = ("value", "relative_to_fp32", "train_wall_seconds", "train_seconds_per_epoch",
              "compression_ratio", "speedup_ratio", "onnx_argmax_agreement",
              "latency_median_ms", "latency_speedup_vs_fp32", "storage_saving")
GROUP = ["task", "arch", "algorithm", "condition", "severity"]


def mean_ci(values: Iterable[float], level: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values; low/high NaN below two values."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(finite)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = sum(finite) / n
    if n < 2:
        return mean, math.nan, math.nan, n
    from scipy.stats import t

    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, n


def seed_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """results/summary.parquet: per cell (task, arch, algorithm) x condition x severity and per
    seed-dependent quantity of metrics.parquet, the mean over seeds, its 95% CI, n seeds."""
    rows = []
    for key, group in metrics.groupby(GROUP, sort=True):
        for quantity in QUANTITIES:
            mean, low, high, n = mean_ci(group[quantity])
            rows.append({**dict(zip(GROUP, key, strict=True)), "quantity": quantity,
                         "mean": mean, "ci95_low": low, "ci95_high": high, "n_seeds": n})
    return pd.DataFrame(rows, columns=GROUP + ["quantity", "mean", "ci95_low", "ci95_high",
                                               "n_seeds"])


def separated(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two 95% intervals (low, high) do not overlap: a difference larger than both
    intervals. False when either interval is unknown (one seed)."""
    if any(math.isnan(x) for x in (*a, *b)):
        return False
    return a[0] > b[1] or b[0] > a[1]
