"""The interface every binarization algorithm implements, and the layers that call it.

An algorithm is a small stateless object: it says how weights and inputs become 1-bit, how the
output is re-scaled, and which facts (deployability, extra full-precision cost) other parts of
the benchmark read. Per-layer state (learnable scales, thresholds, schedule values) lives on the
binarized layer itself, so it is saved, loaded, optimised and exported with the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --------------------------------------------------------------------------------------------
# Sign functions with their gradient approximations (paper Eqs. 11, 12, 16, 22)
# --------------------------------------------------------------------------------------------


def _hard_sign(x: Tensor) -> Tensor:
    """sign with sign(0) = +1, as every binary engine computes it (paper Eq. 12); NaN stays NaN.

    copysign is one vectorised pass (torch.where on a comparison takes several); adding 0.0
    turns -0.0 into +0.0 so that every zero maps to +1. copysign alone would turn NaN into +-1
    and hide a diverged full-precision layer from the loss check: adding x * 0 (one fused
    pass, 0 for every finite x) makes NaN, and the overflow +-inf, NaN again.
    """
    if torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting():
        # Exported graphs need the where(x >= 0, 1, -1) form: ONNX has no signbit, and binary
        # engines (OpenVINO, Larq) pattern-match this form. Keep it when optimising.
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
    return x.new_ones(()).copysign(x + 0.0).addcmul_(x, x.new_zeros(()))


hard_sign = _hard_sign


def clip_ste_grad(x: Tensor, grad: Tensor, closed: bool = False) -> Tensor:
    """grad where -1 < x < 1 (paper Eq. 12), or -1 <= x <= 1 if closed, 0 elsewhere.

    One fused pass: hardtanh's backward kernel zeroes the gradient where x <= min or x >= max,
    so bounds at +-1 pass exactly the open interval of Eq. 12 (and of the authors' clip-STE),
    and bounds one ulp outside +-1 the closed one (FDA's window, BiBERT's bool).
    """
    bound = 1.0 + torch.finfo(x.dtype).eps if closed else 1.0
    return torch.ops.aten.hardtanh_backward(grad, x, -bound, bound)


def polynomial_grad(x: Tensor, grad: Tensor) -> Tensor:
    """grad * max(0, 2 - 2|x|) (Eq. 16), as 2 (grad - grad min(|x|, 1)) with few passes."""
    return torch.addcmul(grad, grad, x.abs().clamp_(max=1.0), value=-1.0).mul_(2.0)


class _SignClipSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return _hard_sign(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return clip_ste_grad(x, grad)


class _SignIdentitySTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return _hard_sign(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad


class _SignPolynomial(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return _hard_sign(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return polynomial_grad(x, grad)


def sign_clip_ste(x: Tensor) -> Tensor:
    """BNN's sign: gradient passed where |x| < 1, zero elsewhere (paper Eq. 12)."""
    return _SignClipSTE.apply(x)


def sign_identity_ste(x: Tensor) -> Tensor:
    """sign with the plain straight-through (identity) gradient."""
    return _SignIdentitySTE.apply(x)


def sign_polynomial(x: Tensor) -> Tensor:
    """Bi-Real's ApproxSign: gradient 2+2x on [-1,0), 2-2x on [0,1), 0 elsewhere (Eq. 16)."""
    return _SignPolynomial.apply(x)


# --------------------------------------------------------------------------------------------
# Facts each algorithm declares (read by export, complexity and the report)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentFacts:
    """What a binary inference engine must support to run the algorithm (paper Table 4).

    weight_scale: "none", "per-layer", "per-channel" or "spatial" (output-shaped, XNOR++).
    weight_scale_form: "none", "statistic" (computed from the weights) or "learned".
    bn_foldable: the weight scale is a per-channel constant that folds into a following BN.
    activation_rescaling: inputs are re-scaled by statistics computed at run time (XNOR's K).
    activation_mean_shift: inputs are shifted by a learned constant before sign (ReActNet).
    by_layer: layer kinds whose weight scale differs from `weight_scale`, as (kind, scale)
        pairs, e.g. XNOR++'s Linear layers scale per channel (foldable) while its
        convolutions scale spatially: an engine may then run a model built only of such
        layers, and the report says where what export finds by trying differs from the
        algorithm-wide fact, and why.
    """

    weight_scale: str
    weight_scale_form: str
    bn_foldable: bool
    activation_rescaling: bool
    activation_mean_shift: bool
    by_layer: tuple[tuple[str, str], ...] = ()

    @property
    def layer_note(self) -> str:
        """'Linear: per-channel; ...' (empty when every layer kind scales alike)."""
        return "; ".join(f"{kind}: {scale}" for kind, scale in self.by_layer)

    @property
    def deployable(self) -> bool:
        """Deployable on engines with Larq/daBNN's capabilities (paper Table 4)."""
        return (
            self.weight_scale in ("none", "per-layer", "per-channel")
            and (self.weight_scale == "none" or self.bn_foldable)
            and not self.activation_rescaling
        )

    @property
    def why_not_deployable(self) -> str:
        if self.weight_scale not in ("none", "per-layer", "per-channel"):
            return f"{self.weight_scale} weight scaling factors cannot fold into BatchNorm"
        if self.weight_scale != "none" and not self.bn_foldable:
            return "weight scaling factors are not foldable into BatchNorm"
        if self.activation_rescaling:
            return "activation re-scaling by run-time statistics is not supported by engines"
        return ""


# --------------------------------------------------------------------------------------------
# The algorithm interface
# --------------------------------------------------------------------------------------------


class Algorithm:
    """Base class of a binarization algorithm; subclasses override what differs.

    The defaults give BNN-like behaviour: clip-STE sign on weights and inputs, no scaling.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    weight_bits: ClassVar[int] = 1
    activation_bits: ClassVar[int] = 1
    # True when setup_layer sizes parameters from the layer's output (binarize() then needs
    # an example input).
    needs_output_shape: ClassVar[bool] = False
    deployment: ClassVar[DeploymentFacts] = DeploymentFacts(
        weight_scale="none",
        weight_scale_form="none",
        bn_foldable=True,
        activation_rescaling=False,
        activation_mean_shift=False,
    )

    # -- per-layer set-up ------------------------------------------------------------------
    def setup_layer(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> None:
        """Create the layer's learnable parameters; output_shape excludes the batch dim.

        Runs after the FP weights are loaded, so scales may be initialised from them. Schedule
        values (update_schedule) are registered here as buffers holding their start-of-training
        values, so that a saved and re-loaded model resumes its schedules.
        """

    # -- forward pieces ----------------------------------------------------------------------
    def binarize_weight(self, layer: BinarizedLayer, weight: Tensor) -> Tensor:
        """Return the weights the layer computes with: exactly +-scale."""
        return sign_clip_ste(weight)

    def activation_sign(self, x: Tensor) -> Tensor:
        """The algorithm's sign for activations, with its gradient approximation."""
        return sign_clip_ste(x)

    def binarize_input(self, layer: BinarizedLayer, x: Tensor) -> Tensor:
        """Return the 1-bit input (+-1) the layer computes with."""
        return self.activation_sign(x)

    def scale_output(self, layer: BinarizedLayer, x: Tensor, y: Tensor) -> Tensor:
        """Re-scale the binary product (learned or run-time scales); x is the real input."""
        return y

    # -- training schedule ---------------------------------------------------------------------
    def update_schedule(self, layer: BinarizedLayer, step: int, total_steps: int) -> None:
        """Set per-layer schedule values at training progress step / total_steps."""

    # -- complexity facts ----------------------------------------------------------------------
    def extra_fp_params(self, layer: BinarizedLayer) -> int:
        """Full-precision numbers a deployed layer stores besides its 1-bit weights and bias."""
        return 0

    def extra_fp_ops(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> int:
        """Full-precision operations per sample a deployed layer adds (scaling, shifting)."""
        return 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# --------------------------------------------------------------------------------------------
# Scales shared by several algorithms
# --------------------------------------------------------------------------------------------


def per_channel_mean_abs(weight: Tensor) -> Tensor:
    """mean|w| over every dim but the output channel, shaped to broadcast against weight."""
    dims = tuple(range(1, weight.dim()))
    return weight.abs().mean(dim=dims, keepdim=True)


def sign_scaled(weight: Tensor, scale: Tensor, sign=None) -> Tensor:
    """sign(weight) * scale in one pass: exactly +-scale, gradient sign'(w) * scale.

    `sign` is the gradient-approximating sign function (clip-STE by default).
    """
    return (sign or sign_clip_ste)(weight) * scale


def channel_view(layer: nn.Module, values: Tensor) -> Tensor:
    """Reshape a per-channel vector to broadcast against the layer's inputs/outputs.

    Channels are dim 1 for convolutions (N, C, *spatial) and the last dim for Linear.
    """
    if isinstance(layer, nn.Linear):
        return values
    return values.view((1, -1) + (1,) * (layer.weight.dim() - 2))


def input_shape_of(layer: nn.Module, output_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Per-sample input shape that yields `output_shape` (for conv layers, the largest one).

    Complexity facts only receive the output shape; a conv's input follows from its stride,
    padding and dilation up to the stride - 1 positions the floor division drops: the largest
    candidate is the usual one (e.g. 32 -> 16 for a stride-2 3x3 conv with padding 1).
    """
    if isinstance(layer, nn.Linear):
        return tuple(output_shape[:-1]) + (layer.in_features,)
    if layer.padding == "same":
        return (layer.in_channels, *output_shape[1:])
    spatial = []
    for i, out in enumerate(output_shape[1:]):
        pad = 0 if isinstance(layer.padding, str) else layer.padding[i]
        extent = layer.dilation[i] * (layer.kernel_size[i] - 1) + 1
        spatial.append((out - 1) * layer.stride[i] - 2 * pad + extent + layer.stride[i] - 1)
    return (layer.in_channels, *spatial)


# --------------------------------------------------------------------------------------------
# Binarized layers: drop-in replacements that keep every argument of the layer they replace
# --------------------------------------------------------------------------------------------


class BinarizedLayer(nn.Module):
    """Mixin for layers whose weights and inputs go through an Algorithm.

    The FP weight and bias keep their names, so a state_dict of the full-precision model loads
    into the binarized one (the extra learnable parameters keep their initial values).
    Schedule state (ReCU's tau, FDA's number of terms and alpha) lives in buffers registered by
    the algorithm's setup_layer, so the state_dict carries it; a state_dict without them loads
    with the schedules at their start values (see _load_from_state_dict).
    """

    algorithm: Algorithm
    weight: nn.Parameter
    bias: nn.Parameter | None
    # False where the positions of the layer's output (a Conv1d's length axis) are an
    # unordered set, e.g. PointNet's points: algorithms then give positions no parameters of
    # their own (XNOR++'s beta), which would break the set's permutation invariance.
    ordered_positions: bool = True

    def _product(self, x: Tensor, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        algo = self.algorithm
        y = self._product(algo.binarize_input(self, x), algo.binarize_weight(self, self.weight))
        y = algo.scale_output(self, x, y)
        if self.bias is not None:
            shape = (1, -1) + (1,) * (y.dim() - 2) if not isinstance(self, nn.Linear) else (-1,)
            y = y + self.bias.view(shape)
        return y

    def binary_weight(self) -> Tensor:
        """The weights the layer computes with (for tests, export and inspection)."""
        with torch.no_grad():
            return self.algorithm.binarize_weight(self, self.weight)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        """A state_dict without the schedule buffers (saved when schedules were plain
        attributes) loads, strictly too, and the schedules keep their current values: the
        start values in a freshly built model. Evaluation does not depend on them (they change
        gradients and training-only noise), so old checkpoints evaluate as before."""
        absent = [
            prefix + name for name, buf in self._buffers.items()
            if buf is not None and name not in self._non_persistent_buffers_set
            and prefix + name not in state_dict
        ]
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
        for key in absent:
            if key in missing_keys:
                missing_keys.remove(key)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, algorithm={self.algorithm.name}"


_CONV = {1: F.conv1d, 2: F.conv2d}


class _BinaryConvNd(BinarizedLayer):
    def _product(self, x: Tensor, weight: Tensor) -> Tensor:
        padding = self.padding
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        conv = _CONV[weight.dim() - 2]
        return conv(x, weight, None, self.stride, padding, self.dilation, self.groups)


class BinaryConv1d(_BinaryConvNd, nn.Conv1d):
    pass


class BinaryConv2d(_BinaryConvNd, nn.Conv2d):
    pass


class BinaryLinear(BinarizedLayer, nn.Linear):
    def _product(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x, weight)


BINARY_LAYER_FOR: dict[type[nn.Module], type[BinarizedLayer]] = {
    nn.Conv1d: BinaryConv1d,
    nn.Conv2d: BinaryConv2d,
    nn.Linear: BinaryLinear,
}


class BinaryMatmul(nn.Module):
    """Matmul of two activation tensors, both binarized (bi-attention in transformers).

    Both operands go through the algorithm's activation sign, so its gradient approximation
    reaches both (the authors' bi-attention gave Q and K no gradient).
    """

    def __init__(self, algorithm: Algorithm) -> None:
        super().__init__()
        self.algorithm = algorithm

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        sign = self.algorithm.activation_sign
        return torch.matmul(sign(a), sign(b))
