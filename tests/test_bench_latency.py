"""bench/latency.py prints what the deployment issue asks for: one JSON object keyed by
algorithm (the speed itself is the benchmark's business, never asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bench" / "latency.py"), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("policy, binary_convs", [
    ((), 16),  # the architecture's policy: every 3x3 conv binary, 1x1 shortcuts float
    (("--keep-fp", ""), 19),  # the paper's Table 3 policy: the 3 shortcuts binary too
])
def test_json_has_a_row_per_algorithm_and_the_reference(policy, binary_convs):
    proc = _bench("--algorithms", "bnn", "xnor", "--reference", "--warmup", "2",
                  "--repeats", "50", "--json", *policy)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert set(results) == {"bnn", "xnor", "reference-opset"}
    for key in ("bnn", "reference-opset"):
        row = results[key]
        assert set(row) == {"engine", "threads", "fp32_ms", "binary_ms", "speedup",
                            "n_binary_conv"}
        assert row["engine"] == "openvino-cpu" and row["threads"] == 1
        assert row["n_binary_conv"] == binary_convs
        assert row["speedup"] == round(row["fp32_ms"] / row["binary_ms"], 2)
    assert results["bnn"]["fp32_ms"] == results["reference-opset"]["fp32_ms"]  # one window
    assert results["xnor"]["deployable"] is False
    assert "activation re-scaling" in results["xnor"]["reason"]


def test_bad_arguments_stop_before_any_work():
    proc = _bench("--algorithms", "bnn", "nosuch", "--json")
    assert proc.returncode == 2 and "unknown algorithm(s) nosuch" in proc.stderr
    proc = _bench("--repeats", "10")
    assert proc.returncode == 2 and "at least 50" in proc.stderr
