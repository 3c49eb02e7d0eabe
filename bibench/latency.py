"""On-device latency: warm-up, repeated timed runs, median and p10/p90.

The FP32 model and the binarized one are timed in the same job, alternating run by run, so the
speedup is a same-run ratio that machine noise affects equally.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bibench.export import ort_session


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _summary(samples_ns: list[int]) -> Timing:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return Timing(
        median_ms=float(np.median(ms)), p10_ms=float(np.percentile(ms, 10)),
        p90_ms=float(np.percentile(ms, 90)), repeats=len(ms),
    )


def time_onnxruntime(paths: list[str | Path], example: np.ndarray, *, threads: int, warmup: int,
                     repeats: int) -> list[Timing]:
    """Time each model on `example`, interleaving the models run by run."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    sessions = [ort_session(p, threads=threads) for p in paths]
    feeds = [{s.get_inputs()[0].name: example} for s in sessions]
    for s, feed in zip(sessions, feeds, strict=True):
        for _ in range(warmup):
            s.run(None, feed)
    samples: list[list[int]] = [[] for _ in sessions]
    for _ in range(repeats):
        for i, (s, feed) in enumerate(zip(sessions, feeds, strict=True)):
            start = time.perf_counter_ns()
            s.run(None, feed)
            samples[i].append(time.perf_counter_ns() - start)
    return [_summary(s) for s in samples]
