"""The OpenVINO binary-engine form of a binarized model: deployability decided by trying.

OpenVINO's CPU plugin runs `BinaryConvolution` (XNOR-popcount, JIT kernels). Two files:

model.onnx: each binarized layer whose 1-bit decomposition holds (see
`bibench.export.qonnx.plan_binarized_layers`) becomes

    org.openvinotoolkit::FakeQuantize(x, t', t', 0, 1, levels=2) -> Conv(+-1 weights)
        -> Mul(2 * scale per channel) -> Add(bias - scale * conv(ones, +-1 weights))

  which the plugin's ConvToBinaryConv pass turns into BinaryConvolution.
  - Outputs 0/1: FakeQuantize with outputs -1/+1 is silently wrong (or fails to compile) on
    the CPU plugin; with 0/1 the graph means Conv(x01, W) with x01 zero padded.
  - t' = the float32 number just below the threshold t, so x > t' <=> x >= t: the sign(0) = +1
    convention of bibench (FakeQuantize maps x <= t' to the low output).
  - bibench pads the +-1 activations with 0 (neither +1 nor -1): sign(x) (*) W = 2 (x01 (*) W)
    - (1 (*) W), where 1 (*) W (ones, zero padded) differs from sum(W) at the borders. The Add
    holds that map (C x H x W where padding makes it vary), so the file matches PyTorch exactly,
    borders included; the spatial size is fixed by the example.
  - The weight scale (per layer or channel, times any constant per-channel output scale) is a
    per-channel Multiply, which the plugin fuses with the following BatchNorm.
  - Binarized Linear and Conv1d layers become 1x1 / (k x 1) convolutions.

model.xml / model.bin (IR, `binary_ir`): the same graph with each FakeQuantize -> Conv -> Mul ->
Add replaced by the explicit op BinaryConvolution(pad_value=0) -> Mul -> Add(bias), weights
stored as u1. pad_value 0 is bibench's padding inside the kernel, so the border maps go, and
with them the per-element Add that kept the plugin from fusing BatchNorm, the residual Add, the
clamp and the next FakeQuantize into the binary conv: this is the file to deploy and time.

Layers a binary engine cannot run (run-time activation re-scaling, spatial scales, non-threshold
input binarization) make the model not deployable, with the reason. Binarized layers OpenVINO
has no binary op for (grouped convs: BinaryConvolution has no groups) stay as the float
sign-and-multiply graph and are listed in lowering.json. A compiled model that executes fewer
BinaryConvolution layers than were written is a failure (BinaryFallbackError), never a result.

Telemetry: `import openvino` imports its model converter (openvino.tools.ovc), which creates
an openvino_telemetry session and sends an "import" event unless the user opted out. This
module blocks the openvino_telemetry package before OpenVINO is first imported (the converter
then uses its built-in no-op stub) and, should OpenVINO be imported already, withdraws the
session's consent: nothing here tries the network, and nothing is written to ~/intel.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bibench.algorithms.base import BinarizedLayer
from bibench.catalog import FP32
from bibench.export.qonnx import LayerPlan, export_lowered_onnx, plan_binarized_layers
from bibench.io import atomic_write
from bibench.latency.timing import (
    count_binary_convolutions,
    openvino_compile,
    openvino_core,
    openvino_module,
    runtime_layers,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from openvino import CompiledModel

    from bibench.export.forms import FormInput


OV_DOMAIN = "org.openvinotoolkit"
MODEL_FILE = "model.onnx"
IR_FILE = "model.xml"
IR_WEIGHTS_FILE = "model.bin"
LOWERING_FILE = "lowering.json"
NOT_DEPLOYABLE_FILE = "NOT_DEPLOYABLE.txt"


@dataclass(frozen=True)
class BinaryForm:
    deployable: bool
    reason: str  # "" when deployable
    n_binarized_layers: int  # layers the algorithm binarized in the model
    n_binary_conv: int  # BinaryConvolution layers executed by the compiled model
    onnx_bytes: int  # size of the binary-engine ONNX file (0 when not written)
    # storage with 1-bit packed weights: the size of the OpenVINO IR's .bin (its own weights
    # file, binary weights as u1) when deployable, else computed (bits/8 + float bytes of rest)
    packed_bytes: int
    # the IR as compiled for the check (for `batch` inputs): parity runs on it rather than
    # compiling the same file again
    compiled: Any = field(default=None, repr=False, compare=False)


class BinaryFallbackError(RuntimeError):
    """The compiled model runs fewer BinaryConvolution layers than binary layers were written
    (the engine silently fell back to float), or failed to compile the binary form."""


# --------------------------------------------------------------------------------------------
# Lowering
# --------------------------------------------------------------------------------------------


class _FakeQuantize01(torch.autograd.Function):
    """1 where x > threshold else 0; exported as OpenVINO's FakeQuantize(levels=2) 0/1 with
    input_low and input_high both the threshold (the same values in two tensors, whose shapes
    may differ: see OpenVINOBinaryConv's `variant`)."""

    @staticmethod
    def forward(ctx, x: Tensor, in_low: Tensor, in_high: Tensor, low: Tensor, high: Tensor
                ) -> Tensor:
        return torch.where(x > in_high, high, low)

    @staticmethod
    def symbolic(g, x, in_low, in_high, low, high):
        out = g.op(f"{OV_DOMAIN}::FakeQuantize", x, in_low, in_high, low, high, levels_i=2)
        out.setType(x.type())
        return out


# Shapes that broadcast alike against (N, C, H, W): identical FakeQuantize nodes on one input
# are merged by OpenVINO before ConvToBinaryConv, which then leaves every conv reading the
# shared node in float (seen with BERT's query/key/value). Layers that share an input get
# FakeQuantize constants of different shapes, so no two are identical.
_THRESHOLD_SHAPES = ((1, -1, 1, 1), (-1, 1, 1))
_LEVEL_SHAPES = ((1,), (), (1, 1, 1, 1))


def _pair(v, fill: int) -> tuple[int, int]:
    return (v[0], fill) if len(v) == 1 else (v[0], v[1])


def _conv_padding(layer: nn.Module) -> tuple[int, ...] | None:
    """Per spatial dim padding of a conv, None when asymmetric (padding="same", even kernel)."""
    if not isinstance(layer.padding, str):
        return tuple(layer.padding)
    rev = layer._reversed_padding_repeated_twice  # (last dim left, right, previous dim ...)
    pairs = [(rev[i], rev[i + 1]) for i in range(0, len(rev), 2)][::-1]
    return None if any(a != b for a, b in pairs) else tuple(a for a, _ in pairs)


def _engine_limit(plan: LayerPlan) -> str:
    """Why OpenVINO has no binary op for this (decomposable) layer, or ""."""
    layer = plan.layer
    if isinstance(layer, nn.Linear):
        if len(plan.input_shape) > 2:
            return "Linear on inputs of more than 3 dims is not lowered to a binary conv"
        return ""
    if layer.groups != 1:
        return "grouped convolution: OpenVINO's BinaryConvolution has no groups"
    if layer.weight.dim() not in (3, 4):
        return "only 1-d and 2-d convolutions are lowered"
    if _conv_padding(layer) is None:
        return "asymmetric padding ('same' with an even kernel) is not lowered"
    return ""


class OpenVINOBinaryConv(nn.Module):
    """One binarized layer in the form of the module docstring; the same numbers in PyTorch
    (FakeQuantize evaluated as a comparison), so the lowering is checked before export."""

    def __init__(self, plan: LayerPlan, variant: int = 0) -> None:
        super().__init__()
        layer = plan.layer
        self.kind = "linear" if isinstance(layer, nn.Linear) else f"conv{layer.weight.dim() - 2}d"
        signs = plan.signs
        if self.kind == "linear":
            signs = signs[:, :, None, None]
            self.stride, self.padding, self.dilation = (1, 1), (0, 0), (1, 1)
            self.pad: tuple[int, ...] = ()
            self.pad_mode = "zeros"
        else:
            if self.kind == "conv1d":
                signs = signs[..., None]
            self.stride = _pair(layer.stride, 1)
            self.dilation = _pair(layer.dilation, 1)
            self.pad_mode = layer.padding_mode
            self.padding = _pair(_conv_padding(layer), 0)
            self.pad = ()
            if self.pad_mode != "zeros":  # reflect / replicate / circular commute with sign
                self.pad = tuple(layer._reversed_padding_repeated_twice)
                if self.kind == "conv1d":
                    self.pad = (0, 0) + self.pad
                self.padding = (0, 0)
        self.register_buffer("signs", signs.contiguous().clone())
        below = torch.nextafter(plan.threshold.float(), torch.tensor(-math.inf))
        levels, thresholds = divmod(variant, len(_THRESHOLD_SHAPES) ** 2)
        if levels >= len(_LEVEL_SHAPES):
            raise ValueError(f"{plan.name}: more binary layers share one input than supported")
        low_shape, high_shape = divmod(thresholds, len(_THRESHOLD_SHAPES))
        self.register_buffer("in_low", below.view(_THRESHOLD_SHAPES[low_shape]).clone())
        self.register_buffer("in_high", below.view(_THRESHOLD_SHAPES[high_shape]).clone())
        self.register_buffer("low", torch.zeros(_LEVEL_SHAPES[levels]))
        self.register_buffer("high", torch.ones(_LEVEL_SHAPES[levels]))
        with torch.no_grad():  # 1 (*) W with the layer's own padding: the border correction
            ones = torch.ones((1, *plan.input_shape), dtype=plan.signs.dtype)
            border = type(layer)._product(layer, ones, plan.signs)
        border = self._to4d(border)
        mult = plan.multiplier.view(1, -1, 1, 1)
        add = -mult * border
        if layer.bias is not None:
            add = add + layer.bias.detach().view(1, -1, 1, 1)
        if torch.equal(add, add[:, :, :1, :1].expand_as(add)):
            add = add[:, :, :1, :1]
        self.register_buffer("mult", 2.0 * mult)
        self.register_buffer("add", add.contiguous())

    def _to4d(self, y: Tensor) -> Tensor:
        if self.kind == "linear":
            return y[:, :, None, None] if y.dim() == 2 else y.transpose(1, 2)[..., None]
        return y[..., None] if self.kind == "conv1d" else y

    def forward(self, x: Tensor) -> Tensor:
        three_d_linear = self.kind == "linear" and x.dim() == 3
        x = self._to4d(x)
        if self.pad:
            x = F.pad(x, self.pad, mode=self.pad_mode)
        x01 = _FakeQuantize01.apply(x, self.in_low, self.in_high, self.low, self.high)
        y = F.conv2d(x01, self.signs, None, self.stride, self.padding, self.dilation)
        y = y * self.mult + self.add
        if self.kind == "linear":
            return y.squeeze(-1).transpose(1, 2) if three_d_linear else y.flatten(1)
        return y.squeeze(-1) if self.kind == "conv1d" else y


def _check_lowered(module: OpenVINOBinaryConv, plan: LayerPlan) -> None:
    """The lowered layer must reproduce the binarized layer on the example's activations."""
    x = plan.example_input
    with torch.no_grad():
        want, got = plan.layer(x), module(x)
    tol = 1e-4 * max(1.0, float(want.abs().max()))
    if not torch.allclose(got, want, rtol=1e-5, atol=tol):
        raise AssertionError(
            f"{plan.name}: the OpenVINO lowering differs from the layer by "
            f"{float((got - want).abs().max()):.3g}"
        )


def not_deployable_reason(plans: list[LayerPlan], algorithm: str) -> str:
    """One line per distinct problem: how many layers have it, and the first of them."""
    by_problem: dict[str, list[str]] = {}
    for p in plans:
        if p.problem:
            by_problem.setdefault(p.problem, []).append(p.name)
    parts = [
        f"{len(names)} of {len(plans)} binarized layers ({names[0]}, ...): {problem}"
        for problem, names in by_problem.items()
    ]
    return f"{algorithm}: " + "; ".join(parts) if parts else ""


# --------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------


def computed_packed_bytes(model: nn.Module) -> int:
    """Bytes with binarized weights packed 1 bit each and everything else float32.

    A binarized layer stores its +-1 weights in bits plus its bias and the algorithm's deployed
    full-precision extras (extra_fp_params: scales, thresholds; training-only modules such as
    FDA's noise MLPs are not deployed); other modules store their parameters and float buffers.
    """
    total = 0
    binarized = [m for m in model.modules() if isinstance(m, BinarizedLayer)]
    inside = {id(sub) for m in binarized for sub in m.modules()}
    for m in binarized:
        total += math.ceil(m.weight.numel() / 8)
        total += 4 * (m.algorithm.extra_fp_params(m) + (m.bias.numel() if m.bias is not None
                                                         else 0))
    for m in model.modules():
        if id(m) in inside:
            continue
        tensors = list(m.parameters(recurse=False)) + [
            b for b in m.buffers(recurse=False) if b.is_floating_point()
        ]
        total += sum(4 * t.numel() for t in tensors)
    return total


# --------------------------------------------------------------------------------------------
# OpenVINO runtime
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# The IR: explicit BinaryConvolution with 1-bit weights and bibench's zero padding
# --------------------------------------------------------------------------------------------


def _const(node) -> np.ndarray | None:
    return node.get_data() if node.get_type_name() == "Constant" else None


def _border_map(weights: np.ndarray, conv, in_hw: tuple[int, int]) -> np.ndarray:
    """1 (*) W with the conv's own zero padding: (1, O, H_out, W_out)."""
    (pt, pl), (pb, pr) = conv.get_pads_begin(), conv.get_pads_end()
    ones = F.pad(torch.ones(1, weights.shape[1], *in_hw), (pl, pr, pt, pb))
    with torch.no_grad():
        out = F.conv2d(ones, torch.from_numpy(weights.copy()), None, tuple(conv.get_strides()), 0,
                       tuple(conv.get_dilations()))
    return out.numpy()


def binary_ir(onnx_path: str | Path, xml_path: str | Path) -> int:
    """Write the OpenVINO IR of a binary-form ONNX file with every FakeQuantize(0/1) -> Conv(+-1)
    -> Multiply -> Add(border correction) replaced by BinaryConvolution(pad_value=0) ->
    Multiply -> Add(bias); returns how many were replaced.

    BinaryConvolution with pad_value 0 pads the +-1 activations with 0 inside the kernel, which
    is bibench's padding, so the border maps leave the graph (and the run time: the per-element
    Add kept the plugin from fusing BatchNorm, residual Add, clamp and the next FakeQuantize
    into the binary conv). The weights are stored as u1: the .bin holds them at 1 bit each.
    """
    ov = openvino_module()
    import openvino.opset1 as ops

    model = openvino_core().read_model(str(onnx_path))
    replaced = 0
    keep_alive = []  # ov.Tensor shares the numpy buffer: it must outlive the saved model
    for conv in model.get_ordered_ops():
        weights = _binary_weights(conv)
        if weights is None:
            continue
        fq = conv.input_value(0).get_node()
        (mul,) = [i.get_node() for i in conv.output(0).get_target_inputs()]
        (add,) = [i.get_node() for i in mul.output(0).get_target_inputs()]
        mult = _const(mul.input_value(1).get_node())
        shift = _const(add.input_value(1).get_node())
        if mul.get_type_name() != "Multiply" or add.get_type_name() != "Add" or (
            mult is None or shift is None
        ):
            raise ValueError(f"{conv.get_friendly_name()}: not the binary form's Mul -> Add")
        in_shape = conv.get_input_partial_shape(0)
        if in_shape[2].is_dynamic or in_shape[3].is_dynamic:
            raise ValueError(f"{conv.get_friendly_name()}: spatial input size is dynamic")
        border = _border_map(weights, conv, (in_shape[2].get_length(), in_shape[3].get_length()))
        # y = mult * conv01 + shift, conv01 = (binconv_pad0 + border) / 2
        half = mult / 2.0
        bias_map = shift + half * border
        bias = np.median(bias_map, axis=(2, 3), keepdims=True).astype(np.float32)
        tol = 1e-4 * max(1.0, float(np.abs(bias_map).max()))
        if np.abs(bias_map - bias).max() > tol:
            raise ValueError(f"{conv.get_friendly_name()}: border correction is not the padding")
        bits = np.packbits((weights > 0).reshape(-1).astype(np.uint8), bitorder="little")
        keep_alive.append(bits)
        packed = ov.op.Constant(ov.Tensor(bits, ov.Shape(list(weights.shape)), ov.Type.u1))
        binconv = ops.binary_convolution(
            fq.output(0), packed, conv.get_strides(), conv.get_pads_begin(),
            conv.get_pads_end(), conv.get_dilations(), "xnor-popcount", 0.0,
        )
        binconv.set_friendly_name(conv.get_friendly_name())
        out = ops.add(ops.multiply(binconv, half.astype(np.float32)), bias)
        out.set_friendly_name(add.get_friendly_name())
        add.output(0).replace(out.output(0))
        replaced += 1
    model.validate_nodes_and_infer_types()
    _save_ir(ov, model, Path(xml_path))
    return replaced


def _binary_weights(conv) -> np.ndarray | None:
    """The +-1 weights of a Convolution fed by a 2-level FakeQuantize to 0/1 (the binary
    form's pattern), or None for any other node."""
    if conv.get_type_name() != "Convolution":
        return None
    fq = conv.input_value(0).get_node()
    weights = _const(conv.input_value(1).get_node())
    if fq.get_type_name() != "FakeQuantize" or weights is None:
        return None
    lows = [_const(fq.input_value(i).get_node()) for i in (3, 4)]
    if fq.get_levels() != 2 or any(v is None for v in lows) or not (
        np.all(lows[0] == 0) and np.all(lows[1] == 1)
    ):
        return None
    return weights if np.all(np.abs(weights) == 1) else None


def _save_ir(ov, model, xml_path: Path) -> None:
    """model.xml and model.bin, each replaced atomically."""
    def write(tmp: str) -> None:
        tmp_xml = Path(tmp).with_suffix(".xml")
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        tmp_xml.with_suffix(".bin").replace(xml_path.with_suffix(".bin"))
        tmp_xml.replace(tmp)

    atomic_write(xml_path, write)


# --------------------------------------------------------------------------------------------
# The binary form
# --------------------------------------------------------------------------------------------


def openvino_lowered(model: nn.Module, plans: list[LayerPlan]) -> tuple[nn.Module, list[dict]]:
    """A copy of `model` with each engine-expressible binarized layer lowered; plus one record
    per binarized layer (lowered to a binary conv, or kept as a float graph and why)."""
    model = copy.deepcopy(model).eval()
    records = []
    readers: dict[int, int] = {}  # input tensor id -> binary layers lowered on it so far
    for plan in plans:
        limit = _engine_limit(plan)
        record = {"layer": plan.name, "type": type(plan.layer).__name__,
                  "threshold_shift": bool(plan.threshold.any()),
                  "output_scale": plan.output_scale, "binary": not limit, "float_reason": limit}
        if not limit:
            variant = readers.get(plan.input_id, 0)
            readers[plan.input_id] = variant + 1
            lowered = OpenVINOBinaryConv(plan, variant)
            _check_lowered(lowered, plan)
            model.set_submodule(plan.name, lowered, strict=True)
        records.append(record)
    for name, module in model.named_modules():
        if hasattr(module, "algorithm") and not isinstance(module, BinarizedLayer):
            records.append({
                "layer": name, "type": type(module).__name__, "binary": False,
                "float_reason": "product of two run-time activations (bi-attention): "
                                "BinaryConvolution needs constant weights",
            })
    return model, records


def _conv_node_of_layer(onnx_path: Path) -> dict[str, str]:
    """Binarized layer name -> name of its Conv node in the binary-form ONNX file (the conv
    reads the layer's `signs` buffer, named after the layer by the exporter)."""
    import onnx

    return {
        node.input[1].removesuffix(".signs"): node.name
        for node in onnx.load(str(onnx_path)).graph.node
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1].endswith(".signs")
    }


def _binary_layer_names(compiled: CompiledModel) -> set[str]:
    names: set[str] = set()
    for layer in runtime_layers(compiled):
        if layer.get("layerType") == "BinaryConvolution":
            names.update(layer.get("originalLayersNames", "").split(","))
    return names


def export_openvino_binary(model: nn.Module, example: Tensor, out_dir: str | Path,
                           algorithm: str, *, threads: int = 1, batch: int = 1) -> BinaryForm:
    """Write and check the OpenVINO binary form of a binarized model (eval mode).

    Deployable: out_dir/model.onnx (FakeQuantize + Conv form), out_dir/model.xml + model.bin
    (OpenVINO IR with explicit BinaryConvolution and u1 weights: the file to deploy and time;
    packed_bytes is the size of its .bin) and lowering.json (per-layer record). Both files are
    compiled and must execute one BinaryConvolution per lowered layer, else BinaryFallbackError;
    the IR's compiled model (`threads`, `batch` inputs) is returned for the caller to run.
    Not deployable: out_dir/NOT_DEPLOYABLE.txt holding the reason.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    plans = plan_binarized_layers(model, example)
    reason = not_deployable_reason(plans, algorithm)
    if not plans:
        reason = f"{algorithm}: the model has no binarized layer"
    computed = computed_packed_bytes(model)
    if reason:
        for stale in (MODEL_FILE, IR_FILE, IR_WEIGHTS_FILE, LOWERING_FILE):
            (out_dir / stale).unlink(missing_ok=True)
        atomic_write(out_dir / NOT_DEPLOYABLE_FILE, lambda tmp: Path(tmp).write_text(reason + "\n"))
        return BinaryForm(False, reason, len(plans), 0, 0, computed)

    (out_dir / NOT_DEPLOYABLE_FILE).unlink(missing_ok=True)
    lowered, records = openvino_lowered(model, plans)
    onnx_path, ir_path = out_dir / MODEL_FILE, out_dir / IR_FILE
    export_lowered_onnx(lowered, example, onnx_path, {OV_DOMAIN: 1})
    expected = sum(r["binary"] for r in records)
    n_onnx, _ = _checked_binary_count(onnx_path, expected, records, algorithm)
    replaced = binary_ir(onnx_path, ir_path)
    if replaced != expected:
        raise BinaryFallbackError(f"{algorithm}: {replaced} of {expected} binary convs found in "
                                  f"{onnx_path} for the IR")
    n_ir, compiled = _checked_binary_count(ir_path, expected, records, algorithm, threads, batch)
    summary = {
        "algorithm": algorithm,
        "n_binarized_layers": len(plans),
        "n_binary_conv": {"onnx": n_onnx, "ir": n_ir},
        "onnx_bytes": onnx_path.stat().st_size,
        "ir_bin_bytes": (out_dir / IR_WEIGHTS_FILE).stat().st_size,
        "computed_packed_bytes": computed,
        "layers": records,
    }
    atomic_write(out_dir / LOWERING_FILE,
                 lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1) + "\n"))
    return BinaryForm(True, "", len(plans), n_ir, summary["onnx_bytes"], summary["ir_bin_bytes"],
                      compiled)


def _checked_binary_count(path: Path, expected: int, records: list[dict], algorithm: str,
                          threads: int = 1, batch: int = 1) -> tuple[int, Any]:
    """Compile `path` and count its BinaryConvolution layers, which must be `expected`;
    (that count, the compiled model).

    Counted before any inference: a 0/1 FakeQuantize left feeding a float conv can crash it.
    """
    try:
        compiled = openvino_compile(path, threads=threads, batch=batch)
    except RuntimeError as err:
        raise BinaryFallbackError(f"{algorithm}: OpenVINO failed to compile {path}: {err}"
                                  ) from err
    n_binary = count_binary_convolutions(compiled)
    if n_binary != expected:
        running = _binary_layer_names(compiled)
        conv_of = _conv_node_of_layer(path.with_name(MODEL_FILE))
        missing = [r["layer"] for r in records
                   if r["binary"] and conv_of.get(r["layer"]) not in running]
        raise BinaryFallbackError(
            f"{algorithm}: {path.name}: {n_binary} BinaryConvolution layers execute but "
            f"{expected} binary layers were written (OpenVINO fell back to float; not run as "
            f"binary: {', '.join(missing) or 'unknown'})"
        )
    return n_binary, compiled


def write_form(f: FormInput) -> dict | None:
    """The OpenVINO binary IR (BinaryConvolution), checked on the binary engine as compiled
    for the export's own check (one compilation); None for FP32, whose engines time
    model.onnx (a note in the folder says so)."""
    from bibench.export.onnx import logit_parity, parity_row

    folder = Path(f.path)
    folder.mkdir(parents=True, exist_ok=True)
    if f.algorithm == FP32:
        (folder / "FULL_PRECISION.txt").write_text(
            "full-precision model: engines time model.onnx\n")
        return None
    try:
        form = export_openvino_binary(f.graph, f.x[:1], folder, f.algorithm, threads=f.threads,
                                      batch=len(f.x))
        status = "not deployable: " + form.reason
    except BinaryFallbackError as err:  # the engine ran float where binary was written
        log.error("%s", err)
        status = f"failed: {err}"[:500]
        form = BinaryForm(False, status, 0, 0, 0, 0)
    row = {**f.base, "form": "openvino_binary", "file_bytes": form.onnx_bytes,
           "packed_bytes": form.packed_bytes, "n_binarized_layers": form.n_binarized_layers,
           "n_binary_conv": form.n_binary_conv, "argmax_agreement": float("nan"),
           "within_logit_tolerance": float("nan"), "max_abs_logit_diff": float("nan"),
           "n_samples": 0, "status": status}
    if form.deployable:  # the IR is the file the latency job times
        got = np.asarray(form.compiled(np.ascontiguousarray(f.x.numpy()))[0])
        row.update(parity_row("openvino_binary",
                              logit_parity(f.reference, got, f.settings["logit_atol"]),
                              f.settings, f.enforce, logits=False))
    return row
