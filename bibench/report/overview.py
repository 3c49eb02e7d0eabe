"""The report's first screen: one figure of every algorithm across the six tracks (with the
paper's values beside ours) and findings computed from this run's tables, never written by
hand."""

from __future__ import annotations

import json
import math

import pandas as pd

from bibench.catalog import FP32
from bibench.latency.engines import binary_engines
from bibench.metrics.tracks import TRACK, TRACKS
from bibench.report.common import Stat, algorithm_order, png, pyplot, track_stat
from bibench.report.paper import track_row

OVERALL = {t.name: t.overall for t in TRACKS}


def overall_stats(tracks: pd.DataFrame) -> dict[str, dict[str, tuple[Stat, str]]]:
    """{track: {algorithm: (Stat of its overall metric, status)}}."""
    out: dict[str, dict[str, tuple[Stat, str]]] = {}
    for track, metric in OVERALL.items():
        part = tracks[(tracks["track"] == track) & (tracks["metric"] == metric)]
        out[track] = {r["algorithm"]: (track_stat(r), r["status"]) for _, r in part.iterrows()}
    return out


def _track_ranking(tracks: pd.DataFrame, track: str, replicates: dict | None
                   ) -> tuple[list[str], str, dict[str, str]]:
    """(tied for best, how it was tested, partial coverage) of a track's overall metric
    (bibench.report.ranking): FP32, values at chance or with an eval gap, and values over
    fewer cells than the others take no part."""
    from bibench.report.ranking import coverage, row_ranking

    rows = tracks[(tracks["track"] == track) & (tracks["metric"] == OVERALL[track])]
    rows = rows.set_index("algorithm")
    stats = {a: track_stat(r) for a, r in rows.iterrows() if a != FP32}
    chance = {a for a in rows.index if json.loads(rows["at_chance"].get(a) or "[]")}
    partial = coverage(rows)
    top, _, how = row_ranking(track, {a: s for a, s in stats.items() if s.mean == s.mean},
                              (replicates or {}).get((track, OVERALL[track])),
                              chance | set(partial), TRACK[track].higher_is_better)
    return top, how, partial


def track_verdict(tracks: pd.DataFrame, track: str, replicates: dict | None = None) -> str:
    """One track's overall metric as the report may state it: its significantly best
    algorithm, the algorithms tied for best, or that it is not ranked (and why)."""
    top, how, _ = _track_ranking(tracks, track, replicates)
    if len(top) == 1:
        return f"best: {top[0]} ({how})"
    if top:
        return f"tied: {', '.join(top)} ({how})"
    return "not ranked" + (f" ({how})" if how else "")


def overview_figure(tracks: pd.DataFrame, replicates: dict | None = None) -> dict[str, str]:
    """Six panels, one per track's overall metric: a bar per algorithm with its 95% interval,
    the paper's value as a diamond, the reason where a track has no value, and under each
    title what the data can say (`track_verdict`: a best only where it is significant)."""
    plt = pyplot()
    stats = overall_stats(tracks)
    algorithms = algorithm_order(tracks["algorithm"])
    fig, axes = plt.subplots(2, 3, figsize=(12, max(5.0, 1.5 + 0.8 * len(algorithms))),
                             squeeze=False)
    for ax, track in zip(axes.flat, OVERALL, strict=True):
        paper = track_row(track, OVERALL[track]).set_index("algorithm")["value"]
        for y, algo in enumerate(algorithms):
            stat, status = stats[track].get(algo, (Stat(math.nan), "not measured"))
            if stat.mean == stat.mean:
                err = stat.half if stat.half == stat.half else 0.0
                ax.barh(y, stat.mean, xerr=err, color="#4c78a8", capsize=3, height=0.6,
                        label="this run" if y == 0 else None)
            else:
                ax.text(0.02, y, status, va="center", fontsize=8, color="#a33",
                        transform=ax.get_yaxis_transform())
            if algo in paper.index and paper[algo] == paper[algo]:
                ax.plot(paper[algo], y, "D", color="#f58518", ms=6,
                        label="paper" if "paper" not in ax.get_legend_handles_labels()[1]
                        else None)
        ax.set_yticks(range(len(algorithms)), algorithms, fontsize=8)
        ax.set_xlim(left=0)
        ax.set_ylim(len(algorithms) - 0.5, -0.5)
        ax.set_title(f"{TRACK[track].title}: {OVERALL[track]}\n"
                     f"{track_verdict(tracks, track, replicates)}", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    handles = {lab: h for ax in axes.flat for h, lab in zip(*ax.get_legend_handles_labels(),
                                                            strict=True)}
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return {"title": "Overall metric of each track per algorithm (bars: this run, with 95% "
                     "intervals over seeds where there are two or more; diamonds: the paper's "
                     "Tables 2-3)", "src": png(fig)}


def best_per_track(tracks: pd.DataFrame, replicates: dict | None = None) -> list[str]:
    """Per track: its significantly best algorithm, or the algorithms tied for best (the data
    cannot tell them apart), with the paper's best beside (bibench.report.ranking)."""
    lines = []
    for track, by_algo in overall_stats(tracks).items():
        finite = {a: s for a, (s, _) in by_algo.items() if s.mean == s.mean}
        title = f"{TRACK[track].title} ({OVERALL[track]})"
        if not finite:
            reasons = sorted({st for _, st in by_algo.values()}) or ["no algorithm"]
            lines.append(f"{title}: no value ({'; '.join(reasons)}).")
            continue
        top, how, partial = _track_ranking(tracks, track, replicates)
        paper = track_row(track, OVERALL[track]).dropna(subset=["value"])
        paper_best = (f"; the paper's best: {paper.loc[paper['value'].idxmax(), 'algorithm']} "
                      f"{paper['value'].max():.2f}" if len(paper) else "")
        left_out = (f" ({', '.join(f'{a}: {c}' for a, c in sorted(partial.items()))} left out:"
                    " fewer cells than the others)" if partial else "")
        if len(top) == 1:
            lines.append(f"{title}: best is {top[0]} at {finite[top[0]].text()} ({how})"
                         f"{left_out}{paper_best}.")
        elif top:
            lines.append(f"{title}: no significant best ({how}); tied: "
                         f"{', '.join(f'{a} {finite[a].text()}' for a in top)}{left_out}"
                         f"{paper_best}.")
        else:
            lines.append(f"{title}: not ranked ({how or 'fewer than two comparable values'})"
                         f"{left_out}{paper_best}.")
    return lines


def deployment_findings(latency: pd.DataFrame) -> list[str]:
    """Which algorithms the binary engine ran, which it did not and why."""
    binary = latency[latency["engine"].isin(binary_engines()) & (latency["algorithm"] != FP32)]
    if binary.empty:
        return ["No binary engine in the config: no algorithm was deployed with 1-bit kernels."]
    lines, deployed = [], []
    for algo, runs in binary.groupby("algorithm", sort=True):
        # a contended timing (another job timed beside it) ran the binary kernels all the same
        failed = runs[(runs["status"] != "ok")
                      & ~runs["status"].astype(str).str.startswith("contended")]
        if failed.empty:
            deployed.append(algo)
        else:
            lines.append(f"{algo} does not deploy on {', '.join(sorted(set(runs['engine'])))} "
                         f"({len(failed)} of {len(runs)} rows): "
                         f"{'; '.join(sorted(set(failed['status'])))}.")
    if deployed:
        lines.insert(0, f"Deployed with 1-bit kernels on every measurement: "
                        f"{', '.join(deployed)}.")
    return lines


def largest_drops(stats: dict[tuple, Stat]) -> list[str]:
    """The largest clean-accuracy drop relative to FP32, and the largest drop under corruption."""
    lines = []
    clean = {k: s for k, s in stats.items() if k[3] == "clean" and k[5] == "relative_to_fp32"
             and k[2] != FP32 and s.mean == s.mean}
    if clean:
        task, arch, algo, *_ = worst = min(clean, key=lambda k: clean[k].mean)
        ours = stats.get((task, arch, algo, "clean", 0, "value"), Stat(math.nan))
        fp = stats.get((task, arch, FP32, "clean", 0, "value"), Stat(math.nan))
        what = ("Largest accuracy drop" if clean[worst].mean < 1 else
                "No binarized cell fell below FP32; the closest")
        lines.append(f"{what}: {algo} on {task}/{arch} keeps "
                     f"{clean[worst].text(100, 1)}% of FP32 ({fp.text(100)} -> "
                     f"{ours.text(100)}).")
    corrupted = {k: s for k, s in stats.items() if k[3] != "clean" and k[5] == "value"
                 and s.mean == s.mean}
    drops = {k: stats[(*k[:3], "clean", 0, "value")].mean - s.mean for k, s in corrupted.items()
             if (*k[:3], "clean", 0, "value") in stats}
    if drops:
        task, arch, algo, cond, sev, _ = worst = max(drops, key=drops.get)
        lines.append(f"Largest drop under corruption: {algo} on {task}/{arch} loses "
                     f"{100 * drops[worst]:.2f} points under {cond} at severity {sev}."
                     if drops[worst] > 0 else "No cell lost accuracy under corruption.")
    return lines


def separations(comparisons: pd.DataFrame | None,
                unranked: set[tuple[str, str, str]] = frozenset()) -> list[str]:
    """How many differences between algorithms of the same task and architecture are
    significant at 95% on the paired tests (results/comparisons.parquet), and which; pairs
    with a cell that is never ranked (`unranked`: failed, at chance, eval gap, unstable
    over seeds) are left out."""
    if comparisons is not None and len(comparisons) and unranked:
        keep = [(t, a, x) not in unranked and (t, a, y) not in unranked
                for t, a, x, y in comparisons[["task", "arch", "algorithm_a", "algorithm_b"]]
                .itertuples(index=False)]
        comparisons = comparisons[keep]
    if comparisons is None:
        return ["No paired test between algorithms (no comparisons table): no difference "
                "can be called significant."]
    if comparisons.empty:
        return ["No two comparable binarized algorithms of the same task and architecture "
                "have per-example predictions (fewer than two algorithms, cells failed, at "
                "chance, with an eval gap or unstable over seeds, or only detection tasks): "
                "no difference is called."]
    seeds = int(comparisons["seeds"].min())
    real = comparisons[comparisons["better"] != "tied"]
    lines = [f"Paired tests of the clean metric ({comparisons['method'].iloc[0]}): "
             f"{len(real)} of {len(comparisons)} differences between binarized algorithms of "
             f"the same task and architecture are significant at 95%; the others are tied"
             + (". One seed: a second seed may still reverse a significant difference"
                if seeds < 2 else "") + ("." if real.empty else ":")]
    ordered = real.assign(_gap=-real["difference"].abs()).sort_values(["task", "arch", "_gap"])
    for r in ordered.itertuples():
        worse = r.algorithm_b if r.better == r.algorithm_a else r.algorithm_a
        gap = abs(r.difference) * 100
        low, high = sorted(abs(v) * 100 for v in (r.ci95_low, r.ci95_high))
        lines.append(f"{r.task}/{r.arch}: {r.better} > {worse} by {gap:.2f} points "
                     f"[{low:.2f}, {high:.2f}]")
    return lines


def findings(tracks: pd.DataFrame, latency: pd.DataFrame, stats: dict[tuple, Stat],
             metrics: pd.DataFrame, comparisons: pd.DataFrame | None = None,
             replicates: dict | None = None) -> list[str]:
    """Every finding of the overview, in reading order."""
    failed = metrics[metrics["train_status"] != "ok"].drop_duplicates(
        ["task", "arch", "algorithm", "seed"])
    lines = (best_per_track(tracks, replicates) + deployment_findings(latency)
             + largest_drops(stats))
    from bibench.report.cells import unranked

    lines += separations(comparisons, unranked(metrics))
    if len(failed):
        lines.append(f"{len(failed)} cell(s) failed or diverged in training: " + ", ".join(
            f"{r.task}/{r.arch}/{r.algorithm}/seed{r.seed} ({r.train_status})"
            for r in failed.itertuples()) + ".")
    return lines
