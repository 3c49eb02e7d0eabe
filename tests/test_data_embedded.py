"""What every embedded stand-in data set shares: registered and labelled, loads without network,
fixed disjoint splits, fresh tensors per load, fast once cached. One module per modality
(test_data_embedded_<modality>.py) checks the shapes and contents."""

from __future__ import annotations

import time

import pytest
import torch
from fixtures_embedded import load, rows

from bibench.data import _DATASETS

NAMES = ["speech_embedded", "text_embedded", "pointcloud_embedded", "partseg_embedded"]
pytestmark = pytest.mark.usefixtures("no_network")


@pytest.mark.parametrize("name", NAMES)
def test_registered_embedded_and_labelled(name):
    data = load(name)
    assert name in _DATASETS and data.name == name
    assert data.embedded is True
    assert data.source and data.stands_in_for
    for t in (data.x_train, data.x_test):
        if t.is_floating_point():
            assert torch.isfinite(t).all()


@pytest.mark.parametrize("name", NAMES)
def test_split_fixed_disjoint_and_copies(name):
    a, b = load(name), load(name)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not rows(a.x_train) & rows(a.x_test)
    a.x_train.zero_()  # a caller modifying its tensors does not corrupt the cache
    assert not torch.equal(load(name).x_train, a.x_train)


@pytest.mark.parametrize("name", NAMES)
def test_load_is_fast_once_cached(name):
    load(name)
    start = time.perf_counter()
    load(name)
    assert time.perf_counter() - start < 0.5
