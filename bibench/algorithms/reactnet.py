"""ReActNet (Liu et al., 2020): paper Eqs. 19-20, o = (rsign(a) (*) sign(w)) . alpha.

RSign: sign(a - b) with a learnable threshold b per input channel (zero-initialised), and
Bi-Real's polynomial gradient (Eq. 16) on a - b; applied in Conv and Linear layers alike (the
authors' Linear forgot b). Weights: detached per-output-channel mean|w| x sign, clip-STE.
The constant shift is supported by Larq (activation mean-shifting), so ReActNet is deployable.
Bi-attention's activation-activation matmuls use activation_sign (no threshold): their operands
are the outputs of the Q, K and V Linear layers, whose learned biases already are per-channel
thresholds (sign(xW + b - t) = sign(xW + b') with b' = b - t), so a threshold there would only
re-parametrise the bias.
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
    channel_view,
    input_shape_of,
    per_channel_mean_abs,
    sign_polynomial,
    sign_scaled,
)


@register
class ReActNet(Algorithm):
    name = "reactnet"
    title = "ReActNet"
    reference = "Liu et al., 2020"
    deployment = DeploymentFacts(
        weight_scale="per-channel",
        weight_scale_form="statistic",
        bn_foldable=True,
        activation_rescaling=False,
        activation_mean_shift=True,
    )

    def setup_layer(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> None:
        channels = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
        layer.threshold = nn.Parameter(
            torch.zeros(channels, device=layer.weight.device, dtype=layer.weight.dtype)
        )

    def activation_sign(self, x: Tensor) -> Tensor:
        return sign_polynomial(x)

    def binarize_input(self, layer: BinarizedLayer, x: Tensor) -> Tensor:
        return sign_polynomial(x - channel_view(layer, layer.threshold))

    def binarize_weight(self, layer: BinarizedLayer, weight: Tensor) -> Tensor:
        with torch.no_grad():
            alpha = per_channel_mean_abs(weight)
        return sign_scaled(weight, alpha)

    def extra_fp_params(self, layer: BinarizedLayer) -> int:
        return layer.weight.shape[0] + layer.threshold.numel()  # alpha + thresholds

    def extra_fp_ops(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> int:
        # one add per input element (the shift) + one multiply per output element (alpha)
        return math.prod(input_shape_of(layer, output_shape)) + math.prod(output_shape)
