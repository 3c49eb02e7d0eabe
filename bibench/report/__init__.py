"""The HTML report: jinja2 template, matplotlib figures embedded as base64 PNG (one file)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jinja2
import pandas as pd

import bibench
from bibench.catalog import FP32
from bibench.io import atomic_write, read_table
from bibench.report.common import algorithm_order, png, pyplot

TEMPLATES = Path(__file__).parent / "templates"


def _worst_convergence(values: pd.Series) -> str:
    """Over seeds: `not converged` if any seed's run had not levelled off."""
    from bibench.metrics.quality import NOT_CONVERGED

    return NOT_CONVERGED if (values == NOT_CONVERGED).any() else str(values.iloc[-1])


def _marks(row: pd.Series) -> list[str]:
    """What a reader must know next to a cell's number (bibench.metrics.quality)."""
    from bibench.metrics.quality import AT_CHANCE, NOT_CONVERGED

    return ([AT_CHANCE] if row["at_chance"] else []) + (
        [NOT_CONVERGED] if row["convergence"] == NOT_CONVERGED else [])


def summary_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per task x arch x algorithm (mean over seeds) with the headline numbers."""
    clean = metrics[metrics["condition"] == "clean"]
    corrupted = metrics[metrics["condition"] != "clean"]
    keys = ["task", "arch", "algorithm"]
    table = clean.groupby(keys, as_index=False).agg(
        stands_in_for=("stands_in_for", "first"), embedded=("embedded", "first"),
        metric=("metric", "first"), clean=("value", "mean"),
        relative=("relative_to_fp32", "mean"), status=("train_status", "last"),
        train_s=("train_wall_seconds", "mean"), compression=("compression_ratio", "first"),
        speedup=("speedup_ratio", "first"), onnx_agreement=("onnx_argmax_agreement", "mean"),
        latency_ms=("latency_median_ms", "mean"), latency_speedup=("latency_speedup_vs_fp32",
                                                                   "mean"),
        latency_engine=("latency_engine", "first"), storage=("storage_saving", "mean"),
        seeds=("seed", "nunique"), at_chance=("at_chance", "max"),
        convergence=("convergence", _worst_convergence),
    )
    if not corrupted.empty:
        corr = corrupted.groupby(keys, as_index=False)["value"].mean()
        table = table.merge(corr.rename(columns={"value": "corrupted"}), on=keys, how="left")
    else:
        table["corrupted"] = float("nan")
    order = {a: i for i, a in enumerate(algorithm_order(table["algorithm"]))}
    return table.sort_values(["task", "arch", "algorithm"], key=lambda s: s.map(order)
                             if s.name == "algorithm" else s).reset_index(drop=True)


def task_tables(summary: pd.DataFrame) -> list[dict]:
    """Per task, the paper's Tables 7-9 layout: a row per architecture, FP32 then a column per
    algorithm, holding the clean task metric (x100) of the cell (mean over seeds)."""
    tables = []
    for task, group in summary.groupby("task", sort=True):
        algorithms = algorithm_order(group["algorithm"])
        rows = []
        for arch, by_arch in group.groupby("arch", sort=True):
            values = dict(zip(by_arch["algorithm"], by_arch["clean"], strict=True))
            status = dict(zip(by_arch["algorithm"], by_arch["status"], strict=True))
            marks = {r["algorithm"]: _marks(r) for _, r in by_arch.iterrows()}
            rows.append({"arch": arch, "cells": [
                {"value": values.get(a), "status": status.get(a, "missing"),
                 "marks": marks.get(a, [])} for a in algorithms
            ]})
        first = group.iloc[0]
        tables.append({"task": task, "metric": first["metric"], "embedded": bool(first["embedded"]),
                       "stands_in_for": first["stands_in_for"], "algorithms": algorithms,
                       "rows": rows})
    return tables


def corruption_figure(metrics: pd.DataFrame) -> list[dict[str, str]]:
    """Accuracy against severity, one panel per (task, arch, corruption)."""
    plt = pyplot()
    figures = []
    corrupted = metrics[metrics["condition"] != "clean"]
    for (task, arch, condition), group in corrupted.groupby(["task", "arch", "condition"]):
        clean = metrics[(metrics["condition"] == "clean") & (metrics["task"] == task)
                        & (metrics["arch"] == arch)]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for algo in algorithm_order(group["algorithm"]):
            g = pd.concat([clean[clean["algorithm"] == algo], group[group["algorithm"] == algo]])
            curve = g.groupby("severity")["value"].mean()
            ax.plot(curve.index, curve.values, marker="o", label=algo,
                    linewidth=2.5 if algo == FP32 else 1.5)
        ax.set_xlabel(f"{condition} severity (0 = clean)")
        ax.set_ylabel(group["metric"].iloc[0])
        ax.set_title(f"{task} / {arch}: {condition}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        figures.append({"title": f"{task} / {arch}: accuracy under {condition}", "src": png(fig)})
    return figures


def sensitivity_figure(grid: pd.DataFrame) -> list[dict[str, str]]:
    """Task metric per training setting and algorithm (paper Figure 2), mean and spread over
    seeds; one panel per (task, arch)."""
    plt = pyplot()
    figures = []
    for (task, arch), group in grid.groupby(["task", "arch"]):
        settings = list(dict.fromkeys(group.sort_values("setting")["setting"]))
        algorithms = algorithm_order(group["algorithm"])
        fig, ax = plt.subplots(figsize=(7, 3.8))
        width = 0.8 / max(1, len(algorithms))
        for i, algo in enumerate(algorithms):
            runs = group[group["algorithm"] == algo]
            stats = runs.groupby("setting")["value"].agg(["mean", "std"]).reindex(settings)
            xs = [j + (i - (len(algorithms) - 1) / 2) * width for j in range(len(settings))]
            ax.errorbar(xs, stats["mean"], yerr=stats["std"].fillna(0), fmt="o", ms=4,
                        capsize=2, label=algo)
        ax.set_xticks(range(len(settings)), settings, rotation=20, fontsize=8)
        ax.set_ylabel(group["metric"].iloc[0])
        ax.set_title(f"{task} / {arch}: sensitivity to training settings")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=3)
        figures.append({"title": f"{task} / {arch}: metric per training setting "
                                 "(mean and std over seeds)", "src": png(fig)})
    return figures


def render_report(metrics_path: str | Path, tracks_path: str | Path,
                  latency_path: str | Path, sensitivity: pd.DataFrame,
                  html_path: str | Path) -> None:
    from bibench.report.hardware import deployability, latency_tables, speedup_figures
    from bibench.report.summary_tables import ACCURACY_TRACKS, EFFICIENCY_TRACKS
    from bibench.report.summary_tables import summary_table as track_table

    metrics = read_table(metrics_path, "metrics")
    tracks = read_table(tracks_path, "tracks")
    latency = read_table(latency_path, "latency")
    table = summary_table(metrics)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        version=bibench.__version__,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        config_hash=metrics["config_hash"].iloc[0],
        embedded=table[table["embedded"]][["task", "stands_in_for"]].drop_duplicates()
        .to_dict("records"),
        rows=table.to_dict("records"),
        task_tables=task_tables(table),
        figures=corruption_figure(metrics),
        accuracy_table=track_table(tracks, ACCURACY_TRACKS),
        efficiency_table=track_table(tracks, EFFICIENCY_TRACKS),
        sensitivity_figures=sensitivity_figure(sensitivity),
        latency_tables=latency_tables(latency),
        deployability=deployability(latency),
        speedup_figures=speedup_figures(latency),
        failed=table[table["status"] != "ok"].to_dict("records"),
    )
    atomic_write(html_path, lambda tmp: Path(tmp).write_text(html))
