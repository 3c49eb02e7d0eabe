"""The report's findings and tables, from hand-made tables: generated from the data, with the
paper beside ours and intervals where there are seeds."""

from __future__ import annotations

import math

import pandas as pd
from test_metrics_seeds import _two_seeds

from bibench.metrics.seeds import seed_summary
from bibench.metrics.tracks import compute_tracks_over_seeds
from bibench.report.cells import cell_marks, task_tables
from bibench.report.common import Stat, stats_index
from bibench.report.overview import deployment_findings, findings, largest_drops, separations


def _latency(algorithm: str, status: str, engine: str = "openvino_binary") -> dict:
    return {"task": "img", "arch": "resnet20", "algorithm": algorithm, "seed": 0,
            "device_name": "here", "engine": engine, "threads": 1, "status": status,
            "speedup_vs_fp32": 4.0 if status == "ok" else math.nan, "storage_saving": 20.0}


def test_deployment_findings_name_who_does_not_deploy_and_why():
    latency = pd.DataFrame([_latency("bnn", "ok"), _latency("fp32", "ok", "onnxruntime"),
                            _latency("xnorpp", "not deployable: spatial scale factors")])
    lines = deployment_findings(latency)
    assert lines[0] == "Deployed with 1-bit kernels on every measurement: bnn."
    assert lines[1].startswith("xnorpp does not deploy on openvino_binary (1 of 1 rows)")
    assert "spatial scale factors" in lines[1]
    assert "No binary engine" in deployment_findings(latency[latency["engine"] == "x"])[0]


def test_largest_drop_is_the_lowest_share_of_fp32():
    stats = stats_index(seed_summary(_two_seeds()))
    (drop, corrupted) = largest_drops(stats)
    # bnn keeps 0.4/0.8 on txt (seed 0) and 0.36/0.8 (seed 1): the lowest share of FP32
    assert drop.startswith("Largest accuracy drop: bnn on txt/bert keeps 47.5 ± ")
    assert "under gaussian_noise at severity 2" in corrupted


def test_separations_count_only_non_overlapping_intervals():
    stats = {("t", "a", "fp32", "clean", 0, "value"): Stat(0.9, 0.88, 0.92, 2),
             ("t", "a", "bnn", "clean", 0, "value"): Stat(0.5, 0.4, 0.6, 2),
             ("t", "a", "fda", "clean", 0, "value"): Stat(0.55, 0.45, 0.65, 2)}
    tracks = pd.DataFrame(columns=["algorithm", "track", "metric", "value", "status",
                                   "seed_mean", "ci95_low", "ci95_high", "n_seeds"])
    lines = separations(stats, tracks)
    assert lines[0] == ("With 2 seeds, 2 of 3 algorithm differences are larger than their 95% "
                        "intervals:")
    assert lines[1:] == ["t/a: fp32 90.00 ± 2.00 > bnn 50.00 ± 10.00",
                         "t/a: fp32 90.00 ± 2.00 > fda 55.00 ± 10.00"]
    one = {k: Stat(s.mean) for k, s in stats.items()}
    assert separations(one, tracks)[0].startswith("One seed: no confidence interval")


def _metrics_for_tables() -> pd.DataFrame:
    frame = _two_seeds()
    frame["stands_in_for"] = frame["task"].map({"img": "CIFAR-10", "txt": "GLUE (SST-2)"})
    frame["embedded"] = True
    frame["metric"] = "accuracy"
    frame["arch"] = frame["arch"].map({"resnet20": "resnet20", "bert": "minilm_l6"})
    return frame


def test_task_tables_put_the_paper_beside_ours_and_say_stand_in():
    metrics = _metrics_for_tables()
    tables = {t["task"]: t for t in task_tables(metrics, stats_index(seed_summary(metrics)))}
    img = tables["img"]
    assert img["heading"] == "embedded stand-in for CIFAR-10: compare orders, not values"
    row = img["rows"][0]
    assert row["source"] == "Table 7, row CIFAR10 ResNet20"
    cells = dict(zip(img["algorithms"], row["cells"], strict=True))
    assert cells["fp32"]["paper"] == 91.99 and cells["bnn"]["paper"] == 85.31
    assert cells["bnn"]["text"].startswith("68.40 ± ")  # (72 + 64.8) / 2
    assert cells["fda"]["mark"] == "diverged"
    assert row["rho"].startswith("n/a (1 algorithm in common")  # fda has no value
    txt = tables["txt"]["rows"][0]
    assert txt["source"] == "Table 9, row SST-2 BERT-Tiny6L"


def test_a_mark_column_added_by_another_stage_is_shown():
    metrics = _metrics_for_tables()
    metrics["status"] = ["at chance" if a == "bnn" and t == "txt" else "ok"
                         for a, t in zip(metrics["algorithm"], metrics["task"], strict=True)]
    marks = cell_marks(metrics)
    assert marks[("txt", "minilm_l6", "bnn")] == "at chance"
    assert marks[("img", "resnet20", "bnn")] == ""


def test_findings_come_from_the_tables():
    metrics = _metrics_for_tables()
    tracks = compute_tracks_over_seeds(metrics)
    latency = pd.DataFrame([_latency("bnn", "ok")])
    lines = findings(tracks, latency, stats_index(seed_summary(metrics)), metrics)
    assert any(line.startswith("Learning task (%) (OM_task): best is ") for line in lines)
    assert any("the paper's best: reactnet 81.81" in line for line in lines)
    assert lines[-1].startswith("2 cell(s) failed or diverged in training: "
                                "img/resnet20/fda/seed0 (diverged)")
