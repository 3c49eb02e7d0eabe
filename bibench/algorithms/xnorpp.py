"""XNOR-Net++ (Bulat et al., 2019): paper Eqs. 17-18, o = (sign(a) (*) sign(w)) . Gamma.

Gamma = alpha (x) beta (x) gamma with alpha in R^{C_out}, beta in R^{H_out}, gamma in R^{W_out},
all learned and initialised to one, sized from the layer's real output shape (the authors'
code hard-coded a maximum size of 2000 and sliced). Linear layers have alpha only, Conv1d
alpha (x) beta(L_out), except where the positions are an unordered set (PointNet's points,
`layer.ordered_positions` False): a scale per point index would break the permutation
invariance PointNet is built on, so those layers have alpha only. Sign uses clip-STE for
weights and activations. alpha is applied to
the weights (same product, cheaper), beta (x) gamma to the output. A spatial scale cannot be
folded into BatchNorm, so XNOR++ is not deployable (paper Table 4), except in a model whose
binarized layers are all Linear or point-wise (alpha only: `DeploymentFacts.by_layer`), such as
PointNet, where the binary engine runs it.
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
    sign_clip_ste,
)


@register
class XNORPlusPlus(Algorithm):
    name = "xnorpp"
    title = "XNOR-Net++"
    reference = "Bulat et al., 2019"
    needs_output_shape = True
    deployment = DeploymentFacts(
        weight_scale="spatial",
        weight_scale_form="learned",
        bn_foldable=False,
        activation_rescaling=False,
        activation_mean_shift=False,
        # alpha only (setup_layer): a per-channel scale, which folds like XNOR's
        by_layer=(("Linear", "per-channel, folds into BatchNorm"),
                  ("Conv1d over an unordered point set", "per-channel, folds into BatchNorm")),
    )

    def setup_layer(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> None:
        factory = {"device": layer.weight.device, "dtype": layer.weight.dtype}
        layer.alpha = nn.Parameter(torch.ones(layer.weight.shape[0], **factory))
        if isinstance(layer, nn.Linear) or not layer.ordered_positions:
            return
        spatial = tuple(output_shape[1:])
        if len(spatial) != layer.weight.dim() - 2:
            raise ValueError(f"xnorpp: output shape {output_shape} does not fit {layer}")
        layer.beta = nn.Parameter(torch.ones(spatial[0], **factory))
        if len(spatial) == 2:
            layer.gamma = nn.Parameter(torch.ones(spatial[1], **factory))

    def binarize_weight(self, layer: BinarizedLayer, weight: Tensor) -> Tensor:
        alpha = layer.alpha.view((-1,) + (1,) * (weight.dim() - 1))
        return sign_clip_ste(weight) * alpha

    def scale_output(self, layer: BinarizedLayer, x: Tensor, y: Tensor) -> Tensor:
        if not hasattr(layer, "beta"):
            return y
        if y.dim() == 3:
            return y * layer.beta
        return y * (layer.beta[:, None] * layer.gamma)

    def extra_fp_params(self, layer: BinarizedLayer) -> int:
        return sum(
            getattr(layer, n).numel() for n in ("alpha", "beta", "gamma") if hasattr(layer, n)
        )

    def extra_fp_ops(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> int:
        return math.prod(output_shape)  # one multiply per output by the precomputed Gamma
