"""Bi-Real Net (Liu et al., 2018): paper Eqs. 15-16.

Activations: sign forward, the piecewise-polynomial ApproxSign gradient (2+2a on [-1,0),
2-2a on [0,1), 0 elsewhere). Weights: detached per-output-channel mean|w| x sign, clip-STE.
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
    sign_polynomial,
    sign_scaled,
)


@register
class BiReal(Algorithm):
    name = "bireal"
    title = "Bi-Real Net"
    reference = "Liu et al., 2018"
    deployment = DeploymentFacts(
        weight_scale="per-channel",
        weight_scale_form="statistic",
        bn_foldable=True,
        activation_rescaling=False,
        activation_mean_shift=False,
    )

    def activation_sign(self, x: Tensor) -> Tensor:
        return sign_polynomial(x)

    def binarize_weight(self, layer: BinarizedLayer, weight: Tensor) -> Tensor:
        with torch.no_grad():
            alpha = per_channel_mean_abs(weight)
        return sign_scaled(weight, alpha)

    def extra_fp_params(self, layer: BinarizedLayer) -> int:
        return layer.weight.shape[0]

    def extra_fp_ops(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> int:
        return math.prod(output_shape)
