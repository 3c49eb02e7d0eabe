"""Track metrics from a hand-made metrics table: values, exclusions, 'not measured'."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from bibench.metrics.tracks import compute_tracks, compute_tracks_over_seeds


def _rows(algorithm, task, arch, family, clean, corrupted, status="ok", seconds=1.0, fp=None,
          at_chance=False):
    base = {"algorithm": algorithm, "task": task, "arch": arch, "family": family, "seed": 0,
            "train_status": status, "train_seconds_per_epoch": seconds, "at_chance": at_chance,
            "compression_ratio": 1.0 if algorithm == "fp32" else 20.0,
            "speedup_ratio": 1.0 if algorithm == "fp32" else 30.0}
    fp = fp or {}
    rows = [{**base, "condition": "clean", "severity": 0, "value": clean,
             "fp32_value": fp.get("clean", clean)}]
    for sev, value in enumerate(corrupted, start=1):
        rows.append({**base, "condition": "gaussian_noise", "severity": sev, "value": value,
                     "fp32_value": fp.get(sev, value)})
    return rows


def _metrics():
    rows = []
    fp_a = {"clean": 0.9, 1: 0.8, 2: 0.7}
    fp_b = {"clean": 0.8}
    rows += _rows("fp32", "img", "resnet20", "cnn", 0.9, [0.8, 0.7], seconds=2.0)
    rows += _rows("fp32", "txt", "bert", "transformer", 0.8, [], seconds=4.0)
    rows += _rows("bnn", "img", "resnet20", "cnn", 0.72, [0.62, 0.52], fp=fp_a, seconds=4.0)
    rows += _rows("bnn", "txt", "bert", "transformer", 0.4, [], fp=fp_b, seconds=4.0)
    rows += _rows("fda", "img", "resnet20", "cnn", float("nan"), [], status="diverged", fp=fp_a)
    rows += _rows("fda", "txt", "bert", "transformer", 0.6, [], fp=fp_b, seconds=8.0)
    frame = pd.DataFrame(rows)
    frame["relative_to_fp32"] = frame["value"] / frame["fp32_value"]
    return frame


def _value(tracks, algo, metric):
    row = tracks[(tracks["algorithm"] == algo) & (tracks["metric"] == metric)].iloc[0]
    return row


def test_accuracy_tracks_follow_eqs_2_and_3():
    tracks = compute_tracks(_metrics())
    assert _value(tracks, "bnn", "relative:img")["value"] == pytest.approx(80.0)
    assert _value(tracks, "bnn", "relative:txt")["value"] == pytest.approx(50.0)
    assert _value(tracks, "bnn", "OM_task")["value"] == pytest.approx(
        100 * math.sqrt((0.8**2 + 0.5**2) / 2))
    om_arch = _value(tracks, "bnn", "OM_arch")
    assert om_arch["value"] == pytest.approx(100 * math.sqrt((0.8**2 + 0.5**2) / 2))
    assert "mlp" not in om_arch["note"] and "families measured" in om_arch["note"]


def test_robustness_uses_gap_ratios():
    tracks = compute_tracks(_metrics())
    # FP gap: 0.9 - mean(0.8, 0.7) = 0.15; BNN gap: 0.72 - mean(0.62, 0.52) = 0.15
    assert _value(tracks, "bnn", "OM_robust")["value"] == pytest.approx(100.0)


def test_failed_cells_are_left_out_and_named():
    tracks = compute_tracks(_metrics())
    fda = _value(tracks, "fda", "OM_task")
    assert json.loads(fda["excluded"]) == ["img/resnet20/fda/0"]
    assert fda["value"] == pytest.approx(100 * 0.75)  # only the text cell counts


def test_a_reference_that_scored_zero_gives_no_ratio_and_is_named():
    """An untrained detector's FP32 mAP can be 0: its cells have no relative accuracy (the
    ratio is 0/0 or x/0) and are left out by name instead of making the tracks NaN."""
    frame = _metrics()
    det = pd.DataFrame(_rows("fp32", "det", "ssd", "cnn", 0.0, [])
                       + _rows("bnn", "det", "ssd", "cnn", 0.01, [], fp={"clean": 0.0}))
    det["relative_to_fp32"] = det["value"] / det["fp32_value"]
    tracks = compute_tracks(pd.concat([frame, det], ignore_index=True))
    bnn = _value(tracks, "bnn", "OM_task")
    assert "det/ssd/bnn/0" in json.loads(bnn["excluded"])
    assert bnn["value"] == pytest.approx(100 * math.sqrt((0.8**2 + 0.5**2) / 2))


def test_unmeasured_tracks_say_so_and_are_never_zero():
    tracks = compute_tracks(_metrics())
    for metric in ("OM_infer", "OM_train", "sensitivity"):
        row = _value(tracks, "bnn", metric)
        assert row["status"] == "not measured" and math.isnan(row["value"])
    assert _value(tracks, "bnn", "time_ratio")["value"] == pytest.approx(100 * (0.5 + 1.0) / 2)
    assert _value(tracks, "bnn", "OM_comp")["value"] == pytest.approx(
        math.sqrt((20**2 + 30**2) / 2))


def test_sensitivity_and_om_train_from_the_grid():
    grid = pd.DataFrame([
        {"task": "img", "arch": "resnet20", "algorithm": a, "seed": 0, "setting": s,
         "value": v, "train_status": "ok"}
        for a, values in {"fp32": [0.9, 0.8, 0.7], "bnn": [0.6, 0.2, 0.4]}.items()
        for s, v in zip(["a", "b", "c"], values, strict=True)
    ])
    tracks = compute_tracks(_metrics(), grid)
    assert _value(tracks, "bnn", "sensitivity")["value"] == pytest.approx(50.0)
    time_ratio = _value(tracks, "bnn", "time_ratio")["value"]
    assert _value(tracks, "bnn", "OM_train")["value"] == pytest.approx(
        math.sqrt((time_ratio**2 + 50.0**2) / 2))
    assert _value(tracks, "fda", "sensitivity")["status"] == "not measured"


def _latency_row(algorithm, engine, threads, speedup, saving, status="ok"):
    return {"task": "img", "arch": "resnet20", "algorithm": algorithm, "seed": 0,
            "device_name": "local-cpu", "engine": engine, "threads": threads, "status": status,
            "speedup_vs_fp32": speedup, "storage_saving": saving}


def test_om_infer_follows_eq_9_over_binary_engine_rows_only():
    latency = pd.DataFrame([
        _latency_row("bnn", "openvino_binary", 1, 12.0, 20.0),
        _latency_row("bnn", "openvino_binary", 2, 8.0, 20.0),
        _latency_row("bnn", "onnxruntime", 1, 0.5, 1.0),  # float kernels: not counted
        _latency_row("fda", "openvino_binary", 1, float("nan"), float("nan"),
                     status="not deployable: spatial scale"),
    ])
    tracks = compute_tracks(_metrics(), latency=latency)
    om = _value(tracks, "bnn", "OM_infer")
    assert om["status"] == "ok"
    assert om["value"] == pytest.approx(math.sqrt((10.0 ** 2 + 20.0 ** 2) / 2))
    assert _value(tracks, "bnn", "speedup")["value"] == pytest.approx(10.0)
    assert len(json.loads(om["inputs"])) == 2
    fda = _value(tracks, "fda", "OM_infer")
    assert fda["status"] == "not deployable" and math.isnan(fda["value"])
    assert "spatial scale" in fda["note"]


def test_contended_measurements_are_kept_out_of_om_infer_and_said():
    """A row timed while another bibench job timed beside it keeps its numbers in
    latency.parquet, but the hardware track does not use them until it is re-timed."""
    contended = "contended: another bibench job timed on the same device at the same time"
    latency = pd.DataFrame([
        _latency_row("bnn", "openvino_binary", 1, 12.0, 20.0),
        _latency_row("bnn", "openvino_binary", 2, 2.0, 20.0, status=contended),
        _latency_row("fda", "openvino_binary", 1, 3.0, 20.0, status=contended),
    ])
    tracks = compute_tracks(_metrics(), latency=latency)
    speedup = _value(tracks, "bnn", "speedup")
    assert speedup["value"] == pytest.approx(12.0)  # not (12 + 2) / 2
    assert json.loads(speedup["excluded"]) == [
        "img/resnet20/bnn/0 on local-cpu/openvino_binary/2t (contended)"]
    assert "1 contended measurement(s) left out" in speedup["note"]
    assert "--forcerun" in _value(tracks, "bnn", "OM_infer")["note"]
    fda = _value(tracks, "fda", "OM_infer")  # nothing left: not measured, not "failed"
    assert fda["status"] == "not measured" and math.isnan(fda["value"])
    assert "contended" in fda["note"]


def test_om_infer_without_a_binary_engine_is_not_measured():
    latency = pd.DataFrame([_latency_row("bnn", "onnxruntime", 1, 0.5, 1.0)])
    tracks = compute_tracks(_metrics(), latency=latency)
    row = _value(tracks, "bnn", "OM_infer")
    assert row["status"] == "not measured" and "no binary engine" in row["note"]


def _with_a_cell_at_chance():
    """bnn on img sits at chance: it loses almost nothing under noise (gap 0.01)."""
    frame = _metrics()
    frame = frame[frame["algorithm"] != "fda"]
    fp_a = {"clean": 0.9, 1: 0.8, 2: 0.7}
    rows = _rows("xnor", "img", "resnet20", "cnn", 0.12, [0.11, 0.11], fp=fp_a, at_chance=True)
    rows += _rows("xnor", "txt", "bert", "transformer", 0.6, [], fp={"clean": 0.8})
    extra = pd.DataFrame(rows)
    extra["relative_to_fp32"] = extra["value"] / extra["fp32_value"]
    return pd.concat([frame, extra], ignore_index=True)


def test_a_cell_at_chance_is_left_out_of_robustness_and_named():
    tracks = compute_tracks(_with_a_cell_at_chance())
    om = _value(tracks, "xnor", "OM_robust")
    # with the cell, Eq. 4 would give 0.15 / 0.01 = 1500%; without it nothing is left
    assert math.isnan(om["value"]) and om["status"] == "not measured"
    assert "at chance left out" in om["note"]
    assert json.loads(om["excluded"]) == ["img/resnet20/xnor/0 (at chance)"]
    assert _value(tracks, "bnn", "OM_robust")["value"] == pytest.approx(100.0)


def test_values_built_on_a_cell_at_chance_say_so():
    tracks = compute_tracks(_with_a_cell_at_chance())
    img = _value(tracks, "xnor", "relative:img")
    assert json.loads(img["at_chance"]) == ["img/resnet20/xnor/0"] and "at chance" in img["note"]
    assert json.loads(_value(tracks, "xnor", "relative:txt")["at_chance"]) == []
    assert json.loads(_value(tracks, "xnor", "OM_task")["at_chance"]) == ["img/resnet20/xnor/0"]
    assert json.loads(_value(tracks, "bnn", "OM_task")["at_chance"]) == []


def test_an_fp32_reference_at_chance_makes_every_cell_of_it_unusable_for_robustness():
    frame = _metrics()
    frame.loc[(frame["algorithm"] == "fp32") & (frame["task"] == "img"), "at_chance"] = True
    tracks = compute_tracks(frame)
    assert json.loads(_value(tracks, "bnn", "relative:img")["at_chance"]) == [
        "img/resnet20/bnn/0"]
    assert "at chance left out" in _value(tracks, "bnn", "OM_robust")["note"]


def test_best_and_worst_never_go_to_a_value_at_chance():
    from bibench.report.summary_tables import summary_table

    table = summary_table(compute_tracks_over_seeds(_with_a_cell_at_chance()), ("learning_task",))
    row = next(r for r in table["rows"] if r["metric"] == "relative:img")
    cells = dict(zip(table["algorithms"], row["cells"], strict=True))
    # xnor (13% of FP32, at chance) would be the worst; without it only bnn is left
    assert cells["xnor"]["at_chance"] and not cells["xnor"]["worst"]
    assert not any(c["best"] or c["worst"] for c in row["cells"])


def test_a_cell_with_an_eval_gap_is_never_best_or_worst_and_is_left_out_of_robustness():
    """xnor scores worst on img, but in eval mode it scored far below its own last epoch:
    its number does not measure the model that trained."""
    from bibench.report.summary_tables import summary_table

    frame = _with_a_cell_at_chance()
    frame["at_chance"] = False
    frame["eval_gap"] = (frame["algorithm"] == "xnor") & (frame["task"] == "img")
    tracks = compute_tracks(frame)
    assert json.loads(_value(tracks, "xnor", "relative:img")["at_chance"]) == [
        "img/resnet20/xnor/0 (eval gap)"]
    assert "eval gap" in _value(tracks, "xnor", "relative:img")["note"]
    robust = _value(tracks, "xnor", "OM_robust")
    assert "img/resnet20/xnor/0 (eval gap)" in json.loads(robust["excluded"])
    assert "1 cells with an eval gap left out" in robust["note"]
    table = summary_table(compute_tracks_over_seeds(frame), ("learning_task",))
    row = next(r for r in table["rows"] if r["metric"] == "relative:img")
    cells = dict(zip(table["algorithms"], row["cells"], strict=True))
    assert not cells["xnor"]["worst"] and not cells["xnor"]["best"]
