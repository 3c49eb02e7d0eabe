"""The HTML report: jinja2 template, matplotlib figures embedded as base64 PNG (one file)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jinja2
import pandas as pd

import bibench
from bibench.io import atomic_write, read_table
from bibench.metrics.seeds import mean_ci
from bibench.report.common import algorithm_order, png, pyplot, seeds_note, stats_index

TEMPLATES = Path(__file__).parent / "templates"


def sensitivity_figure(grid: pd.DataFrame) -> list[dict[str, str]]:
    """Task metric per training setting and algorithm (paper Figure 2), mean over seeds with
    its 95% interval (none with one seed); one panel per (task, arch)."""
    plt = pyplot()
    figures = []
    for (task, arch), group in grid.groupby(["task", "arch"]):
        settings = list(dict.fromkeys(group.sort_values("setting")["setting"]))
        algorithms = algorithm_order(group["algorithm"])
        fig, ax = plt.subplots(figsize=(7, 3.8))
        width = 0.8 / max(1, len(algorithms))
        for i, algo in enumerate(algorithms):
            runs = group[group["algorithm"] == algo]
            stats = [mean_ci(runs[runs["setting"] == s]["value"]) for s in settings]
            xs = [j + (i - (len(algorithms) - 1) / 2) * width for j in range(len(settings))]
            ax.errorbar(xs, [m for m, *_ in stats],
                        yerr=[0.0 if h != h else h - m for m, _, h, _ in stats], fmt="o", ms=4,
                        capsize=2, label=algo)
        ax.set_xticks(range(len(settings)), settings, rotation=20, fontsize=8)
        ax.set_ylabel(group["metric"].iloc[0])
        ax.set_title(f"{task} / {arch}: sensitivity to training settings")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=3)
        figures.append({"title": f"{task} / {arch}: metric per training setting "
                                 "(mean over seeds, 95% interval)", "src": png(fig)})
    return figures


def render_report(metrics_path: str | Path, tracks_path: str | Path,
                  latency_path: str | Path, sensitivity: pd.DataFrame,
                  html_path: str | Path, *, summary_path: str | Path | None = None,
                  train: pd.DataFrame | None = None,
                  comparisons_path: str | Path | None = None,
                  bootstrap_path: str | Path | None = None) -> None:
    """results/report.html: overview first (figure and computed findings), then the paper's
    summary tables, the per-task tables beside the paper, figures, hardware, every cell.
    Without the paired tests (`comparisons_path`, `bootstrap_path`) no difference between
    algorithms is called significant."""
    from bibench.metrics.seeds import seed_summary

    metrics = read_table(metrics_path, "metrics")
    tracks = read_table(tracks_path, "tracks")
    latency = read_table(latency_path, "latency")
    summary = (read_table(summary_path, "summary") if summary_path is not None
               else seed_summary(metrics))
    comparisons = (read_table(comparisons_path, "comparisons") if comparisons_path is not None
                   else None)
    bootstrap = read_table(bootstrap_path, "bootstrap") if bootstrap_path is not None else None
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        **_context(metrics, tracks, latency, summary, sensitivity, train, comparisons,
                   bootstrap))
    atomic_write(html_path, lambda tmp: Path(tmp).write_text(html))


def _context(metrics: pd.DataFrame, tracks: pd.DataFrame, latency: pd.DataFrame,
             summary: pd.DataFrame, sensitivity: pd.DataFrame, train: pd.DataFrame | None,
             comparisons: pd.DataFrame | None = None, bootstrap: pd.DataFrame | None = None
             ) -> dict:
    """Everything the template shows, computed from the tables."""
    from bibench.report import cells, hardware, overview
    from bibench.report.ranking import replicates, track_replicates
    from bibench.report.summary_tables import ACCURACY_TRACKS, EFFICIENCY_TRACKS
    from bibench.report.summary_tables import summary_table as track_table

    stats = stats_index(summary)
    reps = replicates(bootstrap) if bootstrap is not None else {}
    family = dict(zip(metrics["arch"], metrics["family"], strict=True))
    track_reps = track_replicates(reps, family)
    n_seeds = int(metrics["seed"].nunique())
    stands_in = dict(zip(metrics["task"], metrics["stands_in_for"], strict=True))
    embedded = metrics[metrics["embedded"]][["task", "stands_in_for"]].drop_duplicates()
    return {
        "version": bibench.__version__,
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "config_hash": metrics["config_hash"].iloc[0],
        "seeds_note": seeds_note(n_seeds), "n_seeds": n_seeds,
        "embedded": embedded.to_dict("records"),
        "overview_figure": overview.overview_figure(tracks, track_reps),
        "findings": overview.findings(tracks, latency, stats, metrics, comparisons,
                                      track_reps),
        "accuracy_table": track_table(tracks, ACCURACY_TRACKS, stands_in, track_reps),
        "efficiency_table": track_table(tracks, EFFICIENCY_TRACKS, stands_in, track_reps),
        "task_tables": cells.task_tables(metrics, stats, comparisons, reps),
        "training_figures": cells.training_figures(train) if train is not None
        and len(train) else [],
        "corruption_figures": cells.corruption_figures(metrics, stats),
        "sensitivity_figures": sensitivity_figure(sensitivity),
        "latency_tables": hardware.latency_tables(latency),
        # a task that deploys has latency rows, failed ones included (the latency job's)
        "undeployed_tasks": sorted(set(metrics["task"]) - set(latency["task"])),
        "reference_tables": hardware.reference_tables(latency),
        "deployability": hardware.deployability(latency),
        "speedup_figures": hardware.speedup_figures(latency),
        "cell_groups": cells.cell_groups(metrics, stats),
        "shown_columns": cells.shown_columns(),
    }
