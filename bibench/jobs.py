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
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import bibench
from bibench.catalog import FP32
from bibench.config import config_hash
from bibench.io import DamagedFileError, DiskFullError, write_table

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


class CleanResult(NamedTuple):
    """What the export needs of the clean evaluation: PyTorch's outputs (logits, or a
    detector's detections) where they were computed on the CPU (the parity reference: one
    forward pass less), else None; the task metric and its chance level (NaN where it has
    none)."""

    outputs: Any
    value: float
    chance: float


# The log line that names the package files a job imported (see loaded_sources).
CODE_LOADED = "bibench code loaded:"


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


def device_model(device: str) -> str:
    """The processor a row's numbers come from: the GPU's name on CUDA, else the CPU model.
    torch is imported only for a GPU: the latency job runs without it (2.2 s of its start)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    from bibench.latency.machine import cpu_model

    return cpu_model()


def provenance(settings: Any, device: str, threads: int, precision: str = "fp32", *,
               code: str) -> dict[str, Any]:
    """Where a row's numbers come from: settings hash, code fingerprint (bibench.cache),
    versions, device (kind and model), precision, threads."""
    return {
        "cell_config_hash": config_hash(settings),
        "code_fingerprint": code,
        "bibench_version": bibench.__version__,
        "torch_version": version("torch"),
        "device": device,
        "device_model": device_model(device),
        "precision": precision,
        "threads": threads,
    }


def _load_task(dataset: dict[str, Any]) -> TaskData:
    from bibench.data import load_dataset

    return load_dataset(
        dataset["name"], root=dataset.get("root"), options=dataset.get("options"),
        max_train=dataset.get("max_train"), max_test=dataset.get("max_test"),
    )


def _cell(task: str, arch: str, algorithm: str, seed: int) -> dict[str, Any]:
    return {"task": task, "arch": arch, "algorithm": algorithm, "seed": int(seed)}


# ---------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------


def _untrained(status: str) -> list[dict[str, Any]]:
    """The single record of a cell whose training did not run to the end."""
    return [{"epoch": 0, "loss": float("nan"), "train_accuracy": float("nan"),
             "epoch_seconds": 0.0, "lr": float("nan"), "status": status[:500],
             "deterministic": "not run", "eval_train_accuracy": float("nan")}]


def _train_or_fail(net, data: TaskData, settings: dict[str, Any], seed: int, dev
                   ) -> list[dict[str, Any]]:
    """Train; an exception becomes a "failed: ..." record so the rest of the grid goes on."""
    from bibench.training.loop import TrainSettings, train

    try:
        return train(net, data.x_train, data.y_train, TrainSettings.from_config(settings),
                     seed=int(seed), device=dev, task_type=data.task_type)
    except Exception as err:  # reported in the cell's rows and the report
        log.exception("training failed")
        return _untrained(f"failed: {type(err).__name__}: {err}")


def _training_precision(settings: dict[str, Any]) -> str:
    """The rows' `precision` of a training run: fp32, or bf16 autocast of the forward pass."""
    return "bf16-autocast" if settings.get("precision", "fp32") == "bf16" else "fp32"


def _training_setup(dataset: dict[str, Any], device: str, determinism: str, threads: int,
                    seed: int) -> tuple[Any, TaskData]:
    """What every training job does first: its thread count, device and data, then the seed
    (after loading, so that the model's initialisation does not depend on the loader)."""
    import torch

    from bibench.training.device import prepare_device

    torch.set_num_threads(threads)
    dev = prepare_device(device, determinism)
    data = _load_task(dataset)
    torch.manual_seed(int(seed))
    return dev, data


def _train_job(*, stage: str, task: str, arch: str, algorithm: str, seed: int,
               dataset: dict[str, Any], settings: dict[str, Any], device: str,
               determinism: str, threads: int, model: str, table: str,
               pretrained: str | None, code: str) -> None:
    from bibench.training.checkpoint import build_cell_model, load_checkpoint, save_checkpoint

    dev, data = _training_setup(dataset, device, determinism, threads, seed)
    upstream = "ok"
    if pretrained is None:
        net = build_cell_model(arch, FP32, data.input_shape, data.num_classes)
    else:
        fp_model, fp_meta = load_checkpoint(pretrained)
        if fp_meta["algorithm"] != FP32:
            raise ValueError(f"{pretrained} is not a full-precision checkpoint")
        net = build_cell_model(arch, algorithm, data.input_shape, data.num_classes, fp_model)
        upstream = fp_meta.get("train_status", "ok")
    log.info("%s %s/%s/%s seed %s on %s, %d threads: %d train samples", stage, task, arch,
             algorithm, seed, dev, threads, len(data.x_train))
    if upstream != "ok":
        log.error("the full-precision model this cell starts from did not train: %s", upstream)
        records = _untrained(f"skipped: full-precision model {upstream}")
    else:
        records = _train_or_fail(net, data, settings, seed, dev)
    meta = {"arch": arch, "algorithm": algorithm, "input_shape": list(data.input_shape),
            "num_classes": data.num_classes, "task": task, "seed": int(seed),
            "train_status": records[-1]["status"]}
    save_checkpoint(net.cpu(), model, meta)
    prov = provenance({"dataset": dataset, "settings": settings}, str(dev), threads,
                      _training_precision(settings), code=code)
    rows = [{**_cell(task, arch, algorithm, seed), "stage": stage, **r, **prov} for r in records]
    write_table(rows, table, "train")


def pretrain(*, task: str, arch: str, seed: int, dataset: dict[str, Any],
             settings: dict[str, Any], device: str, determinism: str, threads: int, model: str,
             table: str, code: str) -> None:
    """Train the FP32 model of (task, arch, seed): the start of every binarized cell."""
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


def _conditions(data: TaskData, corruptions: dict[str, Any], generate: bool = True):
    """(condition, severity, x, y) of the clean test set and each corruption x severity.

    Corruptions are generated from the test set (without `generate`, for a model that is not
    run, x is the clean test set: same size and labels), or read from the official CIFAR-10-C
    files when `corruptions["files"]` names their folder. The generators' module (scipy) is
    imported only by a task that has corruptions.
    """
    yield "clean", 0, data.x_test, data.y_test
    for name, severities in sorted(corruptions["corruptions"].items()):
        for severity in severities:
            if corruptions["files"] is None and not generate:
                yield name, severity, data.x_test, data.y_test
            elif corruptions["files"] is None:
                from bibench.evaluation.corruptions import corrupt

                yield name, severity, corrupt(data.x_test, name, severity), data.y_test
            else:
                from bibench.data.official import load_cifar10c

                x, y = load_cifar10c(corruptions["files"], name, severity,
                                     max_test=len(data.x_test))
                yield name, severity, x, y


def sensitivity(*, task: str, arch: str, algorithm: str, seed: int, setting: str,
                dataset: dict[str, Any], settings: dict[str, Any], device: str,
                determinism: str, threads: int, pretrained: str | list, table: str,
                code: str) -> None:
    """One run of the sensitivity grid: train with `settings`, then the clean test metric."""
    from bibench.evaluation.predict import METRICS, predict
    from bibench.training.checkpoint import build_cell_model, load_checkpoint

    dev, data = _training_setup(dataset, device, determinism, threads, seed)
    fp_model = load_checkpoint(pretrained)[0] if algorithm != FP32 else None
    net = build_cell_model(arch, algorithm, data.input_shape, data.num_classes, fp_model)
    log.info("sensitivity %s %s/%s/%s seed %s: %s", setting, task, arch, algorithm, seed,
             settings)
    records = _train_or_fail(net, data, settings, seed, dev)
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
                        _training_precision(settings), code=code)}
    write_table([row], table, "sensitivity")


def evaluate(*, task: str, arch: str, algorithm: str, seed: int, dataset: dict[str, Any],
             corruptions: dict[str, Any], export_settings: dict[str, Any] | None,
             threads: int, checkpoint: str, eval_table: str, code: str,
             export_table: str | None = None, complexity: str | None = None,
             onnx: str | None = None, qonnx: str | None = None, openvino: str | None = None,
             device: str = "cpu", determinism: str = "warn") -> None:
    """Everything measured on a trained cell's model, loaded once: the task metric on the clean
    test set and on each corruption x severity; then (with `export_settings`: a task that
    deploys) every deployment form checked against PyTorch; and (with `complexity`) the
    per-layer complexity.

    One job, not two: on the default grid's small models, starting a process and loading the
    data and the model cost more than either part (issue 18). With `device: cuda` evaluation
    runs on the job's GPU when it has one and on the CPU otherwise; export always on the CPU.

    A cell whose training did not finish (failed, diverged, or skipped because its FP32 start
    did not train) is not run at all: every table gets rows that say why, and the export's
    files are notes that say so (`_not_measured`), so the rest of the grid goes on.
    """
    import torch

    from bibench.training.checkpoint import load_checkpoint

    missing = [k for k, v in {"export_table": export_table, "onnx": onnx, "qonnx": qonnx,
                              "openvino": openvino}.items() if v is None]
    if export_settings is not None and missing:
        raise ValueError(f"export_settings given without the outputs {', '.join(missing)}")
    torch.set_num_threads(threads)
    data = _load_task(dataset)
    net, meta = load_checkpoint(checkpoint)
    clean = _evaluate(net, meta, data, task=task, arch=arch, algorithm=algorithm, seed=seed,
                      dataset=dataset, corruptions=corruptions, threads=threads,
                      table=eval_table, code=code, device=device, determinism=determinism)
    reason = not_trained(meta)
    if reason is not None:
        _not_measured(reason, task=task, arch=arch, algorithm=algorithm, seed=seed,
                      dataset=dataset, export_settings=export_settings, threads=threads,
                      onnx=onnx, qonnx=qonnx, openvino=openvino, export_table=export_table,
                      complexity=complexity, code=code)
        return
    if export_settings is not None:
        _export(net.cpu(), data, task=task, arch=arch, algorithm=algorithm, seed=seed,
                dataset=dataset, settings=export_settings, threads=threads, onnx=onnx,
                qonnx=qonnx, openvino=openvino, table=export_table, code=code, clean=clean)
    if complexity is not None:
        x = data.x_test[:1]
        _complexity(net.cpu(), net.trace_input(x) if hasattr(net, "trace_input") else x,
                    task=task, arch=arch, algorithm=algorithm, seed=seed, dataset=dataset,
                    table=complexity, code=code)


def not_trained(meta: dict[str, Any]) -> str | None:
    """Why a cell's model is not measured (None: its training ran to the end): `training
    failed: <error>`, `training diverged` or `training skipped: full-precision model ...`, from
    the status its checkpoint records."""
    status = meta.get("train_status", "ok")
    return None if status == "ok" else f"training {status}"


# The status prefix of every export row of a cell that was not exported (not_trained).
NOT_EXPORTED = "not exported: "


def _not_measured(reason: str, *, task: str, arch: str, algorithm: str, seed: int,
                  dataset: dict[str, Any], export_settings: dict[str, Any] | None,
                  threads: int, onnx: str | None, qonnx: str | None, openvino: str | None,
                  export_table: str | None, complexity: str | None, code: str) -> None:
    """The export and complexity outputs of a cell whose training did not finish: its model is
    never run (a plugin whose forward raises would stop the job, a diverged one computes
    nothing), so each table has rows that say why and each export file is a note saying so
    (the latency job reads the rows and times nothing)."""
    from bibench.io import atomic_write

    note = f"{NOT_EXPORTED}{reason}\n"
    cell = _cell(task, arch, algorithm, seed)
    if export_settings is not None:
        for path in (onnx, qonnx):
            atomic_write(path, lambda tmp: Path(tmp).write_text(note))
        Path(openvino).mkdir(parents=True, exist_ok=True)
        atomic_write(Path(openvino) / "NOT_EXPORTED.txt", lambda tmp: Path(tmp).write_text(note))
        prov = provenance({"dataset": dataset, "settings": export_settings}, "cpu", threads,
                          code=code)
        forms = ["onnx", "qonnx"] + ([] if algorithm == FP32 else ["openvino_binary"])
        write_table([{**cell, "form": form, "status": (NOT_EXPORTED + reason)[:500],
                      "opset": export_settings["opset"], "file_bytes": 0, "packed_bytes": 0,
                      "checker_passed": False, "argmax_agreement": float("nan"),
                      "within_logit_tolerance": float("nan"),
                      "max_abs_logit_diff": float("nan"), "n_samples": 0,
                      "n_binarized_layers": 0, "n_binary_conv": 0, **prov} for form in forms],
                    export_table, "export")
    if complexity is not None:
        write_table([{**cell, "layer": "", "layer_type": "total", "binary": False,
                      "params": None, "fp_params": None, "binary_params": None, "flops": None,
                      "fp_flops": None, "binary_flops": None,
                      "status": f"not measured: {reason}"[:500],
                      **provenance({"dataset": dataset}, "cpu", 1, code=code)}],
                    complexity, "complexity")
    log.warning("%s: not exported and complexity not measured", reason)


def _evaluate(net, meta: dict[str, Any], data: TaskData, *, task: str, arch: str,
              algorithm: str, seed: int, dataset: dict[str, Any], corruptions: dict[str, Any],
              threads: int, table: str, code: str, device: str, determinism: str
              ) -> CleanResult:
    """Task metric on the clean test set and on each corruption x severity; returns what the
    export needs of the clean test set."""
    from bibench.evaluation.predict import METRICS, per_example, predict
    from bibench.metrics.quality import chance_level
    from bibench.training.device import prepare_device

    dev = prepare_device("auto" if device == "cuda" else device, determinism)
    reason = not_trained(meta)
    trained = reason is None
    if not trained:
        log.warning("%s: not evaluated, metrics are recorded as NaN", reason)
    metric = METRICS[data.metric]
    prov = provenance({"dataset": dataset, "corruptions": corruptions}, str(dev), threads,
                      code=code)
    rows = []
    clean = CleanResult(None, float("nan"), float("nan"))
    # once: a detector's (random boxes through its mAP) takes seconds on a real test set
    test_chance = chance_level(data.y_test.numpy(), data.metric)
    for condition, severity, x, y in _conditions(data, corruptions, generate=trained):
        output = predict(net, x, device=dev) if trained else None
        value = metric(output, y) if trained else float("nan")
        chance = test_chance if y is data.y_test else chance_level(y.numpy(), data.metric)
        if condition == "clean":
            clean = CleanResult(output if dev.type == "cpu" else None, value, chance)
        log.info("%s severity %d: %s %.4f", condition, severity, data.metric, value)
        rows.append({**_cell(task, arch, algorithm, seed), "condition": condition,
                     "severity": severity, "metric": data.metric, "value": value,
                     "n_samples": len(x), "chance_value": chance, "embedded": data.embedded,
                     "stands_in_for": data.stands_in_for,
                     "status": "ok" if trained else f"not evaluated: {reason}"[:500],
                     "predictions": per_example(output, data.task_type) if trained else None,
                     "targets": (per_example(y, data.task_type, targets=True)
                                 if condition == "clean" else None), **prov})
    write_table(rows, table, "eval")
    return clean


def _parity_row(form: str, parity: Any, settings: dict[str, Any], enforce: bool, *,
                logits: bool = True) -> dict:
    """A form's parity numbers and status: below the configured agreement it failed.

    Float forms must match PyTorch's logits too; the binary engine and a binarized model's
    QONNX graph accumulate in their own order, so a pre-sign value at the threshold may flip and
    move a sample's logits: for them the argmax decides (issue #6).
    """
    status = "ok"
    agreement = (min(parity.argmax_agreement, parity.within_tolerance) if logits
                 else parity.argmax_agreement)
    if enforce and agreement < settings["min_argmax_agreement"]:
        status = (f"failed: {form} disagrees with PyTorch: argmax agreement "
                  f"{parity.argmax_agreement:.4f}, within logit tolerance "
                  f"{parity.within_tolerance:.4f} < {settings['min_argmax_agreement']}")
    return {"form": form, "status": status, "argmax_agreement": parity.argmax_agreement,
            "within_logit_tolerance": parity.within_tolerance,
            "max_abs_logit_diff": parity.max_abs_logit_diff, "n_samples": parity.n_samples}


def _at_chance(clean: CleanResult, metric: str) -> bool:
    """Whether the cell is at chance on the clean test set (bibench.metrics.quality: the rule
    that marks it in metrics.parquet): majority class, or random boxes for a detector.

    Such a model is untrained in effect: its outputs sit within float-rounding noise of each
    other, and a sign that flips on a value at the threshold (summation order differs between
    engines) changes its answer, so parity with PyTorch says nothing about the export. Its
    parity numbers are recorded but not enforced (issue #6: compare trained models; a cell
    whose training did not finish is not exported at all).
    """
    from bibench.metrics.quality import at_chance

    if at_chance(clean.value, clean.chance):
        log.warning("clean test %s %.4f is at chance (%.4f): parity not enforced", metric,
                    clean.value, clean.chance)
        return True
    return False


def _onnx_form(net, x, ref, onnx: str, settings: dict[str, Any], base: dict, enforce: bool
               ) -> dict:
    """The float ONNX graph, checked with onnxruntime on every parity sample: the graph as
    written (graph rewrites off). onnxruntime's conv + BatchNorm fusion rounds differently,
    which flips the signs of values near 0 in a binarized network and moves its logits (a
    trained XNOR++ PointNet: 21 of 100 samples beyond tolerance, argmax 99/100; without the
    rewrites the logits match to 6e-6), as for detectors (bibench.export.detection)."""
    from bibench.export.onnx import export_onnx, logit_parity, ort_predict
    from bibench.latency.timing import ort_session

    export_onnx(net, x[:1], onnx, opset=settings["opset"], exporter=settings["exporter"])
    parity = logit_parity(ref, ort_predict(ort_session(onnx, optimize=False), x),
                          settings["logit_atol"])
    size = Path(onnx).stat().st_size
    return {**base, **_parity_row("onnx", parity, settings, enforce), "file_bytes": size,
            "packed_bytes": size}


def _qonnx_form(net, x, ref, qonnx: str, settings: dict[str, Any], base: dict, enforce: bool,
                *, binarized: bool = False) -> dict:
    """The QONNX graph (BipolarQuant), checked on every parity sample in onnxruntime with
    BipolarQuant defined as QONNX defines it (bibench.export.qonnx: the tests hold that runner
    to qonnx's own executor, which took 6 of a MiniLM cell's 34 s for 16 samples).

    A binarized model's QONNX graph applies its scales in another order than PyTorch (a
    BipolarQuant, then the scale), so, as on the binary engine, a pre-sign value within
    rounding of 0 may flip and move a sample's logits: for it the argmax decides. A trained
    XNOR++ PointNet showed it: the executor matched the lowered PyTorch model to 3e-6, the
    lowered model the original to 4e-7 (relative) up to the pooled features, whose signs then
    flipped for 19% of the head's inputs; 3 of 16 samples moved beyond the logit tolerance,
    none changed its answer."""
    from bibench.export.onnx import logit_parity
    from bibench.export.qonnx import export_qonnx, qonnx_onnxruntime_predict

    export_qonnx(net, x[:1], qonnx)
    parity = logit_parity(ref, qonnx_onnxruntime_predict(qonnx, x.numpy()),
                          settings["logit_atol"])
    size = Path(qonnx).stat().st_size  # QONNX keeps float weights behind BipolarQuant
    return {**base, **_parity_row("qonnx", parity, settings, enforce, logits=not binarized),
            "file_bytes": size, "packed_bytes": size}


def _openvino_form(net, x, ref, openvino: str, algorithm: str, settings: dict[str, Any],
                   base: dict, enforce: bool, threads: int) -> dict | None:
    """The OpenVINO binary IR (BinaryConvolution), checked on the binary engine as compiled
    for the export's own check (one compilation); None for FP32, whose engines time
    model.onnx."""
    import numpy as np

    from bibench.export.onnx import logit_parity
    from bibench.export.openvino import (
        BinaryFallbackError,
        BinaryForm,
        export_openvino_binary,
    )

    Path(openvino).mkdir(parents=True, exist_ok=True)
    if algorithm == FP32:
        (Path(openvino) / "FULL_PRECISION.txt").write_text(
            "full-precision model: engines time model.onnx\n")
        return None
    try:
        form = export_openvino_binary(net, x[:1], openvino, algorithm, threads=threads,
                                      batch=len(x))
        status = "not deployable: " + form.reason
    except BinaryFallbackError as err:  # the engine ran float where binary was written
        log.error("%s", err)
        status = f"failed: {err}"[:500]
        form = BinaryForm(False, status, 0, 0, 0, 0)
    row = {**base, "form": "openvino_binary", "file_bytes": form.onnx_bytes,
           "packed_bytes": form.packed_bytes, "n_binarized_layers": form.n_binarized_layers,
           "n_binary_conv": form.n_binary_conv, "argmax_agreement": float("nan"),
           "within_logit_tolerance": float("nan"), "max_abs_logit_diff": float("nan"),
           "n_samples": 0, "status": status}
    if form.deployable:  # the IR is the file the latency job times
        got = np.asarray(form.compiled(np.ascontiguousarray(x.numpy()))[0])
        row.update(_parity_row("openvino_binary", logit_parity(ref, got, settings["logit_atol"]),
                               settings, enforce, logits=False))
    return row


def _export(net, data: TaskData, *, task: str, arch: str, algorithm: str, seed: int,
            dataset: dict[str, Any], settings: dict[str, Any], threads: int, onnx: str,
            qonnx: str, openvino: str, table: str, code: str, clean: CleanResult) -> None:
    """Every deployment form of the cell, each checked against PyTorch on the test set. The
    evaluation's clean outputs are the reference where they were computed on the CPU.

    A form that disagrees with PyTorch or does not deploy is a row with its reason, not a job
    failure: the rest of the grid and the report go on, and the report names it.
    """
    from bibench.evaluation.predict import predict
    from bibench.export.detection import main_graph

    x = data.x_test[: settings["max_samples"]]
    detector = data.task_type == "detection"
    # a detector's forms hold the graph that takes the images (docs/detection.md); its QONNX
    # and OpenVINO forms are checked on that graph's first raw output
    graph = main_graph(net) if detector else net
    if detector:
        ref = _first_output(graph, x)
    elif clean.outputs is not None:
        ref = clean.outputs[: len(x)].numpy()
    else:
        ref = predict(net, x).numpy()
    enforce = not _at_chance(clean, data.metric)
    prov = provenance({"dataset": dataset, "settings": settings}, "cpu", threads, code=code)
    base = {**_cell(task, arch, algorithm, seed), "opset": settings["opset"],
            "checker_passed": True, "n_binarized_layers": 0, "n_binary_conv": 0, **prov}
    detections = None if clean.outputs is None else clean.outputs[: len(x)]
    first = (_detector_onnx_form(net, x, detections, onnx, settings, base, enforce) if detector
             else _onnx_form(net, x, ref, onnx, settings, base, enforce))
    rows = [first,
            _qonnx_form(graph, x, ref, qonnx, settings, base, enforce,
                        binarized=algorithm != FP32),
            _openvino_form(graph, x, ref, openvino, algorithm, settings, base, enforce, threads)]
    rows = [r for r in rows if r is not None]
    for r in rows:
        log.info("%s: %s (argmax agreement %.4f, max |logit diff| %.3g, %d bytes)", r["form"],
                 r["status"], r["argmax_agreement"], r["max_abs_logit_diff"], r["file_bytes"])
    write_table(rows, table, "export")


def _first_output(graph, x) -> Any:
    """The first raw output of a detector's main graph (SSD's class logits, Faster R-CNN's
    features): what its QONNX and OpenVINO forms are compared on."""
    import torch

    with torch.no_grad():
        out = graph.eval()(x)
    return (out if isinstance(out, torch.Tensor) else out[0]).numpy()


def _detector_onnx_form(net, x, detections: list[dict] | None, onnx: str,
                        settings: dict[str, Any], base: dict, enforce: bool) -> dict:
    """Every graph of the detector (model.onnx: the one that takes the images; Faster R-CNN's
    RoI head beside it), checked in onnxruntime on boxes and scores after NMS against
    PyTorch's `detections` of x (computed when None)."""
    from bibench.export.detection import cell_graph_files, detection_parity, export_detector

    paths = export_detector(net, x[:1], Path(onnx).parent, opset=settings["opset"],
                            files=cell_graph_files(net, onnx))
    parity = detection_parity(net, paths, x, settings["logit_atol"], reference=detections)
    size = sum(p.stat().st_size for p in paths.values())
    return {**base, **_parity_row("onnx", parity, settings, enforce), "file_bytes": size,
            "packed_bytes": size}


def _complexity(net, example, *, task: str, arch: str, algorithm: str, seed: int,
                dataset: dict[str, Any], table: str, code: str) -> None:
    """Per-layer parameters and FLOPs, binary vs full precision (paper Eq. 7)."""
    from bibench.metrics.complexity import layer_costs, totals

    costs = layer_costs(net, example)
    total = totals(costs)
    cell = _cell(task, arch, algorithm, seed)
    prov = provenance({"dataset": dataset}, "cpu", 1, code=code)
    rows = [{**cell, **c.__dict__, **prov} for c in costs]
    rows.append({**cell, "layer": "", "layer_type": "total", "binary": False,
                 **total.as_dict(), **prov})
    rows = [{**r, "status": "ok"} for r in rows]
    log.info("complexity %s/%s/%s: %s", task, arch, algorithm, total)
    write_table(rows, table, "complexity")


def latency(*, task: str, arch: str, algorithm: str, seed: int, settings: dict[str, Any],
            threads: int, onnx: str, openvino: str, export_table: str, fp32_onnx: str,
            table: str, code: str) -> None:
    """Time the cell and the FP32 model of its architecture in the same job, on every
    configured device x engine x thread count (same-run speedups). A cell that was not exported
    (its training did not finish) is not timed: its rows say why."""
    from bibench.io import read_table
    from bibench.latency.devices import measure_cell, untimed_rows

    exports = read_table(export_table, "export").set_index("form")
    untrained = exports["status"].str.startswith(NOT_EXPORTED)
    if len(exports) and untrained.all():
        reason = str(exports["status"].iloc[0])[len(NOT_EXPORTED):]
        log.warning("%s: not timed", reason)
        rows = untimed_rows(algorithm=algorithm, settings=settings, max_threads=threads,
                            status=f"not timed: {reason}"[:500])
    else:
        with tempfile.TemporaryDirectory(prefix="bibench-reference-") as workdir:
            rows = measure_cell(
                algorithm=algorithm, onnx=onnx, openvino_dir=openvino, fp32_onnx=fp32_onnx,
                exports=exports, settings=settings, max_threads=threads, arch=arch,
                workdir=workdir, label=f"{task}/{arch}/{algorithm}/seed{seed}")
    prov = {k: v for k, v in provenance({"settings": settings}, "cpu", 1, code=code).items()
            if k not in ("threads", "precision", "device", "device_model")}
    out = [{**_cell(task, arch, algorithm, seed), **r, "device_model": r["cpu_model"], **prov}
           for r in rows]
    for r in out:
        log.info("%s %s %d threads: %s; %.3f ms vs fp32 %.3f ms (x%.2f)", r["device_name"],
                 r["engine"], r["threads"], r["status"], r["median_ms"], r["fp32_median_ms"],
                 r["speedup_vs_fp32"])
    contended = sum(str(r["status"]).startswith("contended") for r in out)
    if contended:
        log.warning("%d row(s) timed while another bibench job timed on the same device: kept "
                    "out of the results until re-timed with: snakemake --cores all --forcerun "
                    "%s", contended, table)
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
    from bibench.cache import combine
    from bibench.metrics.aggregate import (
        build_metrics,
        eval_rows,
        latency_table,
        sensitivity_table,
    )
    from bibench.metrics.comparisons import compare_algorithms
    from bibench.metrics.seeds import seed_summary
    from bibench.metrics.tracks import compute_tracks_over_seeds

    start = time.perf_counter()
    lat = latency_table(latency_tables)
    evals = eval_rows(eval_tables)
    frame = build_metrics(tasks=tasks, config_hash=config_hash, train_tables=train_tables,
                          evals=evals, export_tables=export_tables, latency=lat,
                          complexity_tables=complexity_tables, code=code)
    pairs, replicates = compare_algorithms(evals)
    fingerprint = combine([*evals["code_fingerprint"], code])
    write_table(pairs.assign(code_fingerprint=fingerprint), comparisons, "comparisons")
    write_table(replicates.assign(code_fingerprint=fingerprint), bootstrap, "bootstrap")
    sensitivity = sensitivity_table(sensitivity_tables)
    write_table(frame, metrics, "metrics")
    write_table(seed_summary(frame), summary, "summary")
    write_table(lat, hardware, "latency")
    track_rows = compute_tracks_over_seeds(frame, sensitivity, lat)
    track_rows["code_fingerprint"] = combine(
        [*frame["code_fingerprint"], *sensitivity["code_fingerprint"], code])
    write_table(track_rows, tracks, "tracks")
    log.info("%d rows from %d cells in %.2fs", len(frame), len(eval_tables),
             time.perf_counter() - start)


def download_dataset(*, name: str, manifest: str) -> None:
    """Fetch an official dataset beside its manifest and write the manifest (what, where)."""
    import json

    from bibench.data.downloads import DOWNLOADS, GROUPS, fetch
    from bibench.io import atomic_write

    folder = fetch(name, Path(manifest).parent)
    entries = [DOWNLOADS[part] for part in GROUPS.get(name, (name,))]
    record = {"name": name, "folder": str(folder),
              "urls": [p["url"] for entry in entries for p in entry.get("files", [entry])]}
    log.info("%s ready in %s", name, folder)
    atomic_write(manifest, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))


def report(*, metrics: str, tracks: str, hardware: str, summary: str, comparisons: str,
           bootstrap: str, sensitivity_tables: list[str], train_tables: list[str], html: str
           ) -> None:
    """Render results/report.html from the metrics, seed summary, tracks, latency, paired
    comparisons, sensitivity and training tables.

    A failed report keeps the last good one beside a note (report_notes): Snakemake deletes
    the outputs of a failed job, so each success links the new report to report.last-good.html
    too, and the note report.FAILED.txt, written when the job starts (a job killed before it
    ends leaves it as well) and rewritten with the error if it fails, says what failed and where
    the last good report is; a success removes it."""
    from bibench.metrics.aggregate import sensitivity_table, training_curves
    from bibench.report import render_report

    note, last_good = report_notes(html)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    _report_note(note, last_good, html,
                 f"the report job started {started} has not finished (it failed or was killed)")
    try:
        render_report(metrics, tracks, hardware, sensitivity_table(sensitivity_tables), html,
                      summary_path=summary, train=training_curves(train_tables),
                      comparisons_path=comparisons, bootstrap_path=bootstrap)
    except BaseException as err:
        problem = str(err).strip().splitlines()[0] if str(err).strip() else ""
        _report_note(note, last_good, html, f"the report job started {started} failed: "
                                            f"{type(err).__name__}{': ' if problem else ''}"
                                            f"{problem}")
        raise
    _link_or_copy(html, last_good)
    note.unlink(missing_ok=True)


def report_notes(html: str | Path) -> tuple[Path, Path]:
    """The note a report job that did not finish leaves beside `html` and the last good report
    it keeps (results/report.FAILED.txt, results/report.last-good.html): files that Snakemake
    does not delete when the job fails."""
    html = Path(html)
    return html.with_name(f"{html.stem}.FAILED.txt"), html.with_name(f"{html.stem}.last-good.html")


def _report_note(note: Path, last_good: Path, html: str | Path, what: str) -> None:
    from bibench.io import atomic_write

    if last_good.exists():
        made = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last_good.stat().st_mtime))
        kept = f"The last good report, made {made}, is {last_good}."
    else:
        kept = "There is no earlier report."
    text = (f"REPORT NOT UPDATED: {what}.\n"
            f"{html} is not there: Snakemake deletes the outputs of a failed job. {kept}\n"
            f"The job's log (logs/report.log) says why; the next snakemake run makes the "
            f"report again, and removes this note when it succeeds.\n")
    atomic_write(note, lambda tmp: Path(tmp).write_text(text))


def _link_or_copy(source: str | Path, target: Path) -> None:
    """`target` becomes `source`'s content: a hard link (no space used) or else a copy."""
    import os
    import shutil

    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    os.replace(tmp, target)
