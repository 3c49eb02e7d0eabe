"""The latency protocol (bibench.latency.timing) on ONNX Runtime."""

from __future__ import annotations

import pytest

from bibench.export.onnx import export_onnx
from bibench.latency.machine import cpu_model
from bibench.latency.timing import time_onnxruntime


def test_latency_protocol(tmp_path, trained_fp32, digits):
    path = tmp_path / "m.onnx"
    export_onnx(trained_fp32[0], digits.x_test[:1], path)
    timings = time_onnxruntime([path, path], digits.x_test[:1].numpy(), threads=1, warmup=2,
                               repeats=7)
    assert len(timings) == 2
    for t in timings:
        assert t.repeats == 7 and 0 < t.p10_ms <= t.median_ms <= t.p90_ms
    assert cpu_model()
    with pytest.raises(ValueError):
        time_onnxruntime([path], digits.x_test[:1].numpy(), threads=1, warmup=0, repeats=0)
