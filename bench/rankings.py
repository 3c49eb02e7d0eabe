"""What a finished run's comparisons say, per task: each algorithm's clean metric (mean, 95%
interval over seeds, range over seeds), which pairwise differences are significant, which
algorithms are tied for best, and the rank agreement with the paper with its interval.

Reads the results of a finished run in the current folder (or --results DIR), e.g. the default
config's (three paired seeds):

    snakemake --cores 2 results/report.html
    python bench/rankings.py --json

Per task it also counts the binarized training runs (cells x seeds) whose loss had not levelled
off (`not converged`, bibench.metrics.quality.convergence).

The same numbers as the report (bibench.report.ranking), as JSON for bench/measurements.py.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any


# long: one pass over the (task, arch) groups builds every figure of the result
def rankings(results: Path) -> dict[str, Any]:
    from bibench.catalog import FP32
    from bibench.io import read_table
    from bibench.metrics.comparisons import beats
    from bibench.metrics.quality import NOT_CONVERGED
    from bibench.metrics.seeds import mean_ci
    from bibench.report.cells import cell_marks, unranked
    from bibench.report.paper import cell_row
    from bibench.report.ranking import (
        best_and_worst,
        rank_agreement,
        ranking_text,
        replicates,
    )

    metrics = read_table(results / "metrics.parquet", "metrics")
    pairs = read_table(results / "comparisons.parquet", "comparisons")
    reps = replicates(read_table(results / "bootstrap.parquet", "bootstrap"))
    marks = cell_marks(metrics)
    excluded = unranked(metrics)
    clean = metrics[metrics["condition"] == "clean"]
    seeds = int(clean["seed"].nunique())
    out: dict[str, Any] = {"seeds": seeds, "summary": {}}
    for (task, arch), part in clean.groupby(["task", "arch"], sort=True):
        name = f"{task}/{arch}"
        per_algo: dict[str, dict[str, Any]] = {}
        for algo, rows in part.groupby("algorithm", sort=True):
            mean, low, high, n = mean_ci(list(rows["value"]))
            values = [v for v in rows["value"] if v == v]
            per_algo[algo] = {
                "mean": round(100 * mean, 2) if mean == mean else None,
                "ci95": (f"[{100 * low:.2f}, {100 * high:.2f}]" if low == low else "n/a"),
                "seed_range": round(100 * (max(values) - min(values)), 2) if values else None,
                "per_seed": " / ".join(f"{100 * v:.1f}" for v in rows.sort_values("seed")["value"]),
                "mark": marks.get((task, arch, algo), ""),
            }
        out[name] = per_algo
        ranked = {a: v["mean"] for a, v in per_algo.items()
                  if a != FP32 and (task, arch, a) not in excluded and v["mean"] is not None}
        top, bottom = best_and_worst(ranked, beats(pairs, task, arch))
        mine = pairs[(pairs["task"] == task) & (pairs["arch"] == arch)]
        significant = mine[mine["better"] != "tied"]
        paper = cell_row(part["stands_in_for"].iloc[0], arch)
        paper_values = dict(zip(paper["algorithm"], paper["value"], strict=True))
        runs = part[part["algorithm"] != FP32]
        binarized = [v["seed_range"] for a, v in per_algo.items()
                     if a != FP32 and v["seed_range"] is not None]
        out["summary"][name] = {
            "ranking": ranking_text(top, bottom, len(ranked), seeds),
            "significant_pairs": f"{len(significant)} of {len(mine)}",
            "significant": "; ".join(
                f"{r.better} > {r.algorithm_b if r.better == r.algorithm_a else r.algorithm_a}"
                for r in significant.itertuples()) or "none",
            "rank_agreement_with_paper": rank_agreement(
                {a: (v["mean"] if v["mean"] is not None else math.nan)
                 for a, v in per_algo.items()}, reps.get((task, arch)), paper_values),
            "largest_seed_range_binarized": max(binarized) if binarized else None,
            "binarized_runs_not_levelled_off": (
                f"{int((runs['convergence'] == NOT_CONVERGED).sum())} of {len(runs)}"
                if "convergence" in part.columns else "n/a"),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--json", action="store_true", help="print JSON (for measurements.py)")
    args = parser.parse_args(argv)
    result = rankings(args.results)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for name, row in result["summary"].items():
            print(f"{name}: {row['ranking']}; significant {row['significant_pairs']}; "
                  f"rank agreement {row['rank_agreement_with_paper']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
