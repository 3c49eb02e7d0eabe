"""What the report may call better: a difference between two algorithms is a finding only when
it is significant at 95%; otherwise the algorithms are *tied* and the report says so.

Three sources of uncertainty, each used where it applies:

- test examples (and seeds): the paired bootstrap of results/bootstrap.parquet, one shared draw
  per (task, arch) for every algorithm and FP32 (bibench.metrics.comparisons). It gives the
  per-task tables' best and worst, the rank agreement's interval, and the accuracy tracks'
  rows built on clean accuracy (relative accuracy per task or family, OM_task, OM_arch), even
  with one seed;
- seeds: with two or more seeds, every track row has a 95% t-interval; a best or worst needs
  an interval that does not overlap any other's;
- none: the theoretical-complexity track counts parameters and operations exactly.

An algorithm whose value covers fewer cells than another's in the same row (it failed, did
not deploy, or was marked) is shown with its coverage and is never best or worst: its value
is not comparable with the others'.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from bibench.catalog import FP32
from bibench.metrics.overall import om_arch, om_task
from bibench.metrics.seeds import separated
from bibench.metrics.significance import CONFIDENCE, rank_interval, tied_with_best
from bibench.metrics.tracks import TRACKS
from bibench.report.paper import spearman

EXACT_TRACKS = frozenset(t.name for t in TRACKS if t.exact)


def replicates(bootstrap: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """Per (task, arch): a frame of replicate x algorithm values (one shared draw)."""
    return {key: part.pivot(index="replicate", columns="algorithm", values="value")
            for key, part in bootstrap.groupby(["task", "arch"], sort=True)}


def _significantly(reps: pd.DataFrame | Mapping[str, np.ndarray], a: str, b: str) -> bool:
    """Whether a's replicate values are above b's beyond the 95% interval (paired)."""
    diff = np.asarray(reps[a], float) - np.asarray(reps[b], float)
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        return False
    return bool(np.quantile(diff, (1 - CONFIDENCE) / 2) > 0)


def best_and_worst(means: Mapping[str, float], beats: Callable[[str, str], bool]
                   ) -> tuple[list[str], list[str]]:
    """(tied for best, tied for worst): the best mean with every algorithm it does not beat
    significantly, the worst mean with every algorithm that does not beat it. A single name
    is a significant best (or worst)."""
    finite = {a: m for a, m in means.items() if m == m}
    if len(finite) < 2:
        return [], []
    top = tied_with_best(finite, beats)
    bottom = tied_with_best({a: -m for a, m in finite.items()}, lambda a, b: beats(b, a))
    return top, bottom


def ranking_text(top: list[str], bottom: list[str], n: int, seeds: int) -> str:
    """How a row's ranking reads: a significant best and worst, or the ties."""
    if n < 2:
        return "fewer than two comparable algorithms"
    one_seed = " (one seed: a second seed may reverse it)" if seeds < 2 else ""

    def part(names: list[str], which: str) -> str:
        if len(names) == 1:
            return f"{which}: {names[0]}"
        if len(names) == n:
            return f"all {n} tied for {which}"
        return f"tied for {which}: {', '.join(names)}"

    return f"{part(top, 'best')}; {part(bottom, 'worst')} (95%, paired){one_seed}"


def rank_agreement(means: Mapping[str, float], reps: pd.DataFrame | None,
                   paper: Mapping[str, float]) -> str:
    """Spearman's rho with the paper's order and its 95% bootstrap interval over test
    examples and seeds, as shown in the report."""
    rho, n = spearman(dict(means), dict(paper))
    if rho != rho:
        return f"n/a ({n} algorithm{'s' if n != 1 else ''} in common; needs 3)"
    if reps is None or reps.empty:
        return f"{rho:+.2f} (n={n}; no interval)"
    low, high = rank_interval([row.to_dict() for _, row in reps.iterrows()], paper,
                              lambda ours, theirs: spearman(ours, theirs)[0])
    if low != low:
        return f"{rho:+.2f} (n={n}; no interval)"
    return f"{rho:+.2f} [{low:+.2f}, {high:+.2f}] (n={n})"


def _cells(inputs: str) -> set[tuple[str, str]]:
    """(task, arch) of the cells a tracks.parquet value uses (its `inputs`, task/arch/algo/seed)."""
    return {tuple(c.split("/")[:2]) for c in json.loads(inputs or "[]")}


def coverage(cells: pd.DataFrame) -> dict[str, str]:
    """Per algorithm of one track row (`cells`: tracks.parquet rows indexed by algorithm)
    whose value covers fewer (task, arch) pairs than the widest of the row: 'k of K (task,
    arch)'. Such a value is not comparable with the others and is never best or worst."""
    used = {a: _cells(r["inputs"]) for a, r in cells.iterrows() if a != FP32}
    used = {a: c for a, c in used.items() if c}
    if not used:
        return {}
    widest = max(len(c) for c in used.values())
    union = set().union(*used.values())
    return {a: f"{len(c)} of {len(union)} (task, arch)" for a, c in used.items()
            if len(c) < widest}


def track_replicates(reps: Mapping[tuple[str, str], pd.DataFrame], family: Mapping[str, str]
                     ) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Replicate values of the accuracy tracks' rows built on clean accuracy: per (track,
    metric) row (relative:<task>, relative:<family>, OM_task, OM_arch), per binarized
    algorithm covering
    every (task, arch) of the bootstrap. Relative accuracy is the algorithm's replicate value
    over FP32's on the same draw (Eqs. 2-3, in %)."""
    rel: dict[str, dict[tuple[str, str], np.ndarray]] = {}
    for (task, arch), frame in reps.items():
        if FP32 not in frame:
            continue
        for algo in frame.columns:
            if algo != FP32:
                rel.setdefault(algo, {})[(task, arch)] = (
                    100 * frame[algo].to_numpy(float) / frame[FP32].to_numpy(float))
    keys = {k for per in rel.values() for k in per}
    out: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for algo, per in rel.items():
        if set(per) != keys:
            continue  # partial coverage: not comparable, never tested against the others
        tasks = sorted({t for t, _ in per})
        families = sorted({family[a] for _, a in per})
        by_task = {t: np.mean([v for (tt, _), v in per.items() if tt == t], axis=0)
                   for t in tasks}
        by_family = {f: np.mean([v for (_, a), v in per.items() if family[a] == f], axis=0)
                     for f in families}
        n = len(next(iter(per.values())))
        values = {("learning_task", f"relative:{t}"): by_task[t] for t in tasks}
        values.update({("neural_architecture", f"relative:{f}"): by_family[f]
                       for f in families})
        values["learning_task", "OM_task"] = np.array(
            [om_task({t: [by_task[t][r]] for t in tasks}) for r in range(n)])
        values["neural_architecture", "OM_arch"] = np.array(
            [om_arch({f: [by_family[f][r]] for f in families}) for r in range(n)])
        for row, v in values.items():
            out.setdefault(row, {})[algo] = v
    return out


def significant_marks(top: list[str], bottom: list[str]) -> tuple[set[str], set[str]]:
    """(best, worst) to mark: a tie marks nobody."""
    best = set(top) if len(top) == 1 else set()
    worst = set(bottom) if len(bottom) == 1 and bottom != top else set()
    return best, worst


def row_ranking(track: str, stats: Mapping[str, object],
                row_reps: Mapping[str, np.ndarray] | None, excluded: set[str],
                higher_is_better: bool = True) -> tuple[list[str], list[str], str]:
    """(tied for best, tied for worst, how the row was tested) of one track row: only
    significant (or exact) differences separate algorithms; excluded ones take no part."""
    sign = 1.0 if higher_is_better else -1.0
    means = {a: sign * s.mean for a, s in stats.items() if a not in excluded and s.mean == s.mean}
    if len(means) < 2:
        return [], [], ""
    if track in EXACT_TRACKS:
        top, bottom = best_and_worst(means, lambda a, b: means[a] > means[b])
        how = "exact counts"
    elif row_reps is not None and set(means) <= set(row_reps):
        signed = {a: sign * np.asarray(row_reps[a]) for a in means}
        top, bottom = best_and_worst(means, lambda a, b: _significantly(signed, a, b))
        how = "paired bootstrap over test examples"
    elif all(getattr(stats[a], "n", 1) >= 2 for a in means):
        def beats(a: str, b: str) -> bool:
            sa, sb = stats[a], stats[b]
            return means[a] > means[b] and separated((sa.low, sa.high), (sb.low, sb.high))
        top, bottom = best_and_worst(means, beats)
        how = "95% intervals over seeds"
    else:
        return [], [], "one seed and no per-example test: not ranked"
    return top, bottom, how
