"""What the latency job times where: devices x engines x thread counts for one cell.

Each measurement times the cell's model and the FP32 model of the same architecture in one
go (interleaved where the engine runs here), so the speedup is a same-run ratio. A form that
did not export, or an algorithm that does not deploy on an engine, is a row with the reason
and no timing. No torch import: remote boards and the latency job do without it.

Each row times inside a registered window (bibench.latency.windows) and records the load
average at its start and end; a row during which another bibench job timed on the same device
is `contended: ...`, its numbers kept but left out of every result until it is re-timed. A
remote board that ssh cannot reach is tried once per job: its remaining rows say why at once.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

import pandas as pd

from bibench.catalog import FP32
from bibench.config import remote_spec
from bibench.latency.machine import cpu_model, isa_features
from bibench.latency.reference import reference_note, write_reference
from bibench.latency.remote import UnreachableError
from bibench.latency.timing import (
    Timing,
    engine_version,
    example_input,
    ort_session,
    time_onnxruntime,
)
from bibench.latency.windows import TimingWindow, describe

log = logging.getLogger(__name__)

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


def _cpu(name: str, device: dict[str, Any]) -> tuple[str, str, str]:
    """(CPU model, ISA features the binary kernels depend on, why the device is unreachable:
    '' where it answered) of a device."""
    if device["kind"] == "local":
        return cpu_model(), isa_features(), ""
    from bibench.latency.remote import remote_cpu_info

    try:
        return (*remote_cpu_info(remote_spec(name, device)), "")
    except UnreachableError as err:
        return "unknown (unreachable)", "unknown", _unreachable(name, err)
    except Exception as err:  # noqa: BLE001  the timing rows will carry the failure
        return f"unknown ({type(err).__name__})", "unknown", ""


def _unreachable(name: str, err: UnreachableError) -> str:
    """The status of every row of a device ssh cannot reach (the full error goes to the log,
    once: the job tries the device no more)."""
    log.warning("%s\n%s: unreachable; its remaining rows are not tried in this job", err, name)
    return (f"failed: unreachable: {err.reason} (remote device {name!r}; ssh failed once, "
            f"not tried again in this job)")[:500]


def window_device(device: dict[str, Any]) -> str:
    """What a timing window contends for: this machine (by name: a registry on a shared
    filesystem serves several), or the remote board's address."""
    if device["kind"] == "local":
        return f"local:{socket.gethostname()}"
    return f"ssh:{device['host']}:{device.get('port') or 22}"


def _engine_version(engine: str, device: dict[str, Any]) -> str:
    if device["kind"] != "local":
        return "unknown (remote board)"
    return engine_version(engine)


def reference_model(arch: str, fp32_onnx: Path, example: Any, workdir: Path) -> Path | None:
    """The hand-built reference IR of the architecture (bibench.latency.reference) shaped as the
    cell's input and output, or None where no reference exists for it."""
    if reference_note(arch) or example.ndim != 4:
        return None
    classes = ort_session(fp32_onnx).get_outputs()[0].shape[-1]
    return write_reference(workdir / "reference.xml", arch, tuple(example.shape[1:]),
                           int(classes))


def _form_status(exports: pd.DataFrame, form: str) -> str:
    if form not in exports.index:
        return f"failed: no {form} export"
    return str(exports.loc[form, "status"])


def _reference_status(engine: str, device: dict[str, Any], arch: str, status: str,
                      reference: Path | None) -> str:
    """Whether a row times the hand-built reference beside the cell, and if not, why."""
    if engine != "openvino_binary":
        return "not applicable: float engine"
    if device["kind"] != "local":
        return "not timed on remote devices"
    if reference is None:
        return reference_note(arch) or "no reference for this input shape"
    return "ok" if status == "ok" else "not timed: the cell was not timed"


def _time_row(name: str, device: dict[str, Any], engine: str, paths: list[Path], example: Any,
              threads: int, settings: dict[str, Any]) -> tuple[list[Timing], int, str, bool]:
    """(timings of `paths` in one window, BinaryConvolution layers executed, row status,
    whether the device proved unreachable)."""
    try:
        if device["kind"] == "local":
            timings, executed = _time_local(engine, paths, example, threads, settings)
        else:
            timings, executed = _time_remote(name, device, engine, paths, threads, settings), -1
    except UnreachableError as err:
        return [], -1, _unreachable(name, err), True
    except Exception as err:  # noqa: BLE001  a row with the reason
        return [], -1, f"failed: {type(err).__name__}: {err}"[:500], False
    if engine == "openvino_binary" and executed == 0:
        return timings, executed, ("failed: the compiled model runs no BinaryConvolution "
                                   "(float fallback)"), False
    return timings, executed, "ok", False


def contended_status(window: TimingWindow) -> str:
    """The status of a row timed while other bibench jobs timed on the same device."""
    others = "; ".join(describe(e) for e in window.overlaps)
    return (f"contended: another bibench job timed on the same device at the same time "
            f"({others}); re-time the cell")[:500]


def _stored_bytes(form: str, model: Path, exports: pd.DataFrame) -> int:
    if form == "onnx":  # float weights: the file is the storage
        return model.stat().st_size
    # the engine's own file, as the evaluate job measured it
    return int(exports.loc[form, "packed_bytes"]) if form in exports.index else 0


def measure_cell(*, algorithm: str, onnx: str | Path, openvino_dir: str | Path,
                 fp32_onnx: str | Path, exports: pd.DataFrame, settings: dict[str, Any],
                 max_threads: int, arch: str = "", workdir: str | Path | None = None,
                 label: str = "") -> list[dict[str, Any]]:
    """Latency rows of one cell: every configured device x engine x thread count.

    `exports` is the cell's export table indexed by form: it says which forms exist and
    whether they agreed with PyTorch or deploy at all. Binary-engine rows also time the
    architecture's hand-built reference (written under `workdir`) in the same window.
    `label` names the cell to other jobs' contended rows.
    """
    onnx, fp32_onnx = Path(onnx), Path(fp32_onnx)
    # the IR holds explicit BinaryConvolution with 1-bit weights: the file to deploy and time
    files = {"onnx": onnx, "openvino_binary": Path(openvino_dir) / "model.xml"}
    example = example_input(onnx, settings["batch_size"])
    reference = None
    if workdir is not None and algorithm != FP32 and any(
            "openvino_binary" in d["engines"] for d in settings["devices"].values()):
        reference = reference_model(arch, fp32_onnx, example, Path(workdir))
    rows = []
    for name, device in settings["devices"].items():
        cpu, isa, unreachable = _cpu(name, device)
        for engine in device["engines"]:
            if engine == "openvino_binary" and algorithm == FP32:
                continue  # nothing binary to time: the FP32 model is the baseline itself
            form = ENGINE_FORMS[engine]
            status = _form_status(exports, form)
            ref_status = _reference_status(engine, device, arch, status, reference)
            paths = [files[form]] if algorithm == FP32 else [files[form], fp32_onnx]
            if ref_status == "ok":
                paths.insert(1, reference)
            for threads in thread_counts(device, settings, max_threads):
                timings, executed, row_status = [], -1, status
                window = TimingWindow(window_device(device), f"{label} {name}/{engine}/"
                                                             f"{threads}t".strip())
                if status == "ok" and unreachable:
                    row_status = unreachable  # the board failed once: no 10 s wait per row
                elif status == "ok":
                    with window:
                        timings, executed, row_status, dead = _time_row(
                            name, device, engine, paths, example, threads, settings)
                    if dead:
                        unreachable = row_status
                row = _row(
                    timings, row_status, ref_status, executed, settings,
                    stored=_stored_bytes(form, files[form], exports),
                    fp32_bytes=fp32_onnx.stat().st_size,
                    device_name=name, device_kind=device["kind"], engine=engine,
                    cpu_model=cpu, cpu_isa=isa, engine_version=_engine_version(engine, device),
                    device=name, precision=ENGINE_PRECISION[engine], threads=threads,
                    # the board's own load is not read: this machine's would mislead
                    load_avg_start=window.load_start if device["kind"] == "local" else _NAN,
                    load_avg_end=window.load_end if device["kind"] == "local" else _NAN,
                    # None: not timed, or the registry could not be used
                    concurrent_timing=bool(window.overlaps) if window.checked else None)
                if row["status"] == "ok" and window.overlaps:
                    row["status"] = contended_status(window)
                    if row["reference_status"] == "ok":
                        row["reference_status"] = row["status"]
                rows.append(row)
    return rows


def _row(timings: list[Timing], status: str, ref_status: str, executed: int,
         settings: dict[str, Any], *, stored: int, fp32_bytes: int, **facts: Any
         ) -> dict[str, Any]:
    """One latency row: the cell's timing, the FP32 model's (last) and the reference's."""
    missing = Timing(_NAN, _NAN, _NAN, 0)
    ok = status == "ok" and len(timings) > 0
    own = timings[0] if ok else missing
    fp32 = timings[-1] if ok else missing
    ref = timings[1] if ok and ref_status == "ok" else missing
    if ref_status == "ok" and not ok:
        ref_status = f"not timed: {status}"
    return {
        **facts, "status": status,
        "batch_size": settings["batch_size"], "warmup": settings["warmup"],
        "repeats": own.repeats, "median_ms": own.median_ms, "p10_ms": own.p10_ms,
        "p90_ms": own.p90_ms, "fp32_median_ms": fp32.median_ms,
        "fp32_p10_ms": fp32.p10_ms, "fp32_p90_ms": fp32.p90_ms,
        "speedup_vs_fp32": fp32.median_ms / own.median_ms
        if ok and own.median_ms > 0 else _NAN,
        "reference_status": ref_status, "reference_median_ms": ref.median_ms,
        "reference_speedup_vs_fp32": fp32.median_ms / ref.median_ms
        if ref.median_ms > 0 else _NAN,
        "n_binary_conv": executed, "model_bytes": stored, "fp32_bytes": fp32_bytes,
        "storage_saving": fp32_bytes / stored if stored > 0 else _NAN,
    }


def untimed_rows(*, algorithm: str, settings: dict[str, Any], max_threads: int, status: str
                 ) -> list[dict[str, Any]]:
    """Latency rows of a cell that is not timed at all (its training did not finish, so the
    evaluate job exported nothing): each configured device x engine x thread count with
    `status` and no timing. No file is read and no remote device is contacted."""
    rows = []
    for name, device in settings["devices"].items():
        local = device["kind"] == "local"
        cpu, isa = (cpu_model(), isa_features()) if local else ("unknown (not timed)", "unknown")
        for engine in device["engines"]:
            if engine == "openvino_binary" and algorithm == FP32:
                continue  # as in measure_cell: the FP32 model has nothing binary to time
            ref_status = ("not timed: the cell was not timed" if engine == "openvino_binary"
                          else "not applicable: float engine")
            for threads in thread_counts(device, settings, max_threads):
                rows.append(_row(
                    [], status, ref_status, -1, settings, stored=0, fp32_bytes=0,
                    device_name=name, device_kind=device["kind"], engine=engine,
                    cpu_model=cpu, cpu_isa=isa, engine_version=_engine_version(engine, device),
                    device=name, precision=ENGINE_PRECISION[engine], threads=threads,
                    load_avg_start=_NAN, load_avg_end=_NAN, concurrent_timing=None))
    return rows


def log_timings(rows: list[dict[str, Any]], table: str) -> None:
    """Each timed row in the job's log, and the command that re-times contended ones."""
    for r in rows:
        log.info("%s %s %d threads: %s; %.3f ms vs fp32 %.3f ms (x%.2f)", r["device_name"],
                 r["engine"], r["threads"], r["status"], r["median_ms"], r["fp32_median_ms"],
                 r["speedup_vs_fp32"])
    contended = sum(str(r["status"]).startswith("contended") for r in rows)
    if contended:
        log.warning("%d row(s) timed while another bibench job timed on the same device: kept "
                    "out of the results until re-timed with: snakemake --cores all --forcerun "
                    "%s", contended, table)
