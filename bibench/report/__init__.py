"""The HTML report: jinja2 template, matplotlib figures embedded as base64 PNG (one file)."""

from __future__ import annotations

import base64
import datetime as dt
import io
from pathlib import Path

import jinja2
import pandas as pd

import bibench
from bibench.catalog import FP32
from bibench.io import atomic_write, read_table

TEMPLATES = Path(__file__).parent / "templates"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _algorithm_order(algorithms) -> list[str]:
    rest = sorted(a for a in set(algorithms) if a != FP32)
    return ([FP32] if FP32 in set(algorithms) else []) + rest


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
        seeds=("seed", "nunique"),
    )
    if not corrupted.empty:
        corr = corrupted.groupby(keys, as_index=False)["value"].mean()
        table = table.merge(corr.rename(columns={"value": "corrupted"}), on=keys, how="left")
    else:
        table["corrupted"] = float("nan")
    order = {a: i for i, a in enumerate(_algorithm_order(table["algorithm"]))}
    return table.sort_values(["task", "arch", "algorithm"], key=lambda s: s.map(order)
                             if s.name == "algorithm" else s).reset_index(drop=True)


def corruption_figure(metrics: pd.DataFrame) -> list[dict[str, str]]:
    """Accuracy against severity, one panel per (task, arch, corruption)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    corrupted = metrics[metrics["condition"] != "clean"]
    for (task, arch, condition), group in corrupted.groupby(["task", "arch", "condition"]):
        clean = metrics[(metrics["condition"] == "clean") & (metrics["task"] == task)
                        & (metrics["arch"] == arch)]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for algo in _algorithm_order(group["algorithm"]):
            g = pd.concat([clean[clean["algorithm"] == algo], group[group["algorithm"] == algo]])
            curve = g.groupby("severity")["value"].mean()
            ax.plot(curve.index, curve.values, marker="o", label=algo,
                    linewidth=2.5 if algo == FP32 else 1.5)
        ax.set_xlabel(f"{condition} severity (0 = clean)")
        ax.set_ylabel(group["metric"].iloc[0])
        ax.set_title(f"{task} / {arch}: {condition}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        figures.append({"title": f"{task} / {arch}: accuracy under {condition}", "src": _png(fig)})
        plt.close(fig)
    return figures


def render_report(metrics_path: str | Path, html_path: str | Path) -> None:
    metrics = read_table(metrics_path, "metrics")
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
        figures=corruption_figure(metrics),
        failed=table[table["status"] != "ok"].to_dict("records"),
    )
    atomic_write(html_path, lambda tmp: Path(tmp).write_text(html))
