"""Architectures in plain PyTorch, each registered with the facts the benchmark reads.

An architecture is built from the task's input shape and class count, and declares its family
(CNN, transformer, MLP: paper Eq. 3) and which layers stay full precision when binarized.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class Architecture:
    name: str
    family: str  # "cnn" | "transformer" | "mlp"
    build: Callable[..., nn.Module]
    # Qualified-name globs of layers kept full precision besides the first and last layers.
    keep_fp: tuple[str, ...] = field(default=())
    # Keep the first and last Conv/Linear layers (in execution order) full precision.
    keep_first_last: bool = True
    description: str = ""
    # (input shape, classes) of the paper's benchmark for this architecture: the complexity
    # figures of a model without a task (bibench.metrics.complexity.model_summary)
    paper_input: tuple[tuple[int, ...], int] | None = None


_ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(arch: Architecture) -> Architecture:
    _ARCHITECTURES[arch.name] = arch
    return arch


def get_architecture(name: str) -> Architecture:
    _load()
    try:
        return _ARCHITECTURES[name]
    except KeyError:
        raise KeyError(
            f"unknown architecture {name!r}; known: {', '.join(sorted(_ARCHITECTURES))}"
        ) from None


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build architecture `name` for inputs of `input_shape` (no batch dim)."""
    return get_architecture(name).build(input_shape=input_shape, num_classes=num_classes)


def _load() -> None:
    # Each module registers its architectures on import.
    from bibench.models import bert, fsmn, pointnet, resnet, vgg  # noqa: F401
    from bibench.models.detection import faster_rcnn, ssd  # noqa: F401
