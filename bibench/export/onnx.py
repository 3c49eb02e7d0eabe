"""ONNX export of a cell's model, checked by onnx.checker and by parity with PyTorch.

Parity is judged on the trained model over the test set: the argmax agreement and the largest
logit difference. Untrained sign networks are chaotic (inputs near zero flip sign between
engines), so the agreement threshold, not an exact match, decides.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

from bibench.io import atomic_write

if TYPE_CHECKING:
    from bibench.export.forms import FormInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parity:
    argmax_agreement: float
    max_abs_logit_diff: float
    n_samples: int
    within_tolerance: float = float("nan")  # fraction of samples within the logit tolerance


def logit_parity(ref: np.ndarray, got: np.ndarray, atol: float) -> Parity:
    """Compare an engine's outputs with PyTorch's, sample by sample.

    A sample is within tolerance when every logit differs by at most atol times the sample's
    logit scale (max(1, max |logit|)): binarized nets carry large logits, and a sign that flips
    on a value at the threshold moves a whole sample, which the fraction then shows.
    """
    if ref.shape != got.shape:
        raise ValueError(f"engine output shape {got.shape} differs from PyTorch's {ref.shape}")
    # (N, classes) logits; a detector's raw output is compared image by image as one vector
    ref, got = ref.reshape(len(ref), -1), got.reshape(len(got), -1)
    diff = np.abs(ref - got).max(axis=1)
    scale = np.maximum(1.0, np.abs(ref).max(axis=1))
    return Parity(
        argmax_agreement=float((ref.argmax(1) == got.argmax(1)).mean()),
        max_abs_logit_diff=float(diff.max()) if len(diff) else 0.0,
        n_samples=len(ref),
        within_tolerance=float((diff <= atol * scale).mean()),
    )


def export_onnx(model: nn.Module, example: Tensor, path: str | Path, *, opset: int = 18,
                exporter: str = "torchscript") -> None:
    """Export with a dynamic batch dim; the file appears atomically.

    "torchscript" (torch's legacy exporter) is fast and keeps binarized weights as explicit
    sign(w) * scale nodes; "dynamo" constant-folds sign(w) and the following BatchNorm into the
    conv weights, so the file no longer shows +-1 weights.
    """
    model = model.eval()
    if exporter not in ("torchscript", "dynamo"):
        raise ValueError(f"unknown ONNX exporter {exporter!r}")

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                program = torch.onnx.export(
                    model, (example,), dynamo=True, opset_version=opset, input_names=["input"],
                    output_names=["logits"], verbose=False,
                    dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                )
                program.save(tmp)
            else:
                torch.onnx.export(
                    model, (example,), tmp, dynamo=False, opset_version=opset,
                    input_names=["input"], output_names=["logits"],
                    dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                )

    atomic_write(path, write)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def ort_predict(session: ort.InferenceSession, x: Tensor, batch_size: int = 256) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate(
        [session.run(None, {name: xb.numpy()})[0] for xb in x.split(batch_size)]
    )


def parity_row(form: str, parity: Any, settings: dict[str, Any], enforce: bool, *,
               logits: bool = True) -> dict[str, Any]:
    """A form's parity numbers and status: below the configured agreement it failed.

    Float forms must match PyTorch's logits too; the binary engine and a binarized model's
    QONNX graph accumulate in their own order, so a pre-sign value at the threshold may flip and
    move a sample's logits: for them the argmax decides.
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


def write_form(f: FormInput) -> dict:
    """The float ONNX graph, checked with onnxruntime on every parity sample: the graph as
    written (graph rewrites off). onnxruntime's conv + BatchNorm fusion rounds differently,
    which flips the signs of values near 0 in a binarized network and moves its logits (a
    trained XNOR++ PointNet: 21 of 100 samples beyond tolerance, argmax 99/100; without the
    rewrites the logits match to 6e-6). A detector's graphs: bibench.export.detection."""
    from bibench.latency import timing

    export_onnx(f.model, f.x[:1], f.path, opset=f.settings["opset"],
                exporter=f.settings["exporter"])
    session = timing.ort_session(f.path, optimize=False)
    parity = logit_parity(f.reference, ort_predict(session, f.x), f.settings["logit_atol"])
    size = Path(f.path).stat().st_size
    return {**f.base, **parity_row("onnx", parity, f.settings, f.enforce), "file_bytes": size,
            "packed_bytes": size}
