"""What every embedded stand-in data set shares: registered and labelled, loads without network,
fixed disjoint splits, fresh tensors per load, parsed once and then read from the cache. One
module per modality (test_data_embedded_<modality>.py) checks the shapes and contents."""

from __future__ import annotations

import pytest
import torch
from fixtures_embedded import load, rows

from bibench.data import _DATASETS, DatasetInfo, load_dataset

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
def test_second_load_reads_the_cache_instead_of_parsing_again(name, tmp_path, monkeypatch):
    # what makes a cached load fast, checked without a clock: the loader runs only once
    monkeypatch.setenv("BIBENCH_CACHE", str(tmp_path))
    calls = []
    info = _DATASETS[name]
    monkeypatch.setitem(_DATASETS, name, DatasetInfo(
        lambda: calls.append(1) or info.loader(), info.description))
    first, second = load_dataset(name), load_dataset(name)
    assert len(calls) == 1
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(first, field), getattr(second, field))
