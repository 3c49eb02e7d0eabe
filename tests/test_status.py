"""`bibench status` on hand-made tables: what the latency job's rows add to a cell's state."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa

from bibench.config import config_hash
from bibench.io import SCHEMAS, write_table
from bibench.status import CONTENDED, FAILED, UP_TO_DATE, Job, _status

CELL = {"task": "img", "arch": "resnet20", "algorithm": "bnn", "seed": 0}
DEAD = ("failed: unreachable: ssh: connect to host 10.0.0.5 port 22: Connection refused "
        "(remote device 'pi5'; ssh failed once, not tried again in this job)")
CONTENDED_ROW = ("contended: another bibench job timed on the same device at the same time "
                 "(pid 42 timing img/resnet20/bnn/seed1 here/onnxruntime/1t); re-time the cell")


def _blank(field: pa.Field):
    if pa.types.is_string(field.type):
        return ""
    if pa.types.is_integer(field.type):
        return 0
    if pa.types.is_floating(field.type):
        return math.nan
    return False


def _write(path: Path, table: str, settings: dict, rows: list[dict]) -> None:
    """Rows of `table` whose settings hash and code fingerprint are current."""
    blank = {f.name: _blank(f) for f in SCHEMAS[table]}
    write_table([{**blank, **CELL, "cell_config_hash": config_hash(settings),
                  "code_fingerprint": "code", **row} for row in rows], path, table)


def _jobs(tmp_path: Path, latency: list[tuple[str, str, int, str]]) -> list[Job]:
    train, timing = {"settings": {"epochs": 1}}, {"settings": {"repeats": 50}}
    _write(tmp_path / "train.parquet", "train", train, [{"status": "ok", "epoch": 1}])
    _write(tmp_path / "latency.parquet", "latency", timing,
           [{"device_name": d, "engine": e, "threads": t, "status": s} for d, e, t, s in latency])
    return [Job("binarize_finetune", {"train": train}, "code",
                {"train": tmp_path / "train.parquet"}),
            Job("latency", {"latency": timing}, "code",
                {"latency": tmp_path / "latency.parquet"})]


def test_status_lists_a_remote_boards_failure_and_contended_rows(tmp_path):
    jobs = _jobs(tmp_path, [("here", "onnxruntime", 1, "ok"),
                            ("here", "onnxruntime", 2, CONTENDED_ROW),
                            ("pi5", "onnxruntime", 1, DEAD), ("pi5", "onnxruntime", 4, DEAD)])
    status = _status("img/resnet20/bnn/seed0", jobs, set())
    assert status.state == FAILED
    assert status.why == [
        f"latency on pi5/onnxruntime 1, 4 threads: {DEAD}",
        "contended latency on here/onnxruntime 2 threads (another bibench job timed on the same "
        "device at the same time; kept out of the results): re-time with snakemake --cores all "
        f"--forcerun {tmp_path / 'latency.parquet'}"]


def test_a_cell_whose_only_problem_is_a_contended_timing_is_contended(tmp_path):
    jobs = _jobs(tmp_path, [("here", "onnxruntime", 1, CONTENDED_ROW),
                            ("here", "openvino_binary", 1, "not deployable: no engine op")])
    status = _status("img/resnet20/bnn/seed0", jobs, set())
    assert status.state == CONTENDED
    assert status.why[0].startswith("contended latency on here/onnxruntime 1 threads")
    clean = _jobs(tmp_path, [("here", "onnxruntime", 1, "ok")])
    assert _status("img/resnet20/bnn/seed0", clean, set()).state == UP_TO_DATE
