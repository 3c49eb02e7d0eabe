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
from bibench.latency.engines import Engine, engine_version, get_engine
from bibench.latency.machine import cpu_model, isa_features
from bibench.latency.reference import reference_note, write_reference
from bibench.latency.remote import UnreachableError
from bibench.latency.timing import Timing, example_input, ort_session
from bibench.latency.windows import TimingWindow, describe

log = logging.getLogger(__name__)

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


def _time_remote(name: str, device: dict[str, Any], engine: Engine, paths: list[Path],
                 threads: int, settings: dict[str, Any]) -> list[Timing]:
    from bibench.latency.remote import run_remote

    if not engine.board_engine:
        raise ValueError(f"engine {engine.name!r} does not run on remote boards")
    return run_remote(remote_spec(name, device), paths, engine=engine.board_engine,
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


def _engine_version(engine: Engine, device: dict[str, Any]) -> str:
    if device["kind"] != "local":
        return "unknown (remote board)"
    return engine_version(engine.name)


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


def _reference_status(engine: Engine, device: dict[str, Any], arch: str, status: str,
                      reference: Path | None) -> str:
    """Whether a row times the hand-built reference beside the cell (an OpenVINO IR: binary
    engines that load such files), and if not, why."""
    if not engine.binary:
        return "not applicable: float engine"
    if device["kind"] != "local":
        return "not timed on remote devices"
    if reference is None:
        return reference_note(arch) or "no reference for this input shape"
    return "ok" if status == "ok" else "not timed: the cell was not timed"


def _time_row(name: str, device: dict[str, Any], engine: Engine, paths: list[Path],
              example: Any, threads: int, settings: dict[str, Any]
              ) -> tuple[list[Timing], int, str, bool]:
    """(timings of `paths` in one window, BinaryConvolution layers executed, row status,
    whether the device proved unreachable)."""
    try:
        if device["kind"] == "local":
            timings, executed = engine.time(paths, example, threads=threads,
                                            warmup=settings["warmup"],
                                            repeats=settings["repeats"])
        else:
            timings, executed = _time_remote(name, device, engine, paths, threads, settings), -1
    except UnreachableError as err:
        return [], -1, _unreachable(name, err), True
    except Exception as err:  # noqa: BLE001  a row with the reason
        return [], -1, f"failed: {type(err).__name__}: {err}"[:500], False
    if engine.binary and executed == 0:
        return timings, executed, ("failed: the compiled model runs no BinaryConvolution "
                                   "(float fallback)"), False
    return timings, executed, "ok", False


def contended_status(window: TimingWindow) -> str:
    """The status of a row timed while other bibench jobs timed on the same device."""
    others = "; ".join(describe(e) for e in window.overlaps)
    return (f"contended: another bibench job timed on the same device at the same time "
            f"({others}); re-time the cell")[:500]


def _stored_bytes(engine: Engine, model: Path, exports: pd.DataFrame) -> int:
    if not engine.binary:  # float weights: the file is the storage
        return model.stat().st_size
    # the binary form's packed weights, as the evaluate job measured them
    form = engine.form
    return int(exports.loc[form, "packed_bytes"]) if form in exports.index else 0


# long: one loop over devices x engines x thread counts, each row in its own timing window
def measure_cell(*, algorithm: str, forms: dict[str, str | Path], fp32_onnx: str | Path,
                 exports: pd.DataFrame, settings: dict[str, Any], max_threads: int,
                 arch: str = "", workdir: str | Path | None = None, label: str = ""
                 ) -> list[dict[str, Any]]:
    """Latency rows of one cell: every configured device x engine x thread count.

    `forms` maps each export form's name to the cell's file or folder of it; `exports` is
    the cell's export table indexed by form: it says which forms exist and whether they
    agreed with PyTorch or deploy at all. Binary-engine rows also time the architecture's
    hand-built reference (written under `workdir`) in the same window. `label` names the
    cell to other jobs' contended rows.
    """
    fp32_onnx = Path(fp32_onnx)
    example = example_input(forms["onnx"], settings["batch_size"])
    reference = None
    if workdir is not None and algorithm != FP32 and any(
            get_engine(e).binary for d in settings["devices"].values() for e in d["engines"]):
        reference = reference_model(arch, fp32_onnx, example, Path(workdir))
    rows = []
    for name, device in settings["devices"].items():
        cpu, isa, unreachable = _cpu(name, device)
        for engine in map(get_engine, device["engines"]):
            if engine.binary and algorithm == FP32:
                continue  # nothing binary to time: the FP32 model is the baseline itself
            model = engine.model_file(forms[engine.form])
            status = _form_status(exports, engine.form)
            ref_status = _reference_status(engine, device, arch, status, reference)
            paths = [model] if algorithm == FP32 else [model, fp32_onnx]
            if ref_status == "ok":
                paths.insert(1, reference)
            for threads in thread_counts(device, settings, max_threads):
                timings, executed, row_status = [], -1, status
                window = TimingWindow(window_device(device), f"{label} {name}/{engine.name}/"
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
                    stored=_stored_bytes(engine, model, exports),
                    fp32_bytes=fp32_onnx.stat().st_size,
                    device_name=name, device_kind=device["kind"], engine=engine.name,
                    cpu_model=cpu, cpu_isa=isa, engine_version=_engine_version(engine, device),
                    device=name, precision=engine.precision, threads=threads,
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
        for engine in map(get_engine, device["engines"]):
            if engine.binary and algorithm == FP32:
                continue  # as in measure_cell: the FP32 model has nothing binary to time
            ref_status = ("not timed: the cell was not timed" if engine.binary
                          else "not applicable: float engine")
            for threads in thread_counts(device, settings, max_threads):
                rows.append(_row(
                    [], status, ref_status, -1, settings, stored=0, fp32_bytes=0,
                    device_name=name, device_kind=device["kind"], engine=engine.name,
                    cpu_model=cpu, cpu_isa=isa, engine_version=_engine_version(engine, device),
                    device=name, precision=engine.precision, threads=threads,
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
