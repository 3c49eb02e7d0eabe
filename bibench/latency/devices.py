"""What the latency job times where: devices x engines x thread counts for one cell.

Each measurement times the cell's model and the FP32 model of the same architecture in one
go (interleaved where the engine runs here), so the speedup is a same-run ratio. A form that
did not export, or an algorithm that does not deploy on an engine, is a row with the reason
and no timing. No torch import: remote boards and the latency job do without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from bibench.catalog import FP32
from bibench.config import remote_spec
from bibench.latency.timing import Timing, cpu_model, example_input, time_onnxruntime

# The file each engine runs (a form of bibench.export.onnx) and its arithmetic.
ENGINE_FORMS = {"onnxruntime": "onnx", "openvino_fp32": "onnx",
                "openvino_binary": "openvino_binary"}
ENGINE_PRECISION = {"onnxruntime": "fp32", "openvino_fp32": "fp32", "openvino_binary": "binary"}
# The engine name bibench.latency.board takes on a remote device.
CLI_ENGINES = {"onnxruntime": "onnxruntime", "openvino_fp32": "openvino",
               "openvino_binary": "openvino"}

_NAN = float("nan")


def available_cores() -> int:
    """Cores this process may run on (affinity, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def thread_counts(device: dict[str, Any], settings: dict[str, Any], max_threads: int
                  ) -> list[int]:
    """The device's thread counts; on the local CPU, those it can actually give."""
    counts = sorted(device.get("threads") or settings["threads"])
    if device["kind"] == "local":
        limit = min(max_threads, available_cores())
        counts = [t for t in counts if t <= limit] or [1]
    return counts


def _time_local(engine: str, paths: list[Path], example: Any, threads: int,
                settings: dict[str, Any]) -> tuple[list[Timing], int]:
    kwargs = {"threads": threads, "warmup": settings["warmup"], "repeats": settings["repeats"]}
    if engine == "onnxruntime":
        return time_onnxruntime(paths, example, **kwargs), -1
    from bibench.latency.timing import count_binary_convolutions, openvino_compile, time_compiled

    compiled = [openvino_compile(p, threads, batch=len(example)) for p in paths]
    executed = count_binary_convolutions(compiled[0]) if engine == "openvino_binary" else -1
    timings = time_compiled(compiled, example, warmup=settings["warmup"],
                            repeats=settings["repeats"])
    return timings, executed


def _time_remote(name: str, device: dict[str, Any], engine: str, paths: list[Path],
                 threads: int, settings: dict[str, Any]) -> list[Timing]:
    from bibench.latency.remote import run_remote

    return run_remote(remote_spec(name, device), paths, engine=CLI_ENGINES[engine],
                      threads=threads,
                      warmup=settings["warmup"], repeats=settings["repeats"],
                      batch_size=settings["batch_size"])


def _remote_cpu(name: str, device: dict[str, Any]) -> str:
    from bibench.latency.remote import remote_cpu_model

    try:
        return remote_cpu_model(remote_spec(name, device))
    except Exception as err:  # noqa: BLE001  the timing rows will carry the failure
        return f"unknown ({type(err).__name__})"


def _form_status(exports: pd.DataFrame, form: str) -> str:
    if form not in exports.index:
        return f"failed: no {form} export"
    return str(exports.loc[form, "status"])


def measure_cell(*, algorithm: str, onnx: str | Path, openvino_dir: str | Path,
                 fp32_onnx: str | Path, exports: pd.DataFrame, settings: dict[str, Any],
                 max_threads: int) -> list[dict[str, Any]]:
    """Latency rows of one cell: every configured device x engine x thread count.

    `exports` is the cell's export table indexed by form: it says which forms exist and
    whether they agreed with PyTorch or deploy at all.
    """
    onnx, fp32_onnx = Path(onnx), Path(fp32_onnx)
    # the IR holds explicit BinaryConvolution with 1-bit weights: the file to deploy and time
    files = {"onnx": onnx, "openvino_binary": Path(openvino_dir) / "model.xml"}
    fp32_bytes = fp32_onnx.stat().st_size
    example = example_input(onnx, settings["batch_size"])
    rows = []
    for name, device in settings["devices"].items():
        cpu = cpu_model() if device["kind"] == "local" else _remote_cpu(name, device)
        for engine in device["engines"]:
            if engine == "openvino_binary" and algorithm == FP32:
                continue  # nothing binary to time: the FP32 model is the baseline itself
            form = ENGINE_FORMS[engine]
            status = _form_status(exports, form)
            if form == "onnx":  # float weights: the file is the storage
                stored = onnx.stat().st_size
            else:  # the engine's own file, as the export job measured it
                stored = int(exports.loc[form, "packed_bytes"]) if form in exports.index else 0
            paths = [files[form]] if algorithm == FP32 else [files[form], fp32_onnx]
            for threads in thread_counts(device, settings, max_threads):
                own, fp32, executed, row_status = _time_engine(
                    name, device, engine, paths, example, threads, settings, status)
                rows.append({
                    "device_name": name, "device_kind": device["kind"], "engine": engine,
                    "status": row_status,
                    "cpu_model": cpu,
                    "batch_size": settings["batch_size"], "warmup": settings["warmup"],
                    "repeats": own.repeats, "median_ms": own.median_ms, "p10_ms": own.p10_ms,
                    "p90_ms": own.p90_ms, "fp32_median_ms": fp32.median_ms,
                    "fp32_p10_ms": fp32.p10_ms, "fp32_p90_ms": fp32.p90_ms,
                    "speedup_vs_fp32": fp32.median_ms / own.median_ms
                    if row_status == "ok" and own.median_ms > 0 else _NAN,
                    "n_binary_conv": executed, "model_bytes": stored, "fp32_bytes": fp32_bytes,
                    "storage_saving": fp32_bytes / stored if stored > 0 else _NAN,
                    "device": name, "precision": ENGINE_PRECISION[engine], "threads": threads,
                })
    return rows


def _time_engine(name: str, device: dict[str, Any], engine: str, paths: list[Path],
                 example: Any, threads: int, settings: dict[str, Any], status: str
                 ) -> tuple[Timing, Timing, int, str]:
    """(the model's timing, the FP32 model's, BinaryConvolution count, row status) of one
    device x engine x thread count; a form that is not ok, or a failed run, is a row with
    its reason and NaN timings."""
    own = fp32 = Timing(_NAN, _NAN, _NAN, 0)
    executed = -1
    if status != "ok":
        return own, fp32, executed, status
    try:
        if device["kind"] == "local":
            timings, executed = _time_local(engine, paths, example, threads, settings)
        else:
            timings = _time_remote(name, device, engine, paths, threads, settings)
        own, fp32 = timings[0], timings[-1]
    except Exception as err:  # noqa: BLE001  a row with the reason
        status = f"failed: {type(err).__name__}: {err}"[:500]
    if engine == "openvino_binary" and executed == 0:
        status = "failed: the compiled model runs no BinaryConvolution (float fallback)"
    return own, fp32, executed, status
