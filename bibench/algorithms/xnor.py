"""XNOR-Net (Rastegari et al., 2016): paper Eq. 14, o = (sign(a) (*) sign(w)) . K alpha.

alpha is the per-output-channel mean|w|; K is the paper's spatial map of input magnitudes:
the channel mean of |a|, averaged over each k x k receptive field (a 1/(k*k) box filter with
the layer's stride, padding and dilation). Both are detached statistics; sign uses clip-STE.
K is computed at run time from the input, so XNOR cannot be deployed (paper Table 4).
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
    input_shape_of,
    per_channel_mean_abs,
    sign_scaled,
)

_CONV = {1: F.conv1d, 2: F.conv2d}


def xnor_k_map(layer: nn.Module, x: Tensor) -> Tensor:
    """The scale map K of Eq. 14, shaped to broadcast against the layer's output.

    Linear: per-sample (per-row) mean|x|. Conv: mean over the input channels of each group of
    |x|, box-filtered like the conv itself; (N, 1 or C_out, *spatial_out).
    """
    with torch.no_grad():
        if isinstance(layer, nn.Linear):
            return x.abs().mean(dim=-1, keepdim=True)
        n, c = x.shape[:2]
        g = layer.groups
        a = x.abs().view(n, g, c // g, *x.shape[2:]).mean(dim=2)  # (N, G, *spatial)
        kernel = layer.kernel_size
        box = a.new_full((g, 1, *kernel), 1.0 / math.prod(kernel))
        padding = layer.padding
        if layer.padding_mode != "zeros":
            a = F.pad(a, layer._reversed_padding_repeated_twice, mode=layer.padding_mode)
            padding = 0
        k = _CONV[len(kernel)](a, box, None, layer.stride, padding, layer.dilation, g)
        if g > 1:
            k = k.repeat_interleave(layer.out_channels // g, dim=1)
        return k


@register
class XNOR(Algorithm):
    name = "xnor"
    title = "XNOR-Net"
    reference = "Rastegari et al., 2016"
    deployment = DeploymentFacts(
        weight_scale="per-channel",
        weight_scale_form="statistic",
        bn_foldable=True,
        activation_rescaling=True,
        activation_mean_shift=False,
    )

    def binarize_weight(self, layer: BinarizedLayer, weight: Tensor) -> Tensor:
        with torch.no_grad():
            alpha = per_channel_mean_abs(weight)
        return sign_scaled(weight, alpha)

    def scale_output(self, layer: BinarizedLayer, x: Tensor, y: Tensor) -> Tensor:
        return y * xnor_k_map(layer, x)

    def extra_fp_params(self, layer: BinarizedLayer) -> int:
        return layer.weight.shape[0]  # alpha

    def extra_fp_ops(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> int:
        # |a| and its channel mean (one op per input element), the box filter (k*k per output
        # position), then K and alpha multiplied into every output element.
        inputs = math.prod(input_shape_of(layer, output_shape))
        if isinstance(layer, nn.Linear):
            box = 0
        else:
            box = layer.groups * math.prod(layer.kernel_size) * math.prod(output_shape[1:])
        return inputs + box + 2 * math.prod(output_shape)
