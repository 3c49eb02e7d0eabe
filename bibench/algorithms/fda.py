"""FDA (Xu et al., 2021a): sign decomposed with a Fourier series, paper Eqs. 22-23.

Forward sign(t); backward (4 omega / pi) sum_{i=0}^{n} cos((2i+1) omega t), omega = 0.1, zero
for |t| > 1 (the authors' code), computed in closed form sin(2(n+1)u) / (2 sin u) with u =
omega t (limit n+1 at u = 0). n follows n = 9 + int(9 step / total), capped at 17. During
training a noise adaptation term is added: t -> sign(t) + alpha (sigma(t w1) w2 + 0.1 sin(t)),
alpha = 0.05 (1 + cos(pi (step+1) / total)); the MLP t -> ReLU(t w1) w2 has no biases (Eqs.
22-23 and the authors' module), is d -> max(1, d//64) -> d, over each flattened filter
(weights) and over the channels at each position (inputs). Both MLPs are created in
setup_layer so the optimiser trains them (the authors' activation MLP was created after the
optimiser: never trained). n and alpha are buffers (`fourier_terms`, `noise_alpha`), so the
state_dict carries the schedule. In eval mode the layer is a pure sign layer with a
per-output-channel mean|w| scale (paper Table 6), deployable like BNN plus a foldable scale
(Table 4); the noise modules are training-only and are not counted as deployed parameters or
operations.
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


def fourier_sum(u: Tensor, n: int | Tensor, scale: float = 1.0) -> Tensor:
    """scale * sum_{i=0}^{n} cos((2i+1) u), as scale sin(2(n+1)u) / (2 sin u), limit n+1 at 0.

    n may be a 0-dim tensor (the layer's buffer): reading it as a Python int would wait for
    the device on every call.
    """
    terms = torch.as_tensor(n + 1, dtype=u.dtype, device=u.device)
    num = torch.sin(u * (2 * terms))
    ratio = torch.addcdiv(u.new_zeros(()), num, torch.sin(u), value=scale / 2.0)
    return torch.where(u == 0, terms * scale, ratio)  # 0/0 only where u == 0


def fourier_sign_grad(x: Tensor, grad: Tensor, n: int | Tensor, omega: float = OMEGA) -> Tensor:
    """grad * (4 omega / pi) sum_{i=0}^{n} cos((2i+1) omega x) where |x| <= 1, else 0.

    The window is closed: the authors zero the gradient where x > 1 or x < -1 only.
    """
    inside = clip_ste_grad(x, grad, closed=True)
    return fourier_sum(x * omega, n, 4.0 * omega / math.pi).mul_(inside)


class _FourierSign(torch.autograd.Function):
    """sign(x) + c sin(x): gradient Fourier(x) + c cos(x) in one fused backward (c may be None)."""

    @staticmethod
    def forward(ctx, x: Tensor, n: int | Tensor, c: Tensor | None) -> Tensor:
        ctx.save_for_backward(x)
        ctx.n, ctx.c = n, c
        out = hard_sign(x)
        return out if c is None else out.addcmul_(torch.sin(x), c)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (x,) = ctx.saved_tensors
        g = fourier_sign_grad(x, grad, ctx.n)
        if ctx.c is not None:
            g.addcmul_(torch.cos(x).mul_(ctx.c), grad)
        return g, None, None


def fourier_sign(x: Tensor, n: int | Tensor = N_START, sin_coef: Tensor | None = None) -> Tensor:
    """sign(x) with FDA's Fourier-series gradient of n+1 terms (+ sin_coef * sin(x))."""
    return _FourierSign.apply(x, n, sin_coef)


class NoiseMLP(nn.Module):
    """The learned part of FDA's noise adaptation: t -> ReLU(t w1) w2, d -> max(1, d//64) -> d.

    No biases (paper Eqs. 22-23, the authors' module). Applied over the last dim (spatial_dims
    = 0: Linear inputs, flattened filters) or over the channels (dim 1) at every position of a
    conv input. forward(t, base, alpha) returns base + alpha MLP(t); the 0.1 sin(t) part of the
    noise term is fused into fourier_sign.
    """

    def __init__(self, d: int, spatial_dims: int = 0) -> None:
        super().__init__()
        hidden = max(1, d // 64)
        self.fc1 = nn.Linear(d, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, d, bias=False)
        self.spatial_dims = spatial_dims

    def forward(self, t: Tensor, base: Tensor, alpha: float | Tensor = 1.0) -> Tensor:
        w2 = self.fc2.weight * alpha  # alpha scales fc2 (a tiny tensor), not the output
        if self.spatial_dims == 0:
            return torch.addmm(base.reshape(-1, base.shape[-1]),
                               F.relu(F.linear(t.reshape(-1, t.shape[-1]), self.fc1.weight)),
                               w2.t()).view_as(base)
        # channel MLP at every position: batched matmuls beat 1x1 convs on CPU, and baddbmm
        # adds the result onto `base` in the same pass
        n, c = t.shape[:2]
        flat = t.reshape(n, c, -1)
        h = F.relu(torch.bmm(self.fc1.weight.expand(n, -1, -1), flat))
        return torch.baddbmm(base.reshape(n, c, -1), w2.expand(n, -1, -1), h).view_as(t)


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
        layer.register_buffer("fourier_terms", torch.tensor(N_START, device=layer.weight.device))
        # alpha at the start of a long run (fda_alpha(0, total) -> 0.1 as total grows)
        layer.register_buffer("noise_alpha", torch.tensor(2 * 0.05, **factory))

    def activation_sign(self, x: Tensor) -> Tensor:
        return fourier_sign(x, N_START)

    def binarize_input(self, layer: BinarizedLayer, x: Tensor) -> Tensor:
        if not layer.training:
            return fourier_sign(x, layer.fourier_terms)
        alpha = layer.noise_alpha
        b = fourier_sign(x, layer.fourier_terms, NOISE_SIN * alpha)
        return layer.input_noise(x, b, alpha)

    def binarize_weight(self, layer: BinarizedLayer, weight: Tensor) -> Tensor:
        with torch.no_grad():
            scale = per_channel_mean_abs(weight)
        if not layer.training:
            return fourier_sign(weight, layer.fourier_terms) * scale
        alpha = layer.noise_alpha
        b = fourier_sign(weight, layer.fourier_terms, NOISE_SIN * alpha)
        b = layer.weight_noise(weight.flatten(1), b.flatten(1), alpha)
        return b.view_as(weight) * scale

    def update_schedule(self, layer: BinarizedLayer, step: int, total_steps: int) -> None:
        layer.fourier_terms.fill_(fda_n(step, total_steps))
        layer.noise_alpha.fill_(fda_alpha(step, total_steps))

    def extra_fp_params(self, layer: BinarizedLayer) -> int:
        return layer.weight.shape[0]  # the channel scale; noise MLPs are training-only

    def extra_fp_ops(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> int:
        return math.prod(output_shape)
