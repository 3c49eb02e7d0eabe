"""Tasks and their data behind one interface: splits, input shape, class count, metric.

A dataset is registered under a name with a loader returning a `TaskData`. Embedded datasets
ship inside PyPI packages and stand in for a dataset of the paper; `stands_in_for` says which,
so every row and the report can label them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor


@dataclass(frozen=True)
class TaskData:
    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int  # classes (classification), parts (segmentation), 1 (regression)
    metric: str  # bibench.evaluation.predict.METRICS: accuracy, f1, mcc, pearson_spearman, miou
    embedded: bool  # True when the data is a stand-in shipped in a PyPI package
    stands_in_for: str  # the paper's dataset this one represents
    source: str  # where the data comes from, for the report
    # "classification": y (N,) int64, logits (N, C); "regression": y (N,) float, output (N, 1);
    # "segmentation": y (N, P) int64 per point, logits (N, C, P).
    task_type: str = "classification"
    # The release's own ids, where a result file for its official evaluation server needs them:
    # the id of each test example (COCO image ids) and of each class label (COCO category ids).
    test_ids: tuple[int | str, ...] | None = None
    class_ids: tuple[int, ...] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


@dataclass(frozen=True)
class DatasetInfo:
    loader: Callable[..., TaskData]
    description: str
    # read from the user's copy of the release (the task's `root`), not from a wheel
    official: bool = False
    # image inputs: the robustness track's corruptions apply to its test images
    image: bool = False
    # a task's dataset; False for a set read only beside another's test set (CIFAR-10-C)
    task: bool = True


_DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, description: str, *, official: bool = False, image: bool = False,
                     task: bool = True) -> Callable[[Callable[..., TaskData]], Callable]:
    """Register a loader under `name` (the one registry of embedded and official datasets).

    The name and the keywords must be literals: the workflow reads them from the source
    without importing torch (bibench.sources, bibench.catalog)."""
    def wrap(loader: Callable[..., TaskData]) -> Callable[..., TaskData]:
        _DATASETS[name] = DatasetInfo(loader, description, official=official, image=image,
                                      task=task)
        return loader

    return wrap


def registered_datasets() -> dict[str, DatasetInfo]:
    """Every dataset, embedded and official (importing their modules registers them)."""
    import bibench.data.embedded
    import bibench.data.official  # noqa: F401

    return dict(_DATASETS)


def load_dataset(name: str, *, root: str | None = None, max_train: int | None = None,
                 max_test: int | None = None, options: dict | None = None) -> TaskData:
    """Load a dataset: an embedded one by name, or an official one from `root`.

    Embedded datasets ship in PyPI wheels and take no root; official ones (CIFAR-10, GLUE, ...)
    are read from the user's copy in the release's on-disk format. `max_train` / `max_test`
    truncate the splits (the splits are class-interleaved, so truncation keeps them balanced).
    """
    datasets = registered_datasets()
    if name not in datasets:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(datasets))}")
    if datasets[name].official:
        if root is None:
            raise ValueError(f"dataset {name!r} is read from your copy: set `root:` in the task")
        return datasets[name].loader(Path(root).expanduser(), max_train=max_train,
                                     max_test=max_test, **(options or {}))
    if root is not None:
        raise ValueError(f"dataset {name!r} is embedded: it takes no `root`")
    data = _cached(name, options or {})
    if max_train is None and max_test is None:
        return data
    return replace(data, x_train=data.x_train[:max_train], y_train=data.y_train[:max_train],
                   x_test=data.x_test[:max_test], y_test=data.y_test[:max_test])


def load_task(settings: dict) -> TaskData:
    """load_dataset with a task's dataset settings as the workflow passes them
    (bibench.config.dataset_settings: name, root, options, max_train, max_test)."""
    return load_dataset(settings["name"], root=settings.get("root"),
                        options=settings.get("options"), max_train=settings.get("max_train"),
                        max_test=settings.get("max_test"))


def _cache_dir() -> Path:
    return Path(os.environ.get("BIBENCH_CACHE", Path.home() / ".cache" / "bibench")) / "datasets"


def _cached(name: str, options: dict) -> TaskData:
    """An embedded dataset, parsed once and kept on disk as tensors.

    Every workflow job loads its task's data; parsing the wheels' files (MNIST text, bz2 CSV,
    tokenizing) costs seconds each time, reading the cached tensors a few milliseconds. The key
    covers the options and the loaders' source code, so a change to either rebuilds the entry.
    """
    import hashlib
    import json

    from bibench.data.embedded import MODULES

    code = b"".join(Path(m.__file__).read_bytes() for m in MODULES)
    key = hashlib.sha256(json.dumps([name, options], sort_keys=True).encode() + code)
    path = _cache_dir() / f"{name}-{key.hexdigest()[:16]}.pt"
    if path.exists():
        try:
            return TaskData(**torch.load(path, weights_only=True))
        except Exception:  # noqa: BLE001  a damaged cache entry is rebuilt, never trusted
            path.unlink(missing_ok=True)
    data = _DATASETS[name].loader(**options)
    try:
        from bibench.io import atomic_write

        atomic_write(path, lambda tmp: torch.save(dict(data.__dict__), tmp))
    except OSError:  # a read-only home still works, only slower
        pass
    return data


def stratified_split(labels: Tensor, test_fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Indices of a class-stratified, shuffled train/test split, fixed by `seed`."""
    gen = torch.Generator().manual_seed(seed)
    train, test = [], []
    for cls in labels.unique(sorted=True):
        idx = (labels == cls).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_test = round(len(idx) * test_fraction)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    train_idx, test_idx = torch.cat(train), torch.cat(test)
    # interleave classes so that truncating a split keeps it balanced
    return (
        train_idx[torch.randperm(len(train_idx), generator=gen)],
        test_idx[torch.randperm(len(test_idx), generator=gen)],
    )
