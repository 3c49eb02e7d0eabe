"""The same cell trained twice with the same seed and thread count is the same, bit for bit:
the checkpoint files byte for byte, the tables' numbers (all but the measured times)."""

from __future__ import annotations

import pandas as pd
import torch

from bibench.io import read_table
from bibench.jobs import evaluate, finetune, pretrain

DATASET = {"name": "digits_embedded", "root": None, "options": {}, "max_train": 128,
           "max_test": 64}
SETTINGS = {"epochs": 1, "batch_size": 32, "optimizer": "adam", "lr": 0.003}
CORRUPTIONS = {"corruptions": {"gaussian_noise": [2]}, "files": None}


def _cell(folder):
    """Pretrain, binarize+finetune (BNN) and evaluate one cell into `folder`."""
    folder.mkdir()
    common = {"task": "digits", "arch": "resnet20", "seed": 3, "dataset": DATASET,
              "device": "cpu", "determinism": "warn", "threads": 1, "code": "c"}
    pretrain(**common, settings=SETTINGS, model=str(folder / "fp.pt"),
             table=str(folder / "fp.parquet"))
    finetune(**common, algorithm="bnn", settings={**SETTINGS, "epochs": 1},
             pretrained=str(folder / "fp.pt"), model=str(folder / "bnn.pt"),
             table=str(folder / "bnn.parquet"))
    evaluate(task="digits", arch="resnet20", algorithm="bnn", seed=3, dataset=DATASET,
             corruptions=CORRUPTIONS, export_settings=None, threads=1,
             checkpoint=str(folder / "bnn.pt"), eval_table=str(folder / "eval.parquet"), code="c")
    return folder


def test_same_seed_and_threads_give_identical_weights_and_metrics(tmp_path):
    threads = torch.get_num_threads()
    try:
        first, second = _cell(tmp_path / "a"), _cell(tmp_path / "b")
    finally:
        torch.set_num_threads(threads)
    for name in ("fp.pt", "bnn.pt"):
        a = torch.load(first / name, weights_only=True)["state_dict"]
        b = torch.load(second / name, weights_only=True)["state_dict"]
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    for name, table in (("fp.parquet", "train"), ("bnn.parquet", "train"),
                        ("eval.parquet", "eval")):
        a, b = read_table(first / name, table), read_table(second / name, table)
        pd.testing.assert_frame_equal(a.drop(columns=["epoch_seconds"], errors="ignore"),
                                      b.drop(columns=["epoch_seconds"], errors="ignore"))
    # and the training actually moved the weights (a test that could not fail otherwise)
    fp = torch.load(first / "fp.pt", weights_only=True)["state_dict"]
    bnn = torch.load(first / "bnn.pt", weights_only=True)["state_dict"]
    shared = [k for k in fp if k in bnn and fp[k].is_floating_point()]
    assert any(not torch.equal(fp[k], bnn[k]) for k in shared)


def test_a_checkpoints_bytes_do_not_depend_on_its_file_name(tmp_path):
    """torch.save names the archive's inner folder after the file it writes (the temporary
    name): the same model saved under two names is the same bytes."""
    from bibench.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    meta = {"arch": "a", "algorithm": "fp32", "input_shape": [3], "num_classes": 2}
    save_checkpoint(model, tmp_path / "a" / "model.pt", meta)
    save_checkpoint(model, tmp_path / "b" / "fp.pt", meta)
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "fp.pt").read_bytes()
    loaded = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    assert torch.equal(loaded["weight"], model.weight)

