"""DoReFa-Net (Zhou et al., 2016), 1-bit: paper Eq. 15, o = (sign(a) (*) sign(w)) . alpha.

alpha is one detached per-LAYER mean|w|, as the paper's Table 6 defines the operator
("statistics by layer"); Table 4 (deployment) lists a channel-wise scale, which is how an engine
stores it, and the authors' code uses one mean|w| per output channel (see docs/algorithms.md).
clip-STE for weights and activations.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bibench.algorithms import register
from bibench.algorithms.base import Algorithm, BinarizedLayer, DeploymentFacts, sign_scaled


@register
class DoReFa(Algorithm):
    name = "dorefa"
    title = "DoReFa-Net"
    reference = "Zhou et al., 2016"
    deployment = DeploymentFacts(
        weight_scale="per-layer",
        weight_scale_form="statistic",
        bn_foldable=True,
        activation_rescaling=False,
        activation_mean_shift=False,
    )

    def binarize_weight(self, layer: BinarizedLayer, weight: Tensor) -> Tensor:
        with torch.no_grad():
            alpha = weight.abs().mean()
        return sign_scaled(weight, alpha)

    def extra_fp_params(self, layer: BinarizedLayer) -> int:
        return 1

    def extra_fp_ops(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> int:
        return math.prod(output_shape)  # one multiply per output (folds into BN when deployed)
