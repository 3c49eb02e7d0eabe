"""Registry of binarization algorithms.

Built-in algorithms are the modules of this folder, each registering one class with
`@register`; external packages declare theirs in the `bibench.algorithms` entry-point group.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TypeVar

from bibench.algorithms.base import Algorithm, DeploymentFacts
from bibench.catalog import ENTRY_POINT_GROUP, FP32, algorithm_sources

__all__ = ["Algorithm", "DeploymentFacts", "register", "get_algorithm", "available", "FP32"]

_REGISTRY: dict[str, type[Algorithm]] = {}
_A = TypeVar("_A", bound=type[Algorithm])


def register(cls: _A) -> _A:
    """Class decorator: make an Algorithm subclass available under its `name`."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no `name`")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"algorithm name {cls.name!r} is already registered by {existing}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    for name in algorithm_sources():
        if name in _REGISTRY:
            continue
        ep = next((e for e in entry_points(group=ENTRY_POINT_GROUP) if e.name == name), None)
        if ep is None:
            importlib.import_module(f"bibench.algorithms.{name}")
        else:
            register(ep.load())
        if name not in _REGISTRY:
            raise ValueError(f"module for algorithm {name!r} registered no class of that name")


def available() -> list[str]:
    """Names of every binarization algorithm (fp32 excluded)."""
    _load_all()
    return sorted(_REGISTRY)


def get_algorithm(name: str) -> Algorithm:
    """A fresh instance of the named algorithm."""
    if name not in _REGISTRY:
        _load_all()
    try:
        return _REGISTRY[name]()
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown binarization algorithm {name!r}; known: {known}") from None
