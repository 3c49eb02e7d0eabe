"""Image corruptions at five severities (Hendrycks & Dietterich, 2019).

Severity constants are those of make_cifar_c (CIFAR-10-C, for 32x32-sized images), which differ
from ImageNet-C's. Images are float tensors in [0, 1], shape (N, C, H, W). Noise is drawn from
a generator seeded per (corruption, severity), so every cell sees the same corrupted test set.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

# make_cifar_c.py: gaussian_noise c = [0.04, 0.06, .08, .09, .10]
GAUSSIAN_NOISE_CIFAR = (0.04, 0.06, 0.08, 0.09, 0.10)


def gaussian_noise(x: Tensor, severity: int, seed: int = 0) -> Tensor:
    """x + N(0, c^2), clipped to [0, 1]."""
    c = GAUSSIAN_NOISE_CIFAR[_check_severity(severity) - 1]
    gen = torch.Generator().manual_seed(seed * 1000 + severity)
    return (x + c * torch.randn(x.shape, generator=gen, dtype=x.dtype)).clamp(0.0, 1.0)


def _check_severity(severity: int) -> int:
    if not 1 <= severity <= 5:
        raise ValueError(f"corruption severity must be in 1..5, got {severity}")
    return severity


CORRUPTIONS: dict[str, Callable[[Tensor, int], Tensor]] = {"gaussian_noise": gaussian_noise}


def corrupt(x: Tensor, name: str, severity: int) -> Tensor:
    try:
        fn = CORRUPTIONS[name]
    except KeyError:
        raise KeyError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}") from None
    return fn(x, severity)
