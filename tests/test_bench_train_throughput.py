"""bench/train_throughput.py: both loops train the same task's data with its finetune settings,
and the JSON's samples per second and gap follow from the epochs it timed. Speeds themselves
are the benchmark's business, never asserted here."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest
from conftest import REPO

TINY = REPO / "tests" / "configs" / "tiny.yaml"


def test_train_throughput_times_both_loops_on_each_task():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "train_throughput.py"),
                           "--configfile", str(TINY), "--tasks", "digits", "--repeats", "2",
                           "--json"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    (row,) = result["tasks"]
    assert (row["task"], row["arch"], row["algorithm"]) == ("digits", "resnet20", "bnn")
    # the task's data (max_train 256) and finetune batch size, not the bench's own
    assert (row["samples"], row["batch_size"]) == (256, 64)
    for loop in ("bibench", "plain"):
        epochs = row["epoch_seconds"][loop]
        assert len(epochs) == 2 and min(epochs) > 0
        assert row[f"{loop}_samples_per_s"] == pytest.approx(
            256 / statistics.median(epochs), rel=1e-2)
    assert row["gap"] == pytest.approx(
        row["plain_samples_per_s"] / row["bibench_samples_per_s"] - 1, abs=2e-3)
    assert result["max_gap"] == row["gap"]
