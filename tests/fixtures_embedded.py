"""Helpers of the embedded data set tests."""

from __future__ import annotations

import torch

import bibench.data.embedded  # noqa: F401  (registers the embedded datasets)
from bibench.data import _DATASETS, TaskData


def load(name: str) -> TaskData:
    """A fresh load through the loader itself (no on-disk cache)."""
    return _DATASETS[name].loader()


def rows(x: torch.Tensor) -> set[bytes]:
    """The samples of `x` as bytes, to test two splits for shared samples."""
    return {r.numpy().tobytes() for r in x.reshape(len(x), -1)}
