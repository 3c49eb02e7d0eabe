"""FDA (Xu et al., 2021a): sign decomposed with a Fourier series, paper Eqs. 22-23.

Forward sign(t); backward (4 omega / pi) sum_{i=0}^{n} cos((2i+1) omega t), omega = 0.1, zero
for |t| > 1, computed in closed form sin(2(n+1)u) / (2 sin u) with u = omega t (limit n+1 at
u = 0). n follows n = 9 + int(9 step / total), capped at 17. During training a noise adaptation
term is added: t -> sign(t) + alpha (MLP(t) + 0.1 sin(t)), alpha = 0.05 (1 + cos(pi (step+1) /
total)); the MLP is d -> max(1, d//64) -> d with ReLU over each flattened filter (weights) and
over the channels at each position (inputs). Both MLPs are created in setup_layer so the
optimiser trains them (the authors' activation MLP was created after the optimiser: never
trained). In eval mode the layer is a pure sign layer with a per-output-channel mean|w| scale
(paper Table 6), deployable like BNN plus a foldable scale (Table 4); the noise modules are
training-only and are not counted as deployed parameters or operations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bibench.algorithms import register
from bibench.algorithms.base import (
    Algorithm,
    BinarizedLayer,
    DeploymentFacts,
    clip_ste_grad,
    hard_sign,
    per_channel_mean_abs,
)

OMEGA = 0.1
N_START, N_END = 9, 17
NOISE_SIN = 0.1


def fourier_sum(u: Tensor, n: int, scale: float = 1.0) -> Tensor:
    """scale * sum_{i=0}^{n} cos((2i+1) u), as scale sin(2(n+1)u) / (2 sin u), limit n+1 at 0."""
    num = torch.sin(u * (2 * (n + 1)))
    ratio = torch.addcdiv(u.new_zeros(()), num, torch.sin(u), value=scale / 2.0)
    return ratio.nan_to_num_(nan=scale * (n + 1))  # 0/0 only where u == 0


def fourier_sign_grad(x: Tensor, grad: Tensor, n: int, omega: float = OMEGA) -> Tensor:
    """grad * (4 omega / pi) sum_{i=0}^{n} cos((2i+1) omega x) where |x| <= 1, else 0."""
    return fourier_sum(x * omega, n, 4.0 * omega / math.pi).mul_(clip_ste_grad(x, grad))


class _FourierSign(torch.autograd.Function):
    """sign(x) + c sin(x): gradient Fourier(x) + c cos(x) in one fused backward (c may be 0)."""

    @staticmethod
    def forward(ctx, x: Tensor, n: int, c: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.n, ctx.c = n, c
        out = hard_sign(x)
        return out.add_(torch.sin(x), alpha=c) if c else out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (x,) = ctx.saved_tensors
        g = fourier_sign_grad(x, grad, ctx.n)
        if ctx.c:
            g.addcmul_(torch.cos(x), grad, value=ctx.c)
        return g, None, None


def fourier_sign(x: Tensor, n: int = N_START, sin_coef: float = 0.0) -> Tensor:
    """sign(x) with FDA's Fourier-series gradient of n+1 terms (+ sin_coef * sin(x))."""
    return _FourierSign.apply(x, n, sin_coef)


class NoiseMLP(nn.Module):
    """The learned part of FDA's noise adaptation: d -> max(1, d//64) -> d with ReLU.

    Applied over the last dim (spatial_dims = 0: Linear inputs, flattened filters) or over the
    channels (dim 1) at every position of a conv input. forward(t, base, alpha) returns
    base + alpha MLP(t); the 0.1 sin(t) part of the noise term is fused into fourier_sign.
    """

    def __init__(self, d: int, spatial_dims: int = 0) -> None:
        super().__init__()
        hidden = max(1, d // 64)
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)
        # zero hidden bias: with a single hidden unit (d < 128) a negative random bias can make
        # it dead for every input from the start, and the MLP would never train
        nn.init.zeros_(self.fc1.bias)
        self.spatial_dims = spatial_dims

    def forward(self, t: Tensor, base: Tensor, alpha: float = 1.0) -> Tensor:
        # alpha scales fc2 (a tiny tensor) rather than the output (a full pass)
        w2, b2 = self.fc2.weight * alpha, self.fc2.bias * alpha
        if self.spatial_dims == 0:
            return base + F.linear(F.relu(F.linear(t, self.fc1.weight, self.fc1.bias)), w2, b2)
        # channel MLP at every position: batched matmuls beat 1x1 convs on CPU; the bias rides
        # on a row of ones and baddbmm adds the result onto `base` in the same pass
        n, c = t.shape[:2]
        flat = t.reshape(n, c, -1)
        w1 = self.fc1.weight.expand(n, -1, -1)
        h = F.relu(torch.baddbmm(self.fc1.bias[:, None], w1, flat))
        h = torch.cat([h, h.new_ones(n, 1, h.shape[2])], dim=1)
        w2 = torch.cat([w2, b2[:, None]], dim=1).expand(n, -1, -1)
        return torch.baddbmm(base.reshape(n, c, -1), w2, h).view_as(t)


def fda_n(step: int, total_steps: int) -> int:
    return min(N_END, N_START + int(9 * step / total_steps))


def fda_alpha(step: int, total_steps: int) -> float:
    return 0.05 * (1.0 + math.cos(math.pi * (step + 1) / total_steps))


@register
class FDA(Algorithm):
    name = "fda"
    title = "FDA"
    reference = "Xu et al., 2021a"
    deployment = DeploymentFacts(
        weight_scale="per-channel",
        weight_scale_form="statistic",
        bn_foldable=True,
        activation_rescaling=False,
        activation_mean_shift=False,
    )

    def setup_layer(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> None:
        factory = {"device": layer.weight.device, "dtype": layer.weight.dtype}
        d = layer.weight[0].numel()
        layer.weight_noise = NoiseMLP(d).to(**factory)
        if isinstance(layer, nn.Linear):
            layer.input_noise = NoiseMLP(layer.in_features).to(**factory)
        else:
            layer.input_noise = NoiseMLP(layer.in_channels, layer.weight.dim() - 2).to(**factory)
        layer.fourier_terms = N_START
        layer.noise_alpha = 2 * 0.05  # alpha at the start of a long run

    def activation_sign(self, x: Tensor) -> Tensor:
        return fourier_sign(x, N_START)

    def binarize_input(self, layer: BinarizedLayer, x: Tensor) -> Tensor:
        alpha = layer.noise_alpha if layer.training else 0.0
        if not alpha:
            return fourier_sign(x, layer.fourier_terms)
        b = fourier_sign(x, layer.fourier_terms, NOISE_SIN * alpha)
        return layer.input_noise(x, b, alpha)

    def binarize_weight(self, layer: BinarizedLayer, weight: Tensor) -> Tensor:
        with torch.no_grad():
            scale = per_channel_mean_abs(weight)
        alpha = layer.noise_alpha if layer.training else 0.0
        if not alpha:
            return fourier_sign(weight, layer.fourier_terms) * scale
        b = fourier_sign(weight, layer.fourier_terms, NOISE_SIN * alpha)
        b = layer.weight_noise(weight.flatten(1), b.flatten(1), alpha)
        return b.view_as(weight) * scale

    def update_schedule(self, layer: BinarizedLayer, step: int, total_steps: int) -> None:
        layer.fourier_terms = fda_n(step, total_steps)
        layer.noise_alpha = fda_alpha(step, total_steps)

    def extra_fp_params(self, layer: BinarizedLayer) -> int:
        return layer.weight.shape[0]  # the channel scale; noise MLPs are training-only

    def extra_fp_ops(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> int:
        return math.prod(output_shape)
