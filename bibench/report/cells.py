"""The report's per-task part: the accuracy tables of the paper's Tables 7-9 with the paper's
number beside each of ours and the rank agreement per row, every cell's numbers grouped per
task, training curves and robustness figures."""

from __future__ import annotations

import math

import pandas as pd

from bibench.catalog import FP32
from bibench.metrics.quality import AT_CHANCE, EVAL_GAP_MARK, NOT_CONVERGED, unstable_over_seeds
from bibench.report.common import Stat, algorithm_order, png, pyplot
from bibench.report.paper import cell_row

# Marks another stage may add to metrics.parquet (at chance, not converged, ...): shown when
# present, never required.
MARK_COLUMNS = ("status", "note")
# What a reader needs of each cell x condition (the rest stays in the "every column" table).
SHOWN = [("value", "metric (x100)", 100.0), ("relative_to_fp32", "of FP32 (%)", 100.0),
         ("train_seconds_per_epoch", "train s/epoch", 1.0),
         ("compression_ratio", "r<sub>c</sub>", 1.0), ("speedup_ratio", "r<sub>s</sub>", 1.0),
         ("onnx_argmax_agreement", "ONNX agreement", 1.0),
         ("latency_median_ms", "latency ms", 1.0),
         ("latency_speedup_vs_fp32", "latency speedup", 1.0),
         ("storage_saving", "storage saving", 1.0)]


def cell_marks(metrics: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """Per (task, arch, algorithm): what is wrong with it ('' when nothing): a training status
    other than ok, at chance, eval gap or not converged in any seed, unstable over seeds
    (bibench.metrics.quality), and any mark column another stage added."""
    marks: dict[tuple[str, str, str], str] = {}
    clean = metrics[metrics["condition"] == "clean"]
    unstable = unstable_over_seeds(clean)
    extra = [c for c in MARK_COLUMNS if c in clean.columns]
    for key, rows in clean.groupby(["task", "arch", "algorithm"]):
        found = sorted({s for s in rows["train_status"] if s != "ok"})
        for col in extra:
            found += sorted({str(v) for v in rows[col] if v and v == v and v != "ok"})
        if "at_chance" in rows.columns and rows["at_chance"].fillna(False).any():
            found.append(AT_CHANCE)
        if "eval_gap" in rows.columns and rows["eval_gap"].fillna(False).any():
            found.append(EVAL_GAP_MARK)
        if "convergence" in rows.columns and (rows["convergence"] == NOT_CONVERGED).any():
            found.append(NOT_CONVERGED)
        if key in unstable:
            found.append(unstable[key])
        marks[key] = "; ".join(found)
    return marks


def unranked(metrics: pd.DataFrame) -> set[tuple[str, str, str]]:
    """(task, arch, algorithm) whose clean metric is never ranked: training failed, diverged
    or was skipped, in any seed it sits at chance or has an eval gap (its evaluation does
    not measure the model that trained), or its seeds disagree by more than the seed-range
    limit (its rank would be its seed's). `not converged` is a note, not a reason: every
    algorithm of a task has the same recipe."""
    clean = metrics[metrics["condition"] == "clean"]
    bad = clean["train_status"] != "ok"
    for column in ("at_chance", "eval_gap"):
        if column in clean.columns:
            bad = bad | clean[column].fillna(False).astype(bool)
    return ({tuple(k) for k in clean.loc[bad, ["task", "arch", "algorithm"]]
             .itertuples(index=False)} | set(unstable_over_seeds(clean)))


def _paper_label(stands_in_for: str, arch: str) -> tuple[dict[str, float], str]:
    paper = cell_row(stands_in_for, arch)
    if paper.empty:
        return {}, f"no paper row for {stands_in_for} / {arch}"
    values = dict(zip(paper["algorithm"], paper["value"], strict=True))
    return values, f"{paper['table'].iloc[0]}, row {paper['row'].iloc[0]}"


def _heading(first: pd.Series) -> str:
    if first["embedded"]:
        return f"embedded stand-in for {first['stands_in_for']}: compare orders, not values"
    return str(first["stands_in_for"])


def task_tables(metrics: pd.DataFrame, stats: dict[tuple, Stat],
                comparisons: pd.DataFrame | None = None,
                reps: dict[tuple[str, str], pd.DataFrame] | None = None) -> list[dict]:
    """Per task, a row per architecture: each algorithm's clean metric (x100, mean ± 95% CI)
    with the paper's number for the data set and architecture the task stands for, which
    algorithms are best and worst where the paired tests say so (`comparisons`) and which are
    tied, and the Spearman correlation between the paper's order of algorithms and ours with
    its bootstrap interval (`reps`, bibench.report.ranking)."""
    from bibench.metrics.comparisons import beats
    from bibench.report.ranking import (
        best_and_worst,
        rank_agreement,
        ranking_text,
        significant_marks,
    )

    marks = cell_marks(metrics)
    excluded = unranked(metrics)
    tables = []
    clean = metrics[metrics["condition"] == "clean"]
    for task, group in clean.groupby("task", sort=True):
        first = group.iloc[0]
        algorithms = algorithm_order(group["algorithm"])
        rows = []
        for arch in sorted(group["arch"].unique()):
            paper, source = _paper_label(first["stands_in_for"], arch)
            ours = {a: stats.get((task, arch, a, "clean", 0, "value"), Stat(math.nan))
                    for a in algorithms}
            present = set(group[group["arch"] == arch]["algorithm"])
            ranked = {a: s.mean for a, s in ours.items()
                      if a != FP32 and a in present and (task, arch, a) not in excluded}
            top, bottom, ranking = [], [], "no paired tests (no per-example predictions)"
            if comparisons is not None and len(comparisons):
                top, bottom = best_and_worst(ranked, beats(comparisons, task, arch))
                seeds = int(group[group["arch"] == arch]["seed"].nunique())
                ranking = ranking_text(top, bottom, len(ranked), seeds)
            best, worst = significant_marks(top, bottom)
            rows.append({"arch": arch, "source": source, "ranking": ranking, "cells": [
                {"text": ours[a].text(100), "paper": paper.get(a, math.nan),
                 "best": a in best, "worst": a in worst,
                 "mark": marks.get((task, arch, a), "missing" if a not in present else "")}
                for a in algorithms],
                "rho": rank_agreement({a: s.mean for a, s in ours.items()},
                                      (reps or {}).get((task, arch)), paper)})
        tables.append({"task": task, "metric": first["metric"], "heading": _heading(first),
                       "embedded": bool(first["embedded"]), "algorithms": algorithms,
                       "rows": rows})
    return tables


def cell_groups(metrics: pd.DataFrame, stats: dict[tuple, Stat]) -> list[dict]:
    """Per task: one row per arch x algorithm x condition x severity with the shown quantities
    (mean ± 95% CI), and every column of metrics.parquet, one row per seed."""
    marks = cell_marks(metrics)
    groups = []
    keys = ["arch", "algorithm", "condition", "severity"]
    for task, part in metrics.groupby("task", sort=True):
        order = {a: i for i, a in enumerate(algorithm_order(part["algorithm"]))}
        cells = part.drop_duplicates(keys).sort_values(
            keys, key=lambda s: s.map(order) if s.name == "algorithm" else s)
        rows = [{"key": [r.arch, r.algorithm, r.condition, str(r.severity)],
                 "values": [stats.get((task, r.arch, r.algorithm, r.condition, r.severity, q),
                                      Stat(math.nan)).text(scale) for q, _, scale in SHOWN],
                 "engine": r.latency_engine or "–",
                 "n": stats.get((task, r.arch, r.algorithm, r.condition, r.severity, "value"),
                                Stat(math.nan, n=0)).n,
                 "mark": marks.get((task, r.arch, r.algorithm), "")}
                for r in cells.itertuples()]
        raw = part.sort_values(["arch", "algorithm", "seed", "condition", "severity"])
        groups.append({"task": task, "rows": rows, "columns": list(raw.columns),
                       "raw": [[_plain(v) for v in r] for r in raw.itertuples(index=False)]})
    return groups


def shown_columns() -> list[str]:
    return [title for _, title, _ in SHOWN]


def _plain(value) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.6g}"
    return str(value)


def training_figures(train: pd.DataFrame) -> list[dict[str, str]]:
    """Per (task, arch): loss and training accuracy per epoch for each algorithm (FP32: its
    pretraining; the others: their finetuning), mean over seeds."""
    plt = pyplot()
    figures = []
    for (task, arch), group in train.groupby(["task", "arch"], sort=True):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
        for algo in algorithm_order(group["algorithm"]):
            runs = group[group["algorithm"] == algo]
            curve = runs.groupby("epoch")[["loss", "train_accuracy"]].mean()
            label = f"{algo} ({', '.join(sorted(set(runs['stage'])))})"
            width = 2.5 if algo == FP32 else 1.5
            for ax, column in zip(axes, ("loss", "train_accuracy"), strict=True):
                ax.plot(curve.index, curve[column], marker="o", ms=3, label=label,
                        linewidth=width)
        for ax, title in zip(axes, ("training loss", "training accuracy"), strict=True):
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_title(f"{task} / {arch}: {title}", fontsize=9)
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=7, ncol=2)
        figures.append({"title": f"{task} / {arch}: training curves (mean over seeds)",
                        "src": png(fig)})
    return figures


def corruption_figures(metrics: pd.DataFrame, stats: dict[tuple, Stat]) -> list[dict[str, str]]:
    """Per (task, arch), one panel per corruption: the metric against severity (0 = clean) per
    algorithm, mean over seeds with its 95% band where there are two or more seeds."""
    plt = pyplot()
    figures = []
    corrupted = metrics[metrics["condition"] != "clean"]
    for (task, arch), group in corrupted.groupby(["task", "arch"], sort=True):
        conditions = sorted(group["condition"].unique())
        fig, axes = plt.subplots(1, len(conditions), figsize=(5 * len(conditions), 3.4),
                                 squeeze=False)
        for ax, cond in zip(axes[0], conditions, strict=True):
            sub = group[group["condition"] == cond]
            for algo in algorithm_order(sub["algorithm"]):
                sevs = [0] + sorted(sub[sub["algorithm"] == algo]["severity"].unique())
                points = [stats.get((task, arch, algo, "clean" if s == 0 else cond, s,
                                     "value"), Stat(math.nan)) for s in sevs]
                ax.plot(sevs, [p.mean for p in points], marker="o", label=algo,
                        linewidth=2.5 if algo == FP32 else 1.5)
                ax.fill_between(sevs, [p.low for p in points], [p.high for p in points],
                                alpha=0.15)
            ax.set_xlabel(f"{cond} severity (0 = clean)")
            ax.set_ylabel(sub["metric"].iloc[0])
            ax.set_title(f"{task} / {arch}: {cond}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, ncol=2)
        figures.append({"title": f"{task} / {arch}: metric per corruption and severity",
                        "src": png(fig)})
    return figures
