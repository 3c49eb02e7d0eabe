"""ReCU (Xu et al., 2021b): the rectified clamp unit of paper Eq. 21.

Weights are centred and standardised per output channel (w1), clamped to the [Q(1-tau), Q(tau)]
quantiles and binarized with the identity STE, so the gradient is zero outside the clamp (the
clamp's own gradient). The quantiles use the Laplace closed form of the authors' code,
Q(tau) = -mean|w1| * ln(2 - 2 tau) = -Q(1-tau), with mean|w1| over the whole layer (detached).
tau follows tau = A exp(step/total) + B, A = 0.14/(e-1), B = 0.85 - A (0.85 -> 0.99).
Activations: sign with gradient max(0, 2 - 2|a|). Output x a learnable per-output-channel alpha,
initialised to the per-channel mean|w| of the (pretrained) weights at binarization time (the
authors' code draws it at random); alpha is applied to the weights (same product, cheaper).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bibench.algorithms import register
from bibench.algorithms.base import (
    Algorithm,
    BinarizedLayer,
    DeploymentFacts,
    per_channel_mean_abs,
    sign_identity_ste,
    sign_polynomial,
)

TAU_A = 0.14 / (math.e - 1.0)
TAU_B = 0.85 - TAU_A
EPS = 1e-5


def recu_tau(step: int, total_steps: int) -> float:
    """tau at training progress step / total_steps: 0.85 at the start, 0.99 at the end.

    Progress is clipped to [0, 1] (tau >= 1 would put the quantile at infinity).
    """
    return TAU_A * math.exp(min(max(step / total_steps, 0.0), 1.0)) + TAU_B


def recu_clamp(weight: Tensor, tau: float) -> Tensor:
    """Eq. 21 on the per-channel standardised weights: clamp(w1, Q(1-tau), Q(tau))."""
    dims = tuple(range(1, weight.dim()))
    w0 = weight - weight.mean(dim=dims, keepdim=True)
    w1 = w0 * torch.rsqrt(w0.var(dim=dims, keepdim=True, correction=0) + EPS)
    q = (-math.log(2.0 - 2.0 * tau)) * w1.detach().abs().mean()
    return torch.clamp(w1, -q, q)


@register
class ReCU(Algorithm):
    name = "recu"
    title = "ReCU"
    reference = "Xu et al., 2021b"
    deployment = DeploymentFacts(
        weight_scale="per-channel",
        weight_scale_form="learned",
        bn_foldable=True,
        activation_rescaling=False,
        activation_mean_shift=False,
    )

    def setup_layer(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> None:
        with torch.no_grad():
            alpha = per_channel_mean_abs(layer.weight).flatten().clone()
        layer.alpha = nn.Parameter(alpha)
        layer.tau = recu_tau(0, 1)

    def activation_sign(self, x: Tensor) -> Tensor:
        return sign_polynomial(x)  # gradient max(0, 2 - 2|a|)

    def binarize_weight(self, layer: BinarizedLayer, weight: Tensor) -> Tensor:
        alpha = layer.alpha.view((-1,) + (1,) * (weight.dim() - 1))
        return sign_identity_ste(recu_clamp(weight, layer.tau)) * alpha

    def update_schedule(self, layer: BinarizedLayer, step: int, total_steps: int) -> None:
        layer.tau = recu_tau(step, total_steps)

    def extra_fp_params(self, layer: BinarizedLayer) -> int:
        return layer.alpha.numel()

    def extra_fp_ops(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> int:
        return math.prod(output_shape)
