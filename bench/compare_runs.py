"""Compare the Parquet tables of two runs of the workflow, timing aside.

A refactoring must not change results: run the same config before and after (e.g. the tiny grid
of tests/configs/tiny.yaml in two copies of the workflow), then

    python bench/compare_runs.py OLD/results NEW/results

Every Parquet file under either folder must exist in both, with the same schema and rows;
columns that hold wall-clock time (and the ratios and track values computed from it) are left
out, and so are the few cells that differ between two runs of the same code (RUN_DEPENDENT, with
the reason). Exit status 1 and one line per difference otherwise.

A refactoring that moves code between files changes every job's code fingerprint by design (it
hashes the files a job's results depend on): `--ignore-code` leaves the `code_fingerprint`
column out too, so that what remains is whether any result changed.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pyarrow.parquet as pq

# Columns measured with a clock: they differ between any two runs.
TIMING_COLUMNS = frozenset({
    "epoch_seconds", "train_seconds", "train_wall_seconds", "train_seconds_per_epoch",
    "median_ms", "p10_ms", "p90_ms", "fp32_median_ms", "fp32_p10_ms", "fp32_p90_ms",
    "speedup_vs_fp32", "latency_median_ms", "latency_speedup_vs_fp32",
    "reference_median_ms", "reference_speedup_vs_fp32",
    # the machine's load average around each latency row's timing
    "load_avg_start", "load_avg_end",
})
# Rows of a table whose values derive from timing: (table file name, column, values).
TIMING_ROWS = {
    "tracks.parquet": ("metric", frozenset({"time_ratio", "OM_train", "speedup", "OM_infer"})),
    "summary.parquet": ("quantity", TIMING_COLUMNS),
}
# Cells that differ between two runs of the same code: the ONNX file of the OpenVINO form
# shares equal constants through Identity nodes, and which copy is kept varies from process to
# process (same graph, same weights; its size moved by up to 100 bytes in three exports of one
# checkpoint). (table file name, column): (key column, key values).
RUN_DEPENDENT = {("export.parquet", "file_bytes"): ("form", frozenset({"openvino_binary"}))}


CODE_COLUMNS = frozenset({"code_fingerprint"})


def _rows(path: Path, ignored: frozenset[str] = TIMING_COLUMNS
          ) -> tuple[list[str], list[dict]]:
    table = pq.read_table(path)
    columns = [c for c in table.column_names if c not in ignored]
    rows = table.select(columns).to_pylist()
    if path.name in TIMING_ROWS:
        column, values = TIMING_ROWS[path.name]
        rows = [r for r in rows if r[column] not in values]
    for (name, column), (key, values) in RUN_DEPENDENT.items():
        if path.name == name:
            rows = [{**r, column: None} if r[key] in values else r for r in rows]
    return [f"{f.name}: {f.type}" for f in table.schema if f.name in columns], rows


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare_tables(old: Path, new: Path, ignore_code: bool = False) -> list[str]:
    """The differences between two Parquet files, timing columns and rows aside (and the
    code fingerprints, with `ignore_code`)."""
    ignored = TIMING_COLUMNS | (CODE_COLUMNS if ignore_code else frozenset())
    (old_schema, old_rows), (new_schema, new_rows) = _rows(old, ignored), _rows(new, ignored)
    if old_schema != new_schema:
        return [f"{new}: schema {new_schema} != {old_schema}"]
    if len(old_rows) != len(new_rows):
        return [f"{new}: {len(new_rows)} rows != {len(old_rows)}"]
    diffs = []
    for a, b in zip(old_rows, new_rows, strict=True):
        key = "/".join(str(v) for v in a.values() if isinstance(v, str))[:80]
        for column in a:
            if not _same(a[column], b[column]):
                diffs.append(f"{new}: row {key}: {column}: {b[column]!r} != {a[column]!r}")
    return diffs


def compare_runs(old: Path, new: Path, ignore_code: bool = False) -> tuple[int, list[str]]:
    """(number of tables compared, differences) between two results folders."""
    old_files = {p.relative_to(old) for p in old.rglob("*.parquet")}
    new_files = {p.relative_to(new) for p in new.rglob("*.parquet")}
    diffs = [f"only in {old}: {p}" for p in sorted(old_files - new_files)]
    diffs += [f"only in {new}: {p}" for p in sorted(new_files - old_files)]
    for rel in sorted(old_files & new_files):
        diffs += compare_tables(old / rel, new / rel, ignore_code)
    return len(old_files & new_files), diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="results folder of the reference run")
    parser.add_argument("new", type=Path, help="results folder of the run to check")
    parser.add_argument("--ignore-code", action="store_true",
                        help="leave out code fingerprints (a refactoring changes them)")
    args = parser.parse_args(argv)
    n, diffs = compare_runs(args.old, args.new, args.ignore_code)
    for line in diffs:
        print(line)
    aside = "timing columns and code fingerprints" if args.ignore_code else "timing columns"
    print(f"{n} tables compared, {len(diffs)} differences ({aside} aside)")
    return 1 if diffs or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
