"""The workflow jobs (bibench.jobs): failures become rows, not crashed jobs or numbers."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from bibench.training.checkpoint import save_checkpoint


def test_a_failing_training_run_becomes_a_failed_cell(digits):
    from bibench.jobs import _train_or_fail

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            raise RuntimeError("kernel exploded")

    records = _train_or_fail(Broken(), digits, {"epochs": 1}, 0, torch.device("cpu"))
    assert len(records) == 1 and records[0]["status"].startswith("failed: RuntimeError")
    assert math.isnan(records[0]["loss"])


def test_cells_that_did_not_train_evaluate_to_nan(tmp_path, trained_fp32, digits):
    from bibench.io import read_table
    from bibench.jobs import evaluate

    meta = {"arch": "resnet20", "algorithm": "fp32", "input_shape": list(digits.input_shape),
            "num_classes": digits.num_classes, "train_status": "diverged"}
    save_checkpoint(trained_fp32[0], tmp_path / "m.pt", meta)
    evaluate(task="digits", arch="resnet20", algorithm="fp32", seed=0,
             dataset={"name": "digits_embedded", "max_train": 64, "max_test": 32},
             corruptions={"corruptions": {"gaussian_noise": [1]}, "files": None},
             export_settings=None, threads=1, checkpoint=str(tmp_path / "m.pt"),
             eval_table=str(tmp_path / "eval.parquet"), code="c")
    rows = read_table(tmp_path / "eval.parquet", "eval")
    assert len(rows) == 2 and rows["value"].isna().all()


def test_a_classifier_at_chance_level_is_not_held_to_parity():
    from bibench.jobs import _at_chance

    labels = np.array([0] * 6 + [1] * 4)
    always_zero = np.tile([1.0, 0.0], (10, 1))
    assert _at_chance(always_zero, labels)  # 60% = the majority class
    perfect = np.eye(2)[labels]
    assert not _at_chance(perfect, labels)
