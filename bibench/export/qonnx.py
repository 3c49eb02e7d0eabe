"""The QONNX form of a binarized model, and the per-layer analysis both 1-bit forms share.

QONNX (Pappalardo et al.; what Brevitas exports) writes a 1-bit tensor as a `BipolarQuant` node
of domain `qonnx.custom_op.general`: out = where(x >= 0, 1, -1) * scale. Here every binarized
layer becomes

    BipolarQuant(x - threshold, 1) -> Conv / MatMul / Gemm <- BipolarQuant(+-1 weights, 1)
        -> Mul(weight scale per output channel) -> [the algorithm's output re-scaling] -> + bias

so the 1-bit tensors are explicit and every scale is a visible Mul. The output re-scaling is
exported as the algorithm computes it (XNOR's run-time K map, XNOR++'s spatial Gamma): QONNX is
a description format, so every algorithm has a QONNX form, deployable or not. The export check
runs the file in onnxruntime with `BipolarQuant` given its QONNX definition as an ONNX function
(`qonnx_onnxruntime_predict`); qonnx's own executor (numpy for the custom op, onnxruntime node
by node, 5-25x slower) is the reference the tests hold that runner to
(tests/export_reference.py).

`plan_binarized_layers` decomposes each binarized layer by running it, not by reading the
algorithm's declared facts: it checks that the layer computes exactly
sign(x - t) (*) (+-1) * scale with constant per-channel t and scale. The OpenVINO form
(`bibench.export.openvino`) lowers the layers that pass, and reports the first thing a layer
needs that a binary engine cannot express.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from bibench.algorithms.base import BinarizedLayer, BinaryMatmul, channel_view, hard_sign
from bibench.catalog import FP32
from bibench.io import atomic_write

if TYPE_CHECKING:
    from bibench.export.forms import FormInput

QONNX_DOMAIN = "qonnx.custom_op.general"

# Output re-scaling kinds found by plan_binarized_layers
SCALE_NONE, SCALE_CHANNEL, SCALE_SPATIAL, SCALE_RUNTIME = "none", "channel", "spatial", "runtime"


# --------------------------------------------------------------------------------------------
# Per-layer analysis: what each binarized layer really computes
# --------------------------------------------------------------------------------------------


@dataclass
class LayerPlan:
    """A binarized layer decomposed as y = (sign(x - threshold) (*) signs) * multiplier + bias.

    threshold: per input channel; signs: exactly +-1, shaped like the weight; multiplier: per
    output channel (weight scale times any constant per-channel output scale). output_scale is
    how the algorithm re-scales the product (SCALE_*); problem is "" when the decomposition is
    exact with constant per-channel factors, else the first thing that breaks it.
    input_shape / output_shape are per sample, as the example batch reached the layer.
    """

    name: str
    layer: BinarizedLayer
    threshold: Tensor
    signs: Tensor
    weight_scale: Tensor
    multiplier: Tensor
    output_scale: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    problem: str = ""
    gain: Tensor | None = None  # constant output scale map (1, *output_shape), if any
    example_input: Tensor | None = None  # what the layer received from the example batch
    input_id: int = 0  # id() of that input tensor: layers reading the same tensor share it


def _channel_dim(layer: nn.Module) -> int:
    return -1 if isinstance(layer, nn.Linear) else 1


def _per_channel(values: Tensor, layer: nn.Module) -> Tensor | None:
    """The per-channel vector of `values` (a layer-output-shaped map) if it is constant over
    every other dim, else None."""
    dim = _channel_dim(layer)
    moved = values.movedim(dim, -1).reshape(-1, values.shape[dim])
    first = moved[0]
    return first.clone() if torch.equal(moved, first.expand_as(moved)) else None


def _product(layer: BinarizedLayer, x: Tensor, weight: Tensor) -> Tensor:
    return type(layer)._product(layer, x, weight)


def _capture_inputs(model: nn.Module, example: Tensor) -> dict[str, tuple[Tensor, int]]:
    """The input each binarized layer receives in one eval-mode forward pass of `example`, and
    the id() of that tensor (equal ids: maybe the same tensor; different: never)."""
    inputs: dict[str, tuple[Tensor, int]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, BinarizedLayer):

            def hook(_m, args, name=name):
                if name not in inputs:
                    inputs[name] = (args[0].detach().clone(), id(args[0]))

            handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return inputs


def _plan_layer(name: str, layer: BinarizedLayer, x: Tensor) -> LayerPlan:
    algo = layer.algorithm
    cin = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
    threshold = getattr(layer, "threshold", None)  # ReActNet's learned per-channel shift
    if not (isinstance(threshold, Tensor) and threshold.shape == (cin,)):
        threshold = torch.zeros(cin, dtype=x.dtype)
    threshold = threshold.detach().clone()
    weight = layer.binary_weight()
    dims = tuple(range(1, weight.dim()))
    weight_scale = weight.abs().amax(dim=dims)
    signs = torch.where(weight < 0, -1.0, 1.0).to(weight.dtype)
    with torch.no_grad():
        xb = algo.binarize_input(layer, x)
        y1 = _product(layer, xb, weight)
        scaled = algo.scale_output(layer, x, y1)
        gain = algo.scale_output(layer, x, torch.ones_like(y1))
    plan = LayerPlan(
        name=name, layer=layer, threshold=threshold, signs=signs, weight_scale=weight_scale,
        multiplier=weight_scale.clone(), output_scale=SCALE_NONE,
        input_shape=tuple(x.shape[1:]), output_shape=tuple(y1.shape[1:]),
    )
    view = (-1,) + (1,) * (weight.dim() - 1)
    if not torch.equal(xb, hard_sign(x - channel_view(layer, threshold))):
        plan.problem = ("its activation binarization is not sign(x - constant per-channel "
                        "threshold), the only input binarization of binary engines")
        return plan
    if not torch.equal(weight.abs(), weight_scale.view(view).expand_as(weight)):
        plan.problem = "its binary weights are not +-(one constant scale per output channel)"
        return plan
    _plan_output_scale(plan, x, y1, scaled, gain)
    return plan


def _plan_output_scale(plan: LayerPlan, x: Tensor, y1: Tensor, scaled: Tensor, gain: Tensor
                       ) -> None:
    """How the layer re-scales its binary product `y1` into `scaled`: none, a constant
    per-channel factor (foldable), a constant spatial map or a factor computed at run time
    (both not deployable: `plan.problem` says why)."""
    layer, algo = plan.layer, plan.layer.algorithm
    if torch.equal(scaled, y1):
        return
    if not torch.allclose(scaled, y1 * gain, rtol=1e-5, atol=1e-6 * float(y1.abs().max())):
        plan.problem = "its output re-scaling is not a multiplication by a scale map"
        return
    # Does the scale depend on the input? Try it on other inputs of the same batch shape.
    with torch.no_grad():
        others = [x * 2.0, x.flip(0), torch.randn_like(x)]
        varies = any(
            not torch.equal(algo.scale_output(layer, o, torch.ones_like(y1)), gain)
            for o in others
        )
    if varies:
        plan.output_scale = SCALE_RUNTIME
        plan.problem = (
            "its output is re-scaled by a factor computed from the layer input at run time "
            "(activation re-scaling, e.g. XNOR's K map): a binary engine's conv only applies "
            "constant per-channel factors after the popcount"
        )
        return
    plan.gain = gain[:1].clone()
    per_channel = _per_channel(gain, layer)
    if per_channel is None:
        plan.output_scale = SCALE_SPATIAL
        plan.problem = (
            "its output scale varies over the output positions (a constant C x H x W map, "
            "e.g. XNOR++'s Gamma): it cannot fold into BatchNorm or the binary conv's "
            "per-channel output transform"
        )
        return
    plan.output_scale = SCALE_CHANNEL
    plan.multiplier = plan.weight_scale * per_channel


PLAN_SAMPLES = 4  # samples of the example batch the analysis runs on (memory: kept per layer)


def plan_binarized_layers(model: nn.Module, example: Tensor) -> list[LayerPlan]:
    """Decompose every binarized layer of `model` (eval mode) on the layer inputs that the
    first PLAN_SAMPLES samples of `example` produce; each plan is verified against the layer's
    own output."""
    model.eval()
    inputs = _capture_inputs(model, example[:PLAN_SAMPLES])
    plans = []
    for name, layer in model.named_modules():
        if not isinstance(layer, BinarizedLayer):
            continue
        if name not in inputs:
            raise ValueError(f"binarized layer {name!r} is not reached by the example input")
        x, plan_input_id = inputs[name]
        plan = _plan_layer(name, layer, x)
        plan.example_input, plan.input_id = x, plan_input_id
        if not plan.problem:
            _verify_plan(plan, x)
            plan.problem = _problem_at_other_values(name, layer, x)
        plans.append(plan)
    return plans


def _problem_at_other_values(name: str, layer: BinarizedLayer, x: Tensor) -> str:
    """The layer's problem when its learnable parameters besides weight and bias take other
    values than now. A form that holds only at the initial values (XNOR++'s Gamma starts as all
    ones) is not a property of the algorithm: the decision must hold for any trained values."""
    extra = [n for n, _ in layer.named_parameters() if n not in ("weight", "bias")]
    if not extra:
        return ""
    other = copy.deepcopy(layer)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n in extra:
            p = other.get_parameter(n)
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            p.mul_(1.0 + 0.5 * noise).add_(0.1 * noise)
    plan = _plan_layer(name, other, x)
    if not plan.problem:
        return ""
    return f"{plan.problem} (found with its learned parameters {', '.join(extra)} moved off " \
           "their current values)"


def _verify_plan(plan: LayerPlan, x: Tensor) -> None:
    """The decomposition must reproduce the layer's output (up to float rounding)."""
    layer = plan.layer
    with torch.no_grad():
        want = layer(x)
        got = _product(layer, hard_sign(x - channel_view(layer, plan.threshold)), plan.signs)
        got = got * channel_view(layer, plan.multiplier)
        if layer.bias is not None:
            got = got + channel_view(layer, layer.bias)
    tol = 1e-5 * max(1.0, float(want.abs().max()))
    if not torch.allclose(got, want, rtol=1e-5, atol=tol):
        raise AssertionError(
            f"{plan.name}: the 1-bit decomposition differs from the layer by "
            f"{float((got - want).abs().max()):.3g}"
        )


# --------------------------------------------------------------------------------------------
# The QONNX form
# --------------------------------------------------------------------------------------------


class _BipolarQuant(torch.autograd.Function):
    """where(x >= 0, 1, -1) * scale; exported as QONNX's BipolarQuant node."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor) -> Tensor:
        return hard_sign(x) * scale

    @staticmethod
    def symbolic(g, x, scale):
        out = g.op(f"{QONNX_DOMAIN}::BipolarQuant", x, scale)
        out.setType(x.type())
        return out


def bipolar_quant(x: Tensor, scale: Tensor) -> Tensor:
    return _BipolarQuant.apply(x, scale)


class QONNXBinaryLayer(nn.Module):
    """A binarized layer written with explicit 1-bit tensors (see the module docstring)."""

    def __init__(self, plan: LayerPlan) -> None:
        super().__init__()
        layer = plan.layer
        self._layer = (layer,)  # geometry and scale_output; not a submodule (no FP weights)
        self.register_buffer("unit", torch.ones((), dtype=plan.signs.dtype))
        self.register_buffer("signs", plan.signs.clone())
        self.register_buffer("weight_scale", channel_view(layer, plan.weight_scale).clone())
        self.shift = bool(plan.threshold.any())
        self.register_buffer("threshold", channel_view(layer, plan.threshold).clone())
        self.register_buffer(
            "bias", None if layer.bias is None else channel_view(layer, layer.bias).detach()
        )
        # a constant output scale is an explicit Mul; a run-time one is computed as the
        # algorithm computes it (XNOR's K: Abs, ReduceMean, a box-filter Conv, Mul)
        self.runtime_scale = plan.output_scale == SCALE_RUNTIME
        self.register_buffer("gain", None if plan.gain is None else plan.gain.clone())

    def forward(self, x: Tensor) -> Tensor:
        layer = self._layer[0]
        xb = bipolar_quant(x - self.threshold if self.shift else x, self.unit)
        y = _product(layer, xb, bipolar_quant(self.signs, self.unit)) * self.weight_scale
        if self.runtime_scale:
            y = layer.algorithm.scale_output(layer, x, y)
        elif self.gain is not None:
            y = y * self.gain
        return y if self.bias is None else y + self.bias


class QONNXBinaryMatmul(nn.Module):
    """BinaryMatmul (bi-attention) with both operands as BipolarQuant nodes."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("unit", torch.ones(()))

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.matmul(bipolar_quant(a, self.unit), bipolar_quant(b, self.unit))


def qonnx_lowered(model: nn.Module, example: Tensor) -> nn.Module:
    """A copy of `model` (eval mode) whose binarized layers are QONNXBinaryLayer modules."""
    model = copy.deepcopy(model).eval()
    for plan in plan_binarized_layers(model, example):
        model.set_submodule(plan.name, QONNXBinaryLayer(plan), strict=True)
    for name, module in list(model.named_modules()):
        if type(module) is BinaryMatmul:
            model.set_submodule(name, QONNXBinaryMatmul(), strict=True)
    return model


def export_lowered_onnx(model: nn.Module, example: Tensor, path: str | Path,
                        custom_opsets: dict[str, int], opset: int = 18) -> None:
    """torch's legacy (TorchScript) exporter with a dynamic batch dim, written atomically.

    The legacy exporter keeps custom-op symbolics and constant tensors as they are (the dynamo
    exporter folds sign(w) into the next layer's weights)."""

    with torch.no_grad():  # a detector's graph has several outputs: each a batch dim
        out = model(example)
    extra = 0 if torch.is_tensor(out) else len(out) - 1
    outputs = ["logits"] + [f"output{i}" for i in range(1, 1 + extra)]

    def write(tmp: str) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), tmp, dynamo=False, opset_version=opset,
                input_names=["input"], output_names=outputs,
                dynamic_axes={name: {0: "batch"} for name in ["input", *outputs]},
                custom_opsets=custom_opsets,
            )

    atomic_write(path, write)
    onnx.checker.check_model(onnx.load(str(path)))


def export_qonnx(model: nn.Module, example: Tensor, path: str | Path) -> None:
    """Write the QONNX form of a binarized model (eval mode) to `path`, atomically."""
    lowered = qonnx_lowered(model, example)
    export_lowered_onnx(lowered, example, path, {QONNX_DOMAIN: 1})


def _ir_mismatch(message: str) -> str:
    """Why qonnx's per-node models fail to load: onnx newer than onnxruntime."""
    import onnx
    import onnxruntime

    return (f"onnx {onnx.__version__} writes ONNX IR version {onnx.IR_VERSION}, which "
            f"onnxruntime {onnxruntime.__version__} cannot load ({message.splitlines()[-1]}): "
            "install onnx and onnxruntime of matching releases (pip install -U onnxruntime, "
            "or an older onnx)")


def _bipolar_quant_function(opset: int) -> onnx.FunctionProto:
    """BipolarQuant as qonnx defines it (qonnx.custom_op.general.bipolar_quant.binary_quant:
    where(x >= 0, 1, -1) * scale), written in standard ONNX ops for onnxruntime."""
    from onnx import TensorProto, helper

    def constant(name: str, value: float) -> onnx.NodeProto:
        tensor = helper.make_tensor(name, TensorProto.FLOAT, [], [value])
        return helper.make_node("Constant", [], [name + "_f"], value=tensor)

    nodes = [constant("zero", 0.0), constant("one", 1.0), constant("minus_one", -1.0),
             *[helper.make_node("CastLike", [name + "_f", "x"], [name])
               for name in ("zero", "one", "minus_one")],
             helper.make_node("GreaterOrEqual", ["x", "zero"], ["nonnegative"]),
             helper.make_node("Where", ["nonnegative", "one", "minus_one"], ["sign"]),
             helper.make_node("Mul", ["sign", "scale"], ["y"])]
    return helper.make_function(QONNX_DOMAIN, "BipolarQuant", ["x", "scale"], ["y"], nodes,
                                [helper.make_opsetid("", opset)])


def qonnx_onnxruntime_predict(path: str | Path, x: np.ndarray, threads: int = 1
                              ) -> np.ndarray:
    """Run a QONNX file in one onnxruntime session, its BipolarQuant nodes defined by
    `_bipolar_quant_function`; graph rewrites off, as for the ONNX form.

    The file is run as written (no node of it is changed or removed); only the custom op's
    definition is added. tests/test_export_forms.py holds this runner to qonnx's executor on
    every algorithm's graph: a MiniLM cell's check takes 1 s here and 6 s there."""
    from bibench.export.onnx import ort_predict
    from bibench.latency.timing import ort_session

    model = onnx.load(str(path))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    model.functions.append(_bipolar_quant_function(opset))
    try:
        session = ort_session(model.SerializeToString(), threads=threads, optimize=False)
    except Exception as err:
        if "Unsupported model IR version" not in str(err):
            raise
        raise RuntimeError(_ir_mismatch(str(err))) from err
    return ort_predict(session, torch.from_numpy(np.ascontiguousarray(x)))


def write_form(f: FormInput) -> dict:
    """The QONNX graph (BipolarQuant), checked on every parity sample in onnxruntime with
    BipolarQuant defined as QONNX defines it (`qonnx_onnxruntime_predict`: the tests hold that
    runner to qonnx's own executor, which took 6 of a MiniLM cell's 34 s for 16 samples).

    A binarized model's QONNX graph applies its scales in another order than PyTorch (a
    BipolarQuant, then the scale), so, as on the binary engine, a pre-sign value within
    rounding of 0 may flip and move a sample's logits: for it the argmax decides. A trained
    XNOR++ PointNet showed it: the executor matched the lowered PyTorch model to 3e-6, the
    lowered model the original to 4e-7 (relative) up to the pooled features, whose signs then
    flipped for 19% of the head's inputs; 3 of 16 samples moved beyond the logit tolerance,
    none changed its answer."""
    from bibench.export.onnx import logit_parity, parity_row

    export_qonnx(f.graph, f.x[:1], f.path)
    parity = logit_parity(f.reference, qonnx_onnxruntime_predict(f.path, f.x.numpy()),
                          f.settings["logit_atol"])
    size = Path(f.path).stat().st_size  # QONNX keeps float weights behind BipolarQuant
    return {**f.base, **parity_row("qonnx", parity, f.settings, f.enforce,
                                   logits=f.algorithm == FP32),
            "file_bytes": size, "packed_bytes": size}
