"""FSMN (Zhang et al., 2015) and Deep-FSMN (Zhang et al., 2018) for keyword spotting.

Input: acoustic features laid out (N, T, F), T frames of F features each (e.g. 32 log-mel bins),
the layout of every speech data set of bibench.data; (N, 1, T, F) (a one-channel spectrogram) is
accepted too. The model transposes to channels-first (N, F, T) so that every layer is a Conv1d
over time. Output: (N, classes).

Each layer is the compact-FSMN unit: a hidden layer (1x1 conv + BN + ReLU, `hidden` units), a
linear projection to `proj` units (1x1 conv + BN, no nonlinearity) and a memory block, a
depthwise Conv1d over time whose taps are the look-back (left order N1) and look-ahead (right
order N2) coefficients, spaced `stride` frames apart (Zhang et al. 2018, Eq. 8):
    m_t = p_t + sum_{i=0..N1} a_i * p_{t - stride*i} + sum_{j=1..N2} c_j * p_{t + stride*j}
(the taps are one kernel of size N1 + N2 + 1 with dilation `stride`, padded N1*stride on the
left and N2*stride on the right so T is kept), followed by BN. Deep-FSMN adds the identity skip
connection between the memory blocks of consecutive layers (m^l += m^(l-1)); `fsmn` is the same
stack without skips. An input layer (1x1 conv F -> proj + BN + ReLU) comes first; the head
averages over time and a Linear maps `proj` to the classes. Convs before a BN have no bias.

Defaults (both models): 8 layers, hidden 256, projection/memory 128, orders 2/2, stride 1,
F = 32 mel bins, 12 classes (Speech Commands v0.01 as in the paper): the hidden, memory and
order sizes of the authors' DFSMN config (num_layer=8, hidden_size=256,
backbone_memory_size=128, left/right kernel 2). Their 2-conv front end is not part of the
FSMN/Deep-FSMN papers and is left out. Parameters with the defaults:
    input 32*128 + 2*128 = 4,352; per layer 128*256 + 2*256 + 256*128 + 2*128 + 128*5 + 2*128
    = 67,200 (x 8 = 537,600); head 128*12 + 12 = 1,548; total 543,500 for each model.

Full-precision policy: the input layer and the head (first and last layers, kept by
binarize()); memory (depthwise) convs are binarized as in the authors' code. `keep_fp` is empty.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from bibench.models import Architecture, register_architecture


class FSMNLayer(nn.Module):
    def __init__(self, dim: int, hidden: int, proj: int, left: int, right: int, stride: int,
                 skip: bool) -> None:
        super().__init__()
        self.hidden = nn.Conv1d(dim, hidden, 1, bias=False)
        self.bn_hidden = nn.BatchNorm1d(hidden)
        self.act = nn.ReLU()
        self.project = nn.Conv1d(hidden, proj, 1, bias=False)
        self.bn_project = nn.BatchNorm1d(proj)
        self.memory = nn.Conv1d(proj, proj, left + right + 1, dilation=stride, groups=proj,
                                bias=False)
        self.bn_memory = nn.BatchNorm1d(proj)
        self.pad = (left * stride, right * stride)
        self.skip = skip and dim == proj

    def forward(self, x: Tensor) -> Tensor:
        p = self.bn_project(self.project(self.act(self.bn_hidden(self.hidden(x)))))
        m = p + self.bn_memory(self.memory(F.pad(p, self.pad)))
        return m + x if self.skip else m


class FSMN(nn.Module):
    def __init__(self, features: int, num_classes: int, num_layers: int = 8, hidden: int = 256,
                 proj: int = 128, left: int = 2, right: int = 2, stride: int = 1,
                 skip: bool = True) -> None:
        super().__init__()
        self.input = nn.Sequential(
            nn.Conv1d(features, proj, 1, bias=False), nn.BatchNorm1d(proj), nn.ReLU()
        )
        self.layers = nn.Sequential(*(
            FSMNLayer(proj, hidden, proj, left, right, stride, skip) for _ in range(num_layers)
        ))
        self.fc = nn.Linear(proj, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:  # (N, 1, T, F)
            x = x.squeeze(1)
        x = x.transpose(1, 2)  # (N, F, T): features are the Conv1d channels
        return self.fc(self.layers(self.input(x)).mean(dim=-1))


def _features(input_shape: tuple[int, ...]) -> int:
    if len(input_shape) == 3 and input_shape[0] == 1:
        return input_shape[2]
    if len(input_shape) == 2:
        return input_shape[1]
    raise ValueError(f"FSMN inputs are (T, F) or (1, T, F), got {input_shape}")


def fsmn(input_shape: tuple[int, ...], num_classes: int, **kwargs) -> FSMN:
    return FSMN(_features(input_shape), num_classes, skip=False, **kwargs)


def dfsmn(input_shape: tuple[int, ...], num_classes: int, **kwargs) -> FSMN:
    return FSMN(_features(input_shape), num_classes, skip=True, **kwargs)


def fsmn_param_count(features: int, num_classes: int, num_layers: int = 8, hidden: int = 256,
                     proj: int = 128, left: int = 2, right: int = 2) -> int:
    """Closed-form parameter count of both models (the formula of the module docstring)."""
    per_layer = proj * hidden + 2 * hidden + hidden * proj + 2 * proj + proj * (left + right + 1)
    per_layer += 2 * proj
    return features * proj + 2 * proj + num_layers * per_layer + proj * num_classes + num_classes


register_architecture(Architecture(
    name="fsmn", family="mlp", build=fsmn, keep_fp=(),
    description="compact FSMN, 8 layers 256/128, memory orders 2/2 (0.54M params, 12 classes)",
    paper_input=((98, 32), 12),
))
register_architecture(Architecture(
    name="dfsmn", family="mlp", build=dfsmn, keep_fp=(),
    description="Deep-FSMN (skip connections between memory blocks), 8 layers 256/128 (0.54M)",
    paper_input=((98, 32), 12),
))
