"""The data interface (bibench.data): stratified fixed splits, unknown names, and the on-disk cache
of parsed embedded data sets."""

from __future__ import annotations

import pytest
import torch

from bibench.data import load_dataset, stratified_split


def test_split_is_stratified_disjoint_and_fixed():
    labels = torch.arange(10).repeat(20)
    train_a, test_a = stratified_split(labels, 0.25, seed=0)
    train_b, test_b = stratified_split(labels, 0.25, seed=0)
    assert torch.equal(train_a, train_b) and torch.equal(test_a, test_b)
    assert set(train_a.tolist()).isdisjoint(test_a.tolist())
    assert torch.bincount(labels[test_a]).tolist() == [5] * 10


def test_unknown_dataset_is_named():
    with pytest.raises(KeyError, match="unknown dataset 'cifar11'"):
        load_dataset("cifar11")


def test_embedded_data_is_cached_on_disk_and_rebuilt_when_damaged(tmp_path, monkeypatch):
    import bibench.data as data_module
    import bibench.data.embedded  # noqa: F401  (registers the embedded datasets)

    monkeypatch.setenv("BIBENCH_CACHE", str(tmp_path))
    calls = []
    info = data_module._DATASETS["digits_embedded"]
    monkeypatch.setitem(data_module._DATASETS, "digits_embedded", data_module.DatasetInfo(
        lambda: calls.append(1) or info.loader(), info.description))
    first = load_dataset("digits_embedded")
    second = load_dataset("digits_embedded")
    assert len(calls) == 1 and torch.equal(first.x_test, second.x_test)
    assert second.embedded and second.stands_in_for == first.stands_in_for
    (entry,) = (tmp_path / "datasets").iterdir()
    entry.write_bytes(b"damaged")
    assert torch.equal(load_dataset("digits_embedded").x_train, first.x_train)
    assert len(calls) == 2
