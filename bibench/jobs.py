"""What each workflow rule does, as plain functions of paths and settings.

The Snakemake scripts only call `run_from_snakemake(snakemake, <job>)`; everything here is
usable and testable without Snakemake. Each job reads its inputs, computes, and writes its
outputs atomically, so a failure leaves no file that looks complete.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bibench
from bibench.catalog import FP32
from bibench.io import DamagedFileError, DiskFullError, write_table
from bibench.provenance import provenance

if TYPE_CHECKING:
    from bibench.data import TaskData

# torch and the modules that need it are imported inside the jobs that use them: the latency,
# aggregate, report and download jobs start without paying for it.

log = logging.getLogger("bibench")


# ---------------------------------------------------------------------------------------------
# Plumbing shared by every job
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def job_logging(log_path: str | Path | None) -> Iterator[None]:
    """Send the job's log records (and uncaught errors) to its Snakemake log file."""
    handler: logging.Handler
    if log_path is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    except (DamagedFileError, DiskFullError) as err:  # the message says what to do
        log.error("%s", err)
        raise
    except BaseException:
        log.exception("job failed")
        raise
    finally:
        root.removeHandler(handler)
        handler.close()


# The log line that names the package files a job imported (see loaded_sources).
CODE_LOADED = "bibench code loaded:"
# The log line of a job's start-up: from its process's start to its first measured step
# (bench/default_run.py sums the last one of each job's log per rule).
STARTUP = "start-up:"


def _process_start() -> float | None:
    """When this process started (seconds since the epoch); None where it cannot be told."""
    try:
        import psutil  # a dependency of Snakemake, which starts every job
    except ImportError:
        return None
    return psutil.Process().create_time()


def work_begins(what: str) -> None:
    """Log the job's start-up so far: interpreter, Snakemake's script wrapper, imports, data
    loading and model building, everything before `what`. A job costs its start-up once per
    cell, so the workflow's share of it decides whether jobs should be fewer or leaner."""
    started = _process_start()
    if started is not None:
        log.info("%s %.3f s before %s", STARTUP, time.time() - started, what)


def run_from_snakemake(smk: Any, job: Callable[..., None]) -> None:
    """Call `job` with the rule's named params, inputs and outputs, threads and log."""
    kwargs: dict[str, Any] = {}
    for group in (smk.params, smk.input, smk.output):
        kwargs.update({k: v for k, v in group.items()})
    accepted = inspect.signature(job).parameters
    if "threads" in accepted:
        kwargs["threads"] = smk.threads
    try:
        with job_logging(smk.log[0] if smk.log else None):
            work_begins(f"{job.__name__} (the jobs that load data or models say when they have)")
            job(**{k: v for k, v in kwargs.items() if k in accepted})
            log.info("%s %s", CODE_LOADED, " ".join(loaded_sources()))
    except (DamagedFileError, DiskFullError) as err:  # one message that says what to do
        if not smk.log:  # else it is in the log, which Snakemake shows (show-failed-logs)
            print(f"bibench: {err}", file=sys.stderr)
        sys.exit(1)


def loaded_sources() -> list[str]:
    """The package's source files this process has imported, relative to the package.

    Logged at the end of every job so that a test can hold the cache's code map
    (`bibench.cache`) to what the jobs really ran: a module a job imports but its map leaves
    out would let an edit to it go unnoticed by the cache.
    """
    package = Path(bibench.__file__).resolve().parent
    files = set()
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and (name == "bibench" or name.startswith("bibench.")):
            files.add(Path(path).resolve().relative_to(package).as_posix())
    return sorted(files)


def _load_task(dataset: dict[str, Any]) -> TaskData:
    from bibench.data import load_task

    return load_task(dataset)


def _cell(task: str, arch: str, algorithm: str, seed: int) -> dict[str, Any]:
    return {"task": task, "arch": arch, "algorithm": algorithm, "seed": int(seed)}


# ---------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------


def _train_job(*, stage: str, task: str, arch: str, algorithm: str, seed: int,
               dataset: dict[str, Any], settings: dict[str, Any], device: str,
               determinism: str, threads: int, model: str, table: str,
               pretrained: str | None, code: str) -> None:
    from bibench.training.checkpoint import (
        build_cell_model,
        check_cell,
        load_checkpoint,
        save_checkpoint,
    )
    from bibench.training.loop import (
        train_or_fail,
        training_precision,
        training_setup,
        untrained_record,
    )

    dev, data = training_setup(lambda: _load_task(dataset), device, determinism,
                               threads, seed)
    upstream = "ok"
    if pretrained is None:
        net = build_cell_model(arch, FP32, data.input_shape, data.num_classes)
    else:
        fp_model, fp_meta = load_checkpoint(pretrained)
        check_cell(pretrained, fp_meta, task=task, arch=arch, algorithm=FP32)
        net = build_cell_model(arch, algorithm, data.input_shape, data.num_classes, fp_model)
        upstream = fp_meta.get("train_status", "ok")
    log.info("%s %s/%s/%s seed %s on %s, %d threads: %d train samples", stage, task, arch,
             algorithm, seed, dev, threads, len(data.x_train))
    if upstream != "ok":
        log.error("the full-precision model this cell starts from did not train: %s", upstream)
        records = untrained_record(f"skipped: full-precision model {upstream}")
    else:
        work_begins("training")
        records = train_or_fail(net, data, settings, seed, dev)
    meta = {"arch": arch, "algorithm": algorithm, "input_shape": list(data.input_shape),
            "num_classes": data.num_classes, "task": task, "seed": int(seed),
            "train_status": records[-1]["status"]}
    save_checkpoint(net.cpu(), model, meta)
    prov = provenance({"dataset": dataset, "settings": settings}, str(dev), threads,
                      training_precision(settings), code=code)
    rows = [{**_cell(task, arch, algorithm, seed), "stage": stage, **r, **prov} for r in records]
    write_table(rows, table, "train")


def pretrain(*, task: str, arch: str, seed: int, dataset: dict[str, Any],
             settings: dict[str, Any], device: str, determinism: str, threads: int, model: str,
             table: str, code: str) -> None:
    """Train the FP32 model of (task, arch): the start of every binarized cell of every seed
    and the FP32 cell of each (`seed` is the config's `pretrain_seed`)."""
    _train_job(stage="pretrain", task=task, arch=arch, algorithm=FP32, seed=seed,
               dataset=dataset, settings=settings, device=device, determinism=determinism,
               threads=threads, model=model, table=table, pretrained=None, code=code)


def finetune(*, task: str, arch: str, algorithm: str, seed: int, dataset: dict[str, Any],
             settings: dict[str, Any], device: str, determinism: str, threads: int,
             pretrained: str, model: str, table: str, code: str) -> None:
    """Binarize the pretrained FP32 model with `algorithm` and finetune it."""
    _train_job(stage="finetune", task=task, arch=arch, algorithm=algorithm, seed=seed,
               dataset=dataset, settings=settings, device=device, determinism=determinism,
               threads=threads, model=model, table=table, pretrained=pretrained, code=code)


def sensitivity(*, task: str, arch: str, algorithm: str, seed: int, setting: str,
                dataset: dict[str, Any], settings: dict[str, Any], device: str,
                determinism: str, threads: int, pretrained: str | list, table: str,
                code: str) -> None:
    """One run of the sensitivity grid: train with `settings`, then the clean test metric."""
    from bibench.evaluation.predict import METRICS, predict
    from bibench.training.checkpoint import build_cell_model, load_checkpoint
    from bibench.training.loop import train_or_fail, training_precision, training_setup

    dev, data = training_setup(lambda: _load_task(dataset), device, determinism,
                               threads, seed)
    fp_model = load_checkpoint(pretrained)[0] if algorithm != FP32 else None
    net = build_cell_model(arch, algorithm, data.input_shape, data.num_classes, fp_model)
    log.info("sensitivity %s %s/%s/%s seed %s: %s", setting, task, arch, algorithm, seed,
             settings)
    work_begins("training")
    records = train_or_fail(net, data, settings, seed, dev)
    status = records[-1]["status"]
    value = (METRICS[data.metric](predict(net, data.x_test, device=dev), data.y_test)
             if status == "ok" else float("nan"))
    log.info("%s %.4f (%s)", data.metric, value, status)
    row = {**_cell(task, arch, algorithm, seed), "setting": setting,
           "optimizer": settings["optimizer"], "lr": float(settings["lr"]),
           "scheduler": settings["scheduler"], "epochs": int(settings["epochs"]),
           "metric": data.metric, "value": value, "train_status": status,
           "train_seconds": float(sum(r["epoch_seconds"] for r in records)),
           "deterministic": records[-1]["deterministic"],
           **provenance({"dataset": dataset, "settings": settings}, str(dev), threads,
                        training_precision(settings), code=code)}
    write_table([row], table, "sensitivity")


def evaluate(*, task: str, arch: str, algorithm: str, seed: int, dataset: dict[str, Any],
             corruptions: dict[str, Any], export_settings: dict[str, Any] | None,
             threads: int, checkpoint: str, eval_table: str, code: str,
             export_table: str | None = None, complexity: str | None = None,
             forms: dict[str, str] | None = None, device: str = "cpu",
             determinism: str = "warn") -> None:
    """Everything measured on a trained cell's model, loaded once: the task metric on the clean
    test set and on each corruption x severity; then (with `export_settings`: a task that
    deploys) every deployment form (bibench.export.forms; `forms`: form output name -> path)
    checked against PyTorch; and (with `complexity`) the per-layer complexity.

    One job, not two: on the default grid's small models, starting a process and loading the
    data and the model cost more than either part. With `device: cuda` evaluation runs on the
    job's GPU when it has one and on the CPU otherwise; export always on the CPU.

    A cell whose training did not finish (failed, diverged, or skipped because its FP32 start
    did not train) is not run at all: every table gets rows that say why, and the export's
    files are notes that say so, so the rest of the grid goes on.
    """
    import torch

    from bibench.export.forms import EXPORT_FORMS, export_rows, not_exported_rows, parity_enforced
    from bibench.training.checkpoint import check_cell, load_checkpoint, not_trained

    if export_settings is not None:
        missing = ([] if export_table else ["export_table"]) + [
            f.output for f in EXPORT_FORMS if f.output not in (forms or {})]
        if missing:
            raise ValueError(f"export_settings given without the outputs {', '.join(missing)}")
    torch.set_num_threads(threads)
    data = _load_task(dataset)
    net, meta = load_checkpoint(checkpoint)
    # the FP32 cell of every seed is the one pretrained model (trained with `pretrain_seed`)
    seeded = {} if algorithm == FP32 else {"seed": seed}
    check_cell(checkpoint, meta, task=task, arch=arch, algorithm=algorithm, **seeded)
    reason = not_trained(meta)
    work_begins("evaluation")
    clean = _evaluate(net, reason, data, task=task, arch=arch, algorithm=algorithm, seed=seed,
                      dataset=dataset, corruptions=corruptions, threads=threads,
                      table=eval_table, code=code, device=device, determinism=determinism)
    cell = _cell(task, arch, algorithm, seed)
    if export_settings is not None:
        base = {**cell, **provenance({"dataset": dataset, "settings": export_settings}, "cpu",
                                     threads, code=code)}
        if reason is not None:
            rows = not_exported_rows(reason, algorithm, export_settings["opset"], base, forms)
        else:
            rows = export_rows(
                net.cpu(), data.x_test[: export_settings["max_samples"]],
                clean_outputs=clean.outputs, detector=data.task_type == "detection",
                enforce=parity_enforced(clean.value, clean.chance, data.metric),
                algorithm=algorithm, settings=export_settings, base=base, threads=threads,
                paths=forms)
        write_table(rows, export_table, "export")
    if complexity is not None:
        from bibench.metrics.complexity import complexity_rows, unmeasured_complexity_rows

        prov = provenance({"dataset": dataset}, "cpu", 1, code=code)
        x = data.x_test[:1]
        rows = (unmeasured_complexity_rows(reason) if reason is not None else complexity_rows(
            net.cpu(), net.trace_input(x) if hasattr(net, "trace_input") else x))
        write_table([{**cell, **r, **prov} for r in rows], complexity, "complexity")
    if reason is not None:
        log.warning("%s: not exported and complexity not measured", reason)


def _evaluate(net, reason: str | None, data: TaskData, *, task: str, arch: str,
              algorithm: str, seed: int, dataset: dict[str, Any], corruptions: dict[str, Any],
              threads: int, table: str, code: str, device: str, determinism: str) -> Any:
    """The eval table of the cell (bibench.evaluation.conditions; `reason`: why its model is
    not run, None when it trained); returns what the export needs of the clean test set."""
    from bibench.evaluation.conditions import evaluation_rows
    from bibench.training.device import prepare_device

    dev = prepare_device("auto" if device == "cuda" else device, determinism)
    base = {**_cell(task, arch, algorithm, seed),
            **provenance({"dataset": dataset, "corruptions": corruptions}, str(dev), threads,
                         code=code)}
    rows, clean = evaluation_rows(net, data, corruptions, dev, base, reason)
    write_table(rows, table, "eval")
    return clean


def latency(*, task: str, arch: str, algorithm: str, seed: int, settings: dict[str, Any],
            threads: int, forms: dict[str, str], export_table: str, fp32_onnx: str,
            table: str, code: str) -> None:
    """Time the cell and the FP32 model of its architecture in the same job, on every
    configured device x engine x thread count (bibench.latency.engines; `forms`: export form
    name -> the cell's file or folder of it), same-run speedups. A cell that was not exported
    (its training did not finish) is not timed: its rows say why."""
    from bibench.export.forms import NOT_EXPORTED
    from bibench.io import read_table
    from bibench.latency.devices import log_timings, measure_cell, untimed_rows

    exports = read_table(export_table, "export").set_index("form")
    untrained = exports["status"].str.startswith(NOT_EXPORTED)
    if len(exports) and untrained.all():
        reason = str(exports["status"].iloc[0])[len(NOT_EXPORTED):]
        log.warning("%s: not timed", reason)
        rows = untimed_rows(algorithm=algorithm, settings=settings, max_threads=threads,
                            status=f"not timed: {reason}"[:500])
    else:
        work_begins("timing")
        with tempfile.TemporaryDirectory(prefix="bibench-reference-") as workdir:
            rows = measure_cell(
                algorithm=algorithm, forms=forms, fp32_onnx=fp32_onnx, exports=exports,
                settings=settings, max_threads=threads, arch=arch, workdir=workdir,
                label=f"{task}/{arch}/{algorithm}/seed{seed}")
    prov = {k: v for k, v in provenance({"settings": settings}, "cpu", 1, code=code).items()
            if k not in ("threads", "precision", "device", "device_model")}
    out = [{**_cell(task, arch, algorithm, seed), **r, "device_model": r["cpu_model"], **prov}
           for r in rows]
    log_timings(out, table)
    write_table(out, table, "latency")


def aggregate(*, tasks: dict[str, dict[str, Any]], config_hash: str, train_tables: list[str],
              eval_tables: list[str], export_tables: list[str], latency_tables: list[str],
              complexity_tables: list[str], sensitivity_tables: list[str], metrics: str,
              tracks: str, hardware: str, summary: str, comparisons: str, bootstrap: str,
              code: str) -> None:
    """Join every cell's tables into results/metrics.parquet (one row per cell x condition),
    its mean over seeds with 95% intervals into results/summary.parquet, every latency
    measurement into results/latency.parquet, the paired tests between algorithms into
    results/comparisons.parquet (their replicates: results/bootstrap.parquet), and compute the
    tracks' metrics into results/tracks.parquet."""
    from bibench.metrics.aggregate import aggregate_run

    aggregate_run(tasks=tasks, config_hash=config_hash, train_tables=train_tables,
                  eval_tables=eval_tables, export_tables=export_tables,
                  latency_tables=latency_tables, complexity_tables=complexity_tables,
                  sensitivity_tables=sensitivity_tables, metrics=metrics, tracks=tracks,
                  hardware=hardware, summary=summary, comparisons=comparisons,
                  bootstrap=bootstrap, code=code)


def download_dataset(*, name: str, manifest: str) -> None:
    """Fetch an official dataset beside its manifest and write the manifest (what, where)."""
    from bibench.data.downloads import fetch_with_manifest

    fetch_with_manifest(name, manifest)


def report(*, metrics: str, tracks: str, hardware: str, summary: str, comparisons: str,
           bootstrap: str, sensitivity_tables: list[str], train_tables: list[str], html: str
           ) -> None:
    """Render results/report.html from the metrics, seed summary, tracks, latency, paired
    comparisons, sensitivity and training tables; a failed report keeps the last good one
    beside a note (bibench.report.notes)."""
    from bibench.metrics.aggregate import sensitivity_table, training_curves
    from bibench.report import render_report
    from bibench.report.notes import keeping_the_last_good_report

    with keeping_the_last_good_report(html):
        render_report(metrics, tracks, hardware, sensitivity_table(sensitivity_tables), html,
                      summary_path=summary, train=training_curves(train_tables),
                      comparisons_path=comparisons, bootstrap_path=bootstrap)
