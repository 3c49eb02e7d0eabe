"""BatchNorm statistics that describe the trained model as it is evaluated.

During training every BatchNorm normalizes with the statistics of the current batch and keeps a
running average of them for evaluation. That average describes each layer's input *while the
layers below it were normalized by their own batch statistics*. At evaluation the layers below
use their running averages instead, so a layer's input is no longer the one its average was
taken over. In a full-precision network the difference is small. In a binarized one each
BatchNorm is followed by a sign, which turns a small shift into flipped bits, and the error
compounds layer by layer: the binarized Deep-FSMNs of the default speech task (24 binarized
layers) scored 50-83% in eval mode on their own training data against 85-89% in their last
training epoch, and seed to seed their test accuracy swung by up to 50 points.

Re-estimating the running averages over the training data does not help when it is done as
usual (many batches, averaged): each layer is still measured under the batch statistics of the
layers below. What does is to measure every layer under the statistics that evaluation will
use: one forward pass, in training mode, of a fixed sample of the training data as a single
batch. Each BatchNorm then normalizes with the sample's statistics and records exactly those
(momentum 1), so the layers above see their inputs as evaluation will show them. After it, the
eval-mode outputs on the sample equal the pass's own.

This runs after every training run, FP32 and binarized alike, and for every task (paper Sec. 4
trains with standard BatchNorm; the paper's recipe says nothing about the statistics used at
test time, so this is a step the paper's code leaves implicit: docs/design.md).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

# Training examples the statistics are estimated on (and the eval-mode training metric is
# measured on): the first ones of the training set, which the loaders interleave by class.
STATISTICS_SAMPLE = 512


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def estimate_batchnorm_statistics(model: nn.Module, x: Tensor) -> int:
    """Set every BatchNorm's running mean and variance to those of its input over `x` (one
    batch), with the layers below normalized as they will be at evaluation. Returns the number
    of BatchNorm layers set. Every other module stays in eval mode (dropout off)."""
    layers = batchnorm_layers(model)
    if not layers or len(x) < 2:
        return 0
    momenta = [m.momentum for m in layers]
    counts: dict[_BatchNorm, int] = {}

    def count(module: _BatchNorm, inputs: tuple[Tensor, ...]) -> None:
        counts[module] = inputs[0].numel() // inputs[0].shape[1]

    hooks = [m.register_forward_pre_hook(count) for m in layers]
    model.eval()
    for m in layers:
        m.train()
        m.momentum = 1.0  # running statistics := this batch's
    try:
        _forward(model, x)
    finally:
        for hook in hooks:
            hook.remove()
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        model.eval()
    for m, n in counts.items():  # the pass normalized with the biased variance; keep that one
        if n > 1:
            m.running_var.mul_((n - 1) / n)
    return len(layers)


def _forward(model: nn.Module, x: Tensor) -> None:
    if hasattr(model, "trace_input"):  # a detector: the forward its export traces
        model(*model.trace_input(x))
    else:
        model(x)


def training_sample(x: Tensor, y: Tensor, size: int = STATISTICS_SAMPLE) -> tuple[Tensor, Tensor]:
    """The fixed sample of the training data the statistics and the eval-mode training metric
    use: its first `size` examples (not shuffled, so every run of a task uses the same ones)."""
    return x[:size], y[:size]
