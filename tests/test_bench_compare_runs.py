"""bench/compare_runs.py: two runs' Parquet tables are equal when only timing differs, and any
other difference (a value, a row, a column, a missing table) is reported."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from conftest import REPO


def _write(folder, name: str, rows: list[dict]) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def _run(old, new, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bench" / "compare_runs.py"), str(old),
                           str(new), *options], capture_output=True, text=True, timeout=120)


def _results(root, *, value=0.5, median_ms=1.0, speedup=2.0, ov_bytes=100, extra=False,
             code="c1"):
    train = [{"task": "digits", "epoch": 1, "loss": value, "epoch_seconds": median_ms,
              "code_fingerprint": code}]
    if extra:
        train.append({"task": "digits", "epoch": 2, "loss": value, "epoch_seconds": 1.0,
                      "code_fingerprint": code})
    _write(root, "cells/digits/train.parquet", train)
    _write(root, "cells/digits/export.parquet", [
        {"form": "onnx", "file_bytes": 90}, {"form": "openvino_binary", "file_bytes": ov_bytes}])
    _write(root, "tracks.parquet", [
        {"metric": "OM_task", "value": 1.0}, {"metric": "speedup", "value": speedup}])
    return root


def test_timing_and_run_dependent_cells_aside_the_runs_are_equal(tmp_path):
    old = _results(tmp_path / "old")
    new = _results(tmp_path / "new", median_ms=7.0, speedup=3.0, ov_bytes=125)
    proc = _run(old, new)
    assert proc.returncode == 0, proc.stdout
    assert "3 tables compared, 0 differences" in proc.stdout


def test_a_changed_value_is_reported(tmp_path):
    proc = _run(_results(tmp_path / "old"), _results(tmp_path / "new", value=0.25))
    assert proc.returncode == 1
    assert "loss: 0.25 != 0.5" in proc.stdout and "1 differences" in proc.stdout


def test_moved_code_changes_only_fingerprints_which_ignore_code_leaves_out(tmp_path):
    old = _results(tmp_path / "old")
    proc = _run(old, _results(tmp_path / "new", code="c2"))
    assert proc.returncode == 1 and "code_fingerprint: 'c2' != 'c1'" in proc.stdout
    proc = _run(old, _results(tmp_path / "new", code="c2"), "--ignore-code")
    assert proc.returncode == 0 and "0 differences" in proc.stdout, proc.stdout
    proc = _run(old, _results(tmp_path / "changed", code="c2", value=0.25), "--ignore-code")
    assert proc.returncode == 1 and "loss: 0.25 != 0.5" in proc.stdout


def test_extra_rows_and_missing_tables_are_reported(tmp_path):
    old = _results(tmp_path / "old")
    new = _results(tmp_path / "new", extra=True)
    (new / "tracks.parquet").unlink()
    proc = _run(old, new)
    assert proc.returncode == 1
    assert "2 rows != 1" in proc.stdout
    assert "only in" in proc.stdout and "tracks.parquet" in proc.stdout


def test_a_changed_schema_is_reported(tmp_path):
    old = _results(tmp_path / "old")
    new = _results(tmp_path / "new")
    _write(new, "tracks.parquet", [{"metric": "OM_task", "value": 1}])
    proc = _run(old, new)
    assert proc.returncode == 1 and "schema" in proc.stdout
