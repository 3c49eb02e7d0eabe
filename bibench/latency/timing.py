"""On-device latency: warm-up, repeated timed runs, median and p10/p90, with onnxruntime and
OpenVINO's CPU plugin.

The FP32 model and the binarized one are timed in the same job, alternating in blocks of runs,
so the speedup is a same-run ratio that machine noise affects equally. This module imports
neither torch nor any other bibench module: bibench.latency.remote ships it to boards that have
only an engine.
Each engine is imported when first used.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnxruntime as ort

_DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(double)": np.float64}


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int


def ort_session(path: str | Path | bytes, *, threads: int = 1, optimize: bool = True
                ) -> ort.InferenceSession:
    """A one-threaded-by-default CPU session of a file (or a serialized model)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def summarize_ns(samples_ns: list[int]) -> Timing:
    """Median and p10/p90 of per-run times in nanoseconds."""
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


# Timed runs alternate between the models in blocks of BLOCK runs, each block after SETTLE
# untimed runs. Run-by-run alternation would let a large FP32 model flush the caches before
# every run of the small binary one (-20% for binary ResNet-18 here). After 3 FP32 runs the
# binary ResNet-18 IR took 1.62, 1.38, 1.22, then 1.18 ms steadily: three untimed runs refill
# its caches. Blocks keep each model warm, as when it is deployed alone, while machine noise
# still falls on every model alike across the whole window.
BLOCK = 20
SETTLE = 3


def time_interleaved(runs: list[Callable[[], Any]], *, warmup: int, repeats: int,
                     block: int = BLOCK, settle: int = SETTLE) -> list[Timing]:
    """Time each callable `repeats` times, alternating between them in blocks of `block`
    timed runs, each block preceded by `settle` untimed runs (the model's caches refilled)."""
    if repeats < 1 or block < 1 or settle < 0:
        raise ValueError("repeats and block must be at least 1, settle at least 0")
    for run in runs:
        for _ in range(warmup):
            run()
    samples: list[list[int]] = [[] for _ in runs]
    while len(samples[0]) < repeats:
        n = min(block, repeats - len(samples[0]))
        for run, times in zip(runs, samples, strict=True):
            for _ in range(settle):
                run()
            for _ in range(n):
                start = time.perf_counter_ns()
                run()
                times.append(time.perf_counter_ns() - start)
    return [summarize_ns(s) for s in samples]


def time_onnxruntime(paths: list[str | Path], example: np.ndarray, *, threads: int, warmup: int,
                     repeats: int) -> list[Timing]:
    """Time each model on `example` with onnxruntime, the models alternating in blocks."""
    sessions = [ort_session(p, threads=threads) for p in paths]
    runs = [partial(s.run, None, {s.get_inputs()[0].name: example}) for s in sessions]
    return time_interleaved(runs, warmup=warmup, repeats=repeats)


# ---------------------------------------------------------------------------------------------
# OpenVINO
# ---------------------------------------------------------------------------------------------

_OV_DTYPES = {"f32": np.float32, "f64": np.float64, "i64": np.int64, "i32": np.int32}


def _block_telemetry() -> None:
    """Keep OpenVINO's telemetry off in this process: no network on benchmark machines."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # import fails -> a no-op stub
        return
    telemetry = getattr(sys.modules.get("openvino_telemetry"), "Telemetry", None)
    session = getattr(telemetry, "_SingletonMetaClass__single_instance", None)
    if session is not None:
        session.consent = False


def openvino_module() -> Any:
    """The openvino module, imported with telemetry off."""
    _block_telemetry()
    import openvino

    _block_telemetry()
    return openvino


_CORE: list[Any] = []


def openvino_core() -> Any:
    if not _CORE:
        _CORE.append(openvino_module().Core())
    return _CORE[0]


def openvino_compile(path: str | Path, threads: int, *, batch: int = 1) -> Any:
    """Compile an ONNX or IR (.xml) file for the CPU: f32 precision hint (some CPUs otherwise
    run bf16: no honest FP32 baseline, no sign-exact binary net), latency mode, one stream,
    `threads` inference threads. A dynamic batch dim is fixed to `batch`: the CPU plugin's
    BinaryConvolution has no dynamic-shape kernel."""
    if threads < 1:
        raise ValueError("threads must be at least 1")
    config = {
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(threads),
    }
    core = openvino_core()
    model = core.read_model(str(path))
    shapes = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        if shape.rank.is_static and shape[0].is_dynamic:
            shape[0] = batch
            shapes[port] = shape
    if shapes:
        model.reshape(shapes)
    return core.compile_model(model, "CPU", config)


def runtime_layers(compiled: Any) -> list[dict[str, str]]:
    """The executable graph the CPU plugin built: layer type, kernel, precision, origin."""
    keys = ("layerType", "primitiveType", "runtimePrecision", "originalLayersNames")
    layers = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layers.append({k: info[k].astype(str) for k in keys if k in info})
    return layers


def count_binary_convolutions(compiled: Any) -> int:
    """BinaryConvolution layers in the compiled model's runtime graph: binary kernels that
    really run, not what the file asked for."""
    return sum(layer.get("layerType") == "BinaryConvolution" for layer in runtime_layers(compiled))


def openvino_example(path: str | Path, batch_size: int, seed: int = 0) -> np.ndarray:
    """An input for the model as OpenVINO reads it, drawn as example_input draws it (the
    binary-engine form has ops onnxruntime cannot load)."""
    port = openvino_core().read_model(str(path)).inputs[0]
    dims = list(port.get_partial_shape())
    shape = [batch_size] + [d.get_length() if d.is_static else 1 for d in dims[1:]]
    dtype = _OV_DTYPES.get(port.get_element_type().get_type_name())
    if dtype is None:
        raise ValueError(f"{path}: unsupported input type {port.get_element_type()}")
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(1000, 2000, size=shape, dtype=np.int64).astype(dtype)
    return rng.random(shape, dtype=np.float64).astype(dtype)


def time_compiled(compiled: list[Any], example: np.ndarray, *, warmup: int, repeats: int
                  ) -> list[Timing]:
    """Time compiled OpenVINO models on `example`, the models alternating in blocks."""
    tensor = openvino_module().Tensor(np.ascontiguousarray(example))
    requests = []
    for model in compiled:
        request = model.create_infer_request()
        # set once: infer(feed) converts the array on every call (3x the time of a tiny net)
        request.set_input_tensor(tensor)
        requests.append(request)
    return time_interleaved([r.infer for r in requests], warmup=warmup, repeats=repeats)


def time_openvino(paths: list[str | Path], example: np.ndarray, *, threads: int, warmup: int,
                  repeats: int) -> list[Timing]:
    """Compile each model (f32 hint, `threads` threads) and time them, alternating in blocks."""
    compiled = [openvino_compile(p, threads, batch=len(example)) for p in paths]
    return time_compiled(compiled, example, warmup=warmup, repeats=repeats)


# The built-in engines' timers (bibench.latency.engines): (timings of `paths` in one window,
# BinaryConvolution layers the compiled model executed, -1 where not counted).

def time_onnxruntime_engine(paths: list[str | Path], example: np.ndarray, *, threads: int,
                            warmup: int, repeats: int) -> tuple[list[Timing], int]:
    return time_onnxruntime(paths, example, threads=threads, warmup=warmup,
                            repeats=repeats), -1


def time_openvino_engine(paths: list[str | Path], example: np.ndarray, *, threads: int,
                         warmup: int, repeats: int) -> tuple[list[Timing], int]:
    return time_openvino(paths, example, threads=threads, warmup=warmup, repeats=repeats), -1


def time_openvino_binary_engine(paths: list[str | Path], example: np.ndarray, *,
                                threads: int, warmup: int, repeats: int
                                ) -> tuple[list[Timing], int]:
    """As time_openvino, and how many BinaryConvolution layers the cell's compiled model runs
    (0: the engine fell back to float)."""
    compiled = [openvino_compile(p, threads, batch=len(example)) for p in paths]
    return (time_compiled(compiled, example, warmup=warmup, repeats=repeats),
            count_binary_convolutions(compiled[0]))
