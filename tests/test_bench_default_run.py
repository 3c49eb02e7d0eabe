"""bench/default_run.py reads a finished run's Snakemake log and benchmarks/ (issue 18): the
arithmetic of workflow time, job time per rule and task, and the training share."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _job(run: Path, rel: str, seconds: float, cpu: float, startup: list[float] = ()) -> None:
    path = run / "benchmarks" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:00\t1\t1\t1\t1\t0\t0\t0\t{cpu}\n")
    log = run / "logs" / Path(rel).with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"2026-01-01 00:00:00,000 INFO bibench: start-up: {s:.3f} s before "
                           f"step {i}\n" for i, s in enumerate(startup)))


def _run(tmp_path: Path, log_text: str) -> subprocess.CompletedProcess:
    logs = tmp_path / ".snakemake" / "log"
    logs.mkdir(parents=True)
    (logs / "2026-01-01T000000.000000.snakemake.log").write_text(log_text)
    _job(tmp_path, "pretrain/mnist/resnet20/seed0.tsv", 30.0, 25.0, [1.0, 2.5])
    _job(tmp_path, "binarize_finetune/mnist/resnet20/bnn/seed0.tsv", 50.0, 40.0, [1.0, 3.0])
    _job(tmp_path, "evaluate/mnist/resnet20/bnn/seed0.tsv", 12.0, 10.0, [2.0])
    _job(tmp_path, "evaluate/text/minilm_l6/bnn/seed1.tsv", 8.0, 6.0)
    _job(tmp_path, "aggregate.tsv", 5.0, 5.0, [0.5])
    return subprocess.run([sys.executable, str(REPO / "bench" / "default_run.py"), "--run",
                           str(tmp_path), "--json"], capture_output=True, text=True, timeout=60)


def test_default_run_sums_rules_and_tasks_and_the_training_share(tmp_path):
    proc = _run(tmp_path, "...\n5 of 5 steps (100%) done\nElapsed time: 0:01:05.5\n")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["workflow_seconds"] == 65.5 and result["jobs"] == 5
    assert result["job_seconds"] == 105.0 and result["job_cpu_seconds"] == 86.0
    assert result["training_share"] == pytest.approx(80 / 105, abs=1e-3)
    assert result["rules"]["evaluate"] == {"jobs": 2, "wall_s": 20.0, "cpu_s": 16.0,
                                           "startup_s": 2.0}
    # the last start-up line of each job's log; a job whose log has none is counted apart
    assert result["startup_seconds"] == 8.0 and result["startup_jobs_logged"] == 4
    assert result["startup_share"] == pytest.approx(8 / 105, abs=1e-3)
    assert result["seeds"] == {"seed0": 62.0, "seed1": 8.0, "shared": 35.0}
    assert result["tasks"]["mnist"] == {
        "wall_s": 92.0, "binarize_finetune": 50.0, "evaluate": 12.0, "pretrain": 30.0}
    assert result["tasks"]["text"] == {
        "wall_s": 8.0, "binarize_finetune": 0.0, "evaluate": 8.0, "pretrain": 0.0}
    assert "aggregate" in result["rules"] and "" not in result["tasks"]


def test_default_run_refuses_an_unfinished_run(tmp_path):
    proc = _run(tmp_path, "...\n3 of 5 steps (60%) done\n")
    assert proc.returncode != 0 and "no complete Snakemake log" in proc.stderr
