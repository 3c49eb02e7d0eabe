"""The deployment forms of a cell, registered once: what each writes, how, and how it is checked.

Every form is an `ExportForm`: its name (the `form` of export.parquet), the output it fills
(the evaluate rule's output name and the path in the cell's folder: a file, or a folder the
form's tools write several files into), whether an FP32 cell has a row of it, and its writer,
the function that writes the form and checks it against PyTorch. The workflow's output lists,
`bibench status`, the cache's damaged-file check and the evaluate job all read `EXPORT_FORMS`,
so a new form is one writer function in its module and one entry here.

The Snakefile reads this module at parse time, so it imports neither torch nor onnx: a writer
is named as "module:function" and imported when a form is written, as entry points are.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bibench.catalog import FP32

log = logging.getLogger(__name__)

# The status prefix of every export row of a cell that was not exported (its training did not
# finish); the latency job reads it and times nothing.
NOT_EXPORTED = "not exported: "


@dataclass(frozen=True)
class FormInput:
    """What a writer needs: the cell's model (`graph`: the graph a detector's QONNX and
    OpenVINO forms hold; the model itself otherwise), the parity samples `x` and PyTorch's
    outputs on them (`reference`; a detector's `detections` after NMS, None: compute them),
    the export settings, the row's common columns (`base`), whether parity is enforced (not
    for a cell at chance), the job's threads, and where the form goes (`path`)."""

    model: Any
    graph: Any
    x: Any
    reference: Any
    detections: Any
    detector: bool
    algorithm: str
    settings: dict[str, Any]
    base: dict[str, Any]
    enforce: bool
    threads: int
    path: str


@dataclass(frozen=True)
class ExportForm:
    name: str  # export.parquet `form`
    output: str  # the evaluate rule's output name
    path: str  # in the cell's folder
    directory: bool  # a folder of files (written by the form's own tools)
    writer: str  # "module:function", called with a FormInput; returns the form's row or None
    fp32_row: bool = True  # False: an FP32 cell has no row of this form (it writes a note)
    detector_writer: str = ""  # a detector's writer where it differs (its graphs, its NMS)

    def write(self, form_input: FormInput) -> dict[str, Any] | None:
        writer_name = (self.detector_writer if form_input.detector and self.detector_writer
                       else self.writer)
        module, function = writer_name.split(":")
        writer: Callable[[FormInput], dict[str, Any] | None] = getattr(
            importlib.import_module(module), function)
        return writer(form_input)

    def write_note(self, path: str | Path, text: str, name: str = "NOT_EXPORTED.txt") -> None:
        """A text note in place of the form: the file itself, or a file in the form's folder."""
        from bibench.io import atomic_write

        target = Path(path)
        if self.directory:
            target.mkdir(parents=True, exist_ok=True)
            target = target / name
        atomic_write(target, lambda tmp: Path(tmp).write_text(text))


EXPORT_FORMS: tuple[ExportForm, ...] = (
    ExportForm("onnx", "onnx", "model.onnx", False, "bibench.export.onnx:write_form",
               detector_writer="bibench.export.detection:write_onnx_form"),
    ExportForm("qonnx", "qonnx", "model.qonnx.onnx", False, "bibench.export.qonnx:write_form"),
    ExportForm("openvino_binary", "openvino", "openvino", True,
               "bibench.export.openvino:write_form", fp32_row=False),
)
EXPORT_TABLE = "export.parquet"


def form_paths() -> list[str]:
    """The files and folders the forms write in a cell's folder."""
    return [f.path for f in EXPORT_FORMS]


def parity_enforced(value: float, chance: float, metric: str) -> bool:
    """Whether the forms' parity with PyTorch is enforced: not for a cell at chance on the
    clean test set (bibench.metrics.quality: majority class, or random boxes for a detector).

    Such a model is untrained in effect: its outputs sit within float-rounding noise of each
    other, and a sign that flips on a value at the threshold (summation order differs between
    engines) changes its answer, so parity with PyTorch says nothing about the export. Its
    parity numbers are recorded but not enforced.
    """
    from bibench.metrics.quality import at_chance

    if at_chance(value, chance):
        log.warning("clean test %s %.4f is at chance (%.4f): parity not enforced", metric,
                     value, chance)
        return False
    return True


def export_rows(model: Any, x: Any, *, clean_outputs: Any, enforce: bool, detector: bool,
                algorithm: str, settings: dict[str, Any], base: dict[str, Any], threads: int,
                paths: dict[str, str]) -> list[dict[str, Any]]:
    """Every deployment form of the cell written to `paths` (form output name -> path) and
    checked against PyTorch on `x`; the rows of export.parquet. `clean_outputs` are the
    clean evaluation's outputs where they were computed on the CPU (the parity reference: one
    forward pass less), else None.

    A form that disagrees with PyTorch or does not deploy is a row with its reason, not a job
    failure: the rest of the grid and the report go on, and the report names it.
    """
    import torch

    from bibench.evaluation.predict import predict
    from bibench.export.detection import main_graph

    # a detector's forms hold the graph that takes the images (docs/detection.md); its QONNX
    # and OpenVINO forms are checked on that graph's first raw output
    graph = main_graph(model) if detector else model
    if detector:
        with torch.no_grad():
            out = graph.eval()(x)
        reference = (out if isinstance(out, torch.Tensor) else out[0]).numpy()
    elif clean_outputs is not None:
        reference = clean_outputs[: len(x)].numpy()
    else:
        reference = predict(model, x).numpy()
    detections = None if clean_outputs is None else clean_outputs[: len(x)]
    # columns a form's writer fills where they apply to it
    base = {**base, "opset": settings["opset"], "checker_passed": True,
            "n_binarized_layers": 0, "n_binary_conv": 0}
    rows = []
    for form in EXPORT_FORMS:
        row = form.write(FormInput(
            model=model, graph=graph, x=x, reference=reference, detections=detections,
            detector=detector, algorithm=algorithm, settings=settings, base=base,
            enforce=enforce, threads=threads, path=paths[form.output]))
        if row is not None:
            log.info("%s: %s (argmax agreement %.4f, max |logit diff| %.3g, %d bytes)",
                     row["form"], row["status"], row["argmax_agreement"],
                     row["max_abs_logit_diff"], row["file_bytes"])
            rows.append(row)
    return rows


def not_exported_rows(reason: str, algorithm: str, opset: int, base: dict[str, Any],
                      paths: dict[str, str]) -> list[dict[str, Any]]:
    """A note in place of every form of a cell whose training did not finish (its model is
    never run), and the rows that say why."""
    note = f"{NOT_EXPORTED}{reason}\n"
    rows = []
    for form in EXPORT_FORMS:
        form.write_note(paths[form.output], note)
        if form.fp32_row or algorithm != FP32:
            rows.append({**base, "form": form.name, "status": (NOT_EXPORTED + reason)[:500],
                         "opset": opset, "file_bytes": 0, "packed_bytes": 0,
                         "checker_passed": False, "argmax_agreement": float("nan"),
                         "within_logit_tolerance": float("nan"),
                         "max_abs_logit_diff": float("nan"), "n_samples": 0,
                         "n_binarized_layers": 0, "n_binary_conv": 0})
    return rows
