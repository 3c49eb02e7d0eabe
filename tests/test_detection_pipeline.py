"""A detection cell through the workflow's jobs: pretrain -> binarize_finetune -> evaluate (clean
and corrupted), on a few embedded scenes, and the configs that hold detection tasks."""

from __future__ import annotations

import math

import pytest
import yaml

from bibench import jobs
from bibench.io import read_table

pytestmark = pytest.mark.usefixtures("one_thread")

DATASET = {"name": "mnist_detection_embedded", "options": {"n_train": 8, "n_test": 4}}
SETTINGS = {"epochs": 1, "batch_size": 4, "optimizer": "adam", "lr": 1e-3,
            "weight_decay": 0.0, "scheduler": "cosine"}


def test_detection_cell_trains_binarizes_and_evaluates(tmp_path, monkeypatch):
    monkeypatch.setenv("BIBENCH_CACHE", str(tmp_path / "cache"))
    cell = {"task": "det", "arch": "ssd300_vgg16_small", "seed": 0}
    fp, bnn = tmp_path / "fp.pt", tmp_path / "bnn.pt"
    jobs.pretrain(**cell, dataset=DATASET, settings=SETTINGS, device="cpu",
                  determinism="warn", threads=1, model=str(fp), code="c",
                  table=str(tmp_path / "fp.parquet"))
    jobs.finetune(**cell, algorithm="bnn", dataset=DATASET, settings=SETTINGS, device="cpu",
                  determinism="warn", threads=1, pretrained=str(fp), model=str(bnn), code="c",
                  table=str(tmp_path / "bnn.parquet"))
    train = read_table(tmp_path / "bnn.parquet", "train")
    assert train["status"].tolist() == ["ok"] and math.isfinite(train["loss"].iloc[0])
    assert math.isnan(train["train_accuracy"].iloc[0])  # no accuracy for detection
    jobs.evaluate(**cell, algorithm="bnn", dataset=DATASET,
                  corruptions={"corruptions": {"gaussian_noise": [3]}, "files": None},
                  export_settings=None, threads=1, checkpoint=str(bnn),
                  eval_table=str(tmp_path / "eval.parquet"), code="c")
    rows = read_table(tmp_path / "eval.parquet", "eval")
    assert rows["condition"].tolist() == ["clean", "gaussian_noise"]
    assert set(rows["metric"]) == {"voc07_map"}
    assert rows["value"].between(0, 1).all()
    assert rows["embedded"].all() and set(rows["stands_in_for"]) == {"VOC07"}
    # export of detectors is not wired yet (issue 16): the job says so before any work
    outputs = {k: str(tmp_path / k) for k in ("onnx", "qonnx", "openvino", "export_table",
                                              "complexity")}
    with pytest.raises(NotImplementedError, match="issue 16"):
        jobs.evaluate(**cell, algorithm="bnn", dataset=DATASET,
                      corruptions={"corruptions": {}, "files": None},
                      export_settings={"max_samples": 2}, threads=1, checkpoint=str(bnn),
                      eval_table=str(tmp_path / "eval2.parquet"), code="c", **outputs)
    assert not (tmp_path / "eval2.parquet").exists()


def test_configs_hold_the_paper_detection_tasks():
    paper = yaml.safe_load(open("config/paper.yaml"))["tasks"]
    assert paper["voc07"]["dataset"] == "voc07"
    assert paper["voc07"]["architectures"] == ["faster_rcnn_r18", "ssd300_vgg16"]
    assert paper["coco17"]["architectures"] == ["faster_rcnn_r18"]
    assert paper["voc07"]["finetune"]["optimizer"] == "adam"
    assert paper["voc07"]["finetune"]["lr"] == pytest.approx(1e-4)
    detection = yaml.safe_load(open("config/detection.yaml"))["tasks"]
    assert detection["digits_detection"]["dataset"] == "mnist_detection_embedded"
