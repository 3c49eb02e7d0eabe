"""The paper's numbers beside ours: bibench/report/paper_results.yaml read into one long table,
matched to our tasks through their `stands_in_for`, and the rank agreement of the two orders."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import pandas as pd
import yaml

from bibench.catalog import FP32

PAPER_FILE = Path(__file__).parent / "paper_results.yaml"
COLUMNS = ["table", "row", "track", "metric", "dataset", "arch", "algorithm", "value"]


@cache
def _spec() -> dict:
    return yaml.safe_load(PAPER_FILE.read_text())


@cache
def paper_table() -> pd.DataFrame:
    """Every transcribed number: (table, row, track, metric, dataset, arch, algorithm, value)."""
    spec = _spec()
    rows = []
    for table, body in spec["tables"].items():
        algorithms = ([FP32] if body["with_fp32"] else []) + spec["algorithms"]
        for row in body["rows"]:
            if len(row["values"]) != len(algorithms):
                raise ValueError(f"{PAPER_FILE.name}: {table} row {row['row']!r} has "
                                 f"{len(row['values'])} values, expected {len(algorithms)}")
            for algo, value in zip(algorithms, row["values"], strict=True):
                rows.append({"table": table, "row": row["row"], "track": row.get("track", ""),
                             "metric": row.get("metric", ""), "dataset": row.get("dataset", ""),
                             "arch": row.get("arch", ""), "algorithm": algo,
                             "value": math.nan if value is None else float(value)})
    return pd.DataFrame(rows, columns=COLUMNS)


def dataset_key(stands_in_for: str) -> str:
    """The paper's data set a task stands for, as the file names it."""
    return _spec()["dataset_aliases"].get(stands_in_for, stands_in_for)


def cell_row(stands_in_for: str, arch: str) -> pd.DataFrame:
    """The Table 7-9 row of the data set and architecture a (task, arch) stands for: one row
    per algorithm (FP32 included), empty when the paper has none."""
    table = paper_table()
    arch = _spec()["arch_aliases"].get(arch, arch)
    return table[(table["dataset"] == dataset_key(stands_in_for)) & (table["arch"] == arch)
                 & table["table"].isin(["Table 7", "Table 8", "Table 9"])]


def track_row(track: str, metric: str, stands_in_for: str | None = None) -> pd.DataFrame:
    """The Table 2-3 row of a tracks.parquet (track, metric); a `relative:<task>` row is
    matched through the task's stand-in (every GLUE task to the paper's GLUE row)."""
    table = paper_table()
    mine = table[table["table"].isin(["Table 2", "Table 3"]) & (table["track"] == track)]
    if stands_in_for is not None:
        key = dataset_key(stands_in_for)
        key = "GLUE" if key.startswith("GLUE") else key
        return mine[mine["dataset"] == key]
    return mine[mine["metric"] == metric]


def spearman(ours: dict[str, float], paper: dict[str, float]) -> tuple[float, int]:
    """(Spearman's rho, n) between our and the paper's values over the binarization algorithms
    both have (FP32 left out: it tops both orders and would inflate the agreement); NaN below
    three algorithms, where a rank correlation says nothing."""
    common = sorted(a for a in ours if a != FP32 and a in paper
                    and ours[a] == ours[a] and paper[a] == paper[a])
    if len(common) < 3:
        return math.nan, len(common)
    from scipy.stats import spearmanr

    rho = spearmanr([ours[a] for a in common], [paper[a] for a in common]).statistic
    return float(rho), len(common)
