"""ReCU (Xu et al., 2021b): the rectified clamp unit of paper Eq. 21.

Weights are centred and standardised per output channel as the authors' code does,
w1 = (w - mean) / (sqrt(var + 1e-5) / (2 sqrt 2)) with the unbiased variance, clamped to the
[Q(1-tau), Q(tau)] quantiles and binarized with the identity STE, so the gradient is zero outside
the clamp (the clamp's own gradient). The quantiles use the Laplace closed form of the authors'
code, Q(tau) = -mean|w1| * ln(2 - 2 tau) = -Q(1-tau), with mean|w1| over the whole layer
(detached). tau follows tau = A exp(step/total) + B, A = 0.14/(e-1), B = 0.85 - A, and is a
buffer (`layer.tau`) so the state_dict carries it. Activations: sign with gradient
max(0, 2 - 2|a|). Weight scale: the detached per-output-channel mean|w| (paper Table 6,
"statistics by channel"; the authors' code learns a randomly initialised alpha instead).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

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
STD_FACTOR = 2.0 * math.sqrt(2.0)  # the authors' w0 / (std / (2 sqrt 2))


def recu_tau(step: int, total_steps: int) -> float:
    """tau at training progress step / total_steps: 0.85 at step 0, 0.99 at step == total.

    A loop calling update_schedules(model, epoch, epochs) for epoch = 0 .. epochs - 1 (as the
    authors' per-epoch hook does) ends at A e^((E-1)/E) + B: 0.9878 for E = 100. Progress is
    clipped to [0, 1] (tau >= 1 would put the quantile at infinity).
    """
    return TAU_A * math.exp(min(max(step / total_steps, 0.0), 1.0)) + TAU_B


def recu_clamp(weight: Tensor, tau: float | Tensor) -> Tensor:
    """Eq. 21 on the per-channel standardised weights: clamp(w1, Q(1-tau), Q(tau)).

    The unbiased variance needs two weights per channel; a channel of one weight (a 1x1
    depthwise conv) uses the population variance (0), so its w1 is 0.
    """
    dims = tuple(range(1, weight.dim()))
    w0 = weight - weight.mean(dim=dims, keepdim=True)
    correction = 1 if weight[0].numel() > 1 else 0
    std = torch.sqrt(w0.var(dim=dims, keepdim=True, correction=correction) + EPS)
    w1 = w0 / (std / STD_FACTOR)
    tau = torch.as_tensor(tau, dtype=weight.dtype, device=weight.device)
    q = -torch.log(2.0 - 2.0 * tau) * w1.detach().abs().mean()
    return torch.clamp(w1, -q, q)


@register
class ReCU(Algorithm):
    name = "recu"
    title = "ReCU"
    reference = "Xu et al., 2021b"
    deployment = DeploymentFacts(
        weight_scale="per-channel",
        weight_scale_form="statistic",
        bn_foldable=True,
        activation_rescaling=False,
        activation_mean_shift=False,
    )

    def setup_layer(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> None:
        factory = {"device": layer.weight.device, "dtype": layer.weight.dtype}
        layer.register_buffer("tau", torch.tensor(recu_tau(0, 1), **factory))

    def activation_sign(self, x: Tensor) -> Tensor:
        return sign_polynomial(x)  # gradient max(0, 2 - 2|a|)

    def binarize_weight(self, layer: BinarizedLayer, weight: Tensor) -> Tensor:
        with torch.no_grad():
            alpha = per_channel_mean_abs(weight)
        return sign_identity_ste(recu_clamp(weight, layer.tau)) * alpha

    def update_schedule(self, layer: BinarizedLayer, step: int, total_steps: int) -> None:
        layer.tau.fill_(recu_tau(step, total_steps))

    def extra_fp_params(self, layer: BinarizedLayer) -> int:
        return layer.weight.shape[0]

    def extra_fp_ops(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> int:
        return math.prod(output_shape)
