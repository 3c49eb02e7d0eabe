"""The paper's overall metrics (BiBench Eqs. 2-9).

Every track's overall metric (OM) is a quadratic mean: sqrt(mean(x_i^2)) over the track's
components, where each component is itself a mean (E) over architectures, devices or settings.
Inputs are plain numbers (ratios or percentages); the functions do not care about units, so
passing percentages gives the paper's percentage figures.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence


def quadratic_mean(values: Iterable[float]) -> float:
    """sqrt(mean(v^2)): the form of every overall metric (paper Sec. 3.1)."""
    values = list(values)
    if not values:
        raise ValueError("quadratic mean of no values is undefined")
    if any(math.isnan(v) for v in values):
        raise ValueError("quadratic mean of values containing NaN")
    return math.sqrt(sum(v * v for v in values) / len(values))


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    if not values:
        raise ValueError("mean of no values is undefined")
    return statistics.fmean(values)


def relative(binarized: Sequence[float], full_precision: Sequence[float]) -> list[float]:
    """Element-wise binarized / full-precision accuracy."""
    if len(binarized) != len(full_precision):
        raise ValueError("binarized and full-precision results must pair up")
    return [b / f for b, f in zip(binarized, full_precision, strict=True)]


def om_task(relative_by_task: Mapping[str, Sequence[float]]) -> float:
    """Eq. 2: quadratic mean over tasks of the mean relative accuracy over architectures."""
    return quadratic_mean(_mean(v) for v in relative_by_task.values())


def om_arch(relative_by_family: Mapping[str, Sequence[float]]) -> float:
    """Eq. 3: quadratic mean over CNN / transformer / MLP of the mean relative accuracy."""
    return quadratic_mean(_mean(v) for v in relative_by_family.values())


def corruption_gap(normal: float, corrupted: float) -> float:
    """Eq. 4: G = A_norm - A_corr."""
    return normal - corrupted


def om_robust(gaps_fp: Mapping[str, Sequence[float]], gaps_bi: Mapping[str, Sequence[float]]
              ) -> float:
    """Eq. 5: quadratic mean over corruption tasks of E(G_fp / G_bi)."""
    if set(gaps_fp) != set(gaps_bi):
        raise ValueError("full-precision and binarized gaps must cover the same corruptions")
    return quadratic_mean(_mean(relative(gaps_fp[c], gaps_bi[c])) for c in gaps_fp)


def sensitivity_ratio(acc_fp: Sequence[float], acc_bi: Sequence[float]) -> float:
    """std(A_hyper) / std(A_hyper^bi) of Eq. 6 (population std over the settings)."""
    std_bi = statistics.pstdev(acc_bi)
    if std_bi == 0:
        raise ValueError("binarized accuracies have zero spread: the ratio is undefined")
    return statistics.pstdev(acc_fp) / std_bi


def om_train(time_ratios: Sequence[float], sensitivity_ratios: Sequence[float]) -> float:
    """Eq. 6: sqrt(1/2 (E^2(T_fp / T_bi) + E^2(std_fp / std_bi)))."""
    return quadratic_mean([_mean(time_ratios), _mean(sensitivity_ratios)])


def om_comp(compression_ratios: Sequence[float], speedup_ratios: Sequence[float]) -> float:
    """Eq. 8: sqrt(1/2 (E^2(r_c) + E^2(r_s)))."""
    return quadratic_mean([_mean(compression_ratios), _mean(speedup_ratios)])


def om_infer(speedups: Sequence[float], storage_savings: Sequence[float]) -> float:
    """Eq. 9: sqrt(1/2 (E^2(T_fp / T_bi) + E^2(S_fp / S_bi))) over devices and engines."""
    return quadratic_mean([_mean(speedups), _mean(storage_savings)])
