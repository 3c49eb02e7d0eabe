"""The paper's two summary tables (Table 2: accuracy tracks, Table 3: efficiency tracks) from
results/tracks.parquet, with the best and worst algorithm of each row marked where the
difference is significant (bibench.report.ranking)."""

from __future__ import annotations

import json
import math

import pandas as pd

from bibench.metrics.tracks import TRACK, TRACKS
from bibench.report.common import Stat, track_stat
from bibench.report.paper import spearman, track_row

ACCURACY_TRACKS = tuple(t.name for t in TRACKS if t.table == "accuracy")
EFFICIENCY_TRACKS = tuple(t.name for t in TRACKS if t.table == "efficiency")


def _paper_for(track: str, metric: str, stands_in: dict[str, str]) -> tuple[dict, str]:
    """The paper's Table 2-3 values for a tracks.parquet row, and where they come from."""
    if metric.startswith("relative:") and metric[len("relative:"):] in stands_in:
        paper = track_row(track, metric, stands_in_for=stands_in[metric[len("relative:"):]])
    else:
        paper = track_row(track, metric)
    if paper.empty:
        return {}, ""
    return (dict(zip(paper["algorithm"], paper["value"], strict=True)),
            f"{paper['table'].iloc[0]}, row {paper['row'].iloc[0]}")


def summary_table(tracks: pd.DataFrame, track_names: tuple[str, ...],
                  stands_in: dict[str, str] | None = None,
                  replicates: dict[tuple[str, str], dict] | None = None) -> dict:
    """Rows (track, metric) x columns (algorithms), each value as mean ± 95% CI over seeds,
    the paper's number beside it and the rank agreement of the row. Best and worst are marked
    only where the difference is significant (bibench.report.ranking; `replicates`: the
    accuracy tracks' bootstrap values), never on a value at chance or with an eval gap, nor on
    one that covers fewer cells than the others of its row."""
    from bibench.report.ranking import coverage, row_ranking, significant_marks

    algorithms = sorted(tracks["algorithm"].unique())
    rows = []
    for track in track_names:
        part = tracks[tracks["track"] == track]
        for metric in dict.fromkeys(part["metric"]):  # keep first-seen order
            cells = part[part["metric"] == metric].set_index("algorithm")
            stats = {a: track_stat(cells.loc[a]) if a in cells.index else Stat(math.nan)
                     for a in algorithms}
            chance = {a for a in algorithms
                      if a in cells.index and json.loads(cells["at_chance"].get(a) or "[]")}
            partial = coverage(cells)
            # a value built on cells at chance ranks noise; one over fewer cells compares
            # unlike with like: neither is marked best or worst
            top, bottom, how = row_ranking(track, stats,
                                           (replicates or {}).get((track, metric)),
                                           chance | set(partial),
                                           TRACK[track].higher_is_better)
            best, worst = significant_marks(top, bottom)
            paper, source = _paper_for(track, metric, stands_in or {})
            rho, n = spearman({a: s.mean for a, s in stats.items()}, paper)
            rows.append({
                "track": TRACK[track].title, "metric": metric, "source": source,
                "tested": how,
                "rho": f"{rho:+.2f} (n={n})" if rho == rho else ("n/a" if not paper
                                                                  else f"n/a (n={n})"),
                "cells": [{"text": stats[a].text(), "best": a in best, "worst": a in worst,
                           "paper": paper.get(a, math.nan),
                           "status": cells["status"].get(a, "not measured"),
                           "note": cells["note"].get(a, ""), "at_chance": a in chance,
                           "coverage": partial.get(a, "")}
                          for a in algorithms],
            })
    return {"algorithms": algorithms, "rows": rows}
