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
import onnxruntime as ort

_DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(double)": np.float64}


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int


def ort_session(path: str | Path, *, threads: int = 1, optimize: bool = True
                ) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


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


def example_input(path: str | Path, batch_size: int, seed: int = 0) -> np.ndarray:
    """A batch shaped and typed as the model's input: uniform [0, 1) floats (images, features,
    points), or token ids 1000..1999 (no padding) for int64 inputs. Latency does not depend on
    the values, so no data set needs loading."""
    spec = ort_session(path).get_inputs()[0]
    shape = [batch_size] + [d if isinstance(d, int) else 1 for d in spec.shape[1:]]
    rng = np.random.default_rng(seed)
    dtype = _DTYPES.get(spec.type)
    if dtype is None:
        raise ValueError(f"{path}: unsupported input type {spec.type}")
    if dtype == np.int64:
        return rng.integers(1000, 2000, size=shape, dtype=np.int64)
    return rng.random(shape, dtype=np.float64).astype(dtype)


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
