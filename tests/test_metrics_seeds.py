"""Seeds: means with 95% t-intervals in summary.parquet and tracks.parquet, and which
differences the report may call larger than their intervals."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from test_metrics_tracks import _metrics

from bibench.metrics.seeds import mean_ci, seed_summary, separated
from bibench.metrics.tracks import compute_tracks_over_seeds


def test_mean_ci_uses_the_t_distribution():
    # t(0.975, 2) = 4.3027 (printed tables): half-width 4.3027 * 1 / sqrt(3)
    mean, low, high, n = mean_ci([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3)
    assert high - mean == pytest.approx(4.3027 / math.sqrt(3), abs=1e-4)
    assert mean - low == pytest.approx(high - mean)
    # t(0.975, 1) = 12.706: two seeds give a wide interval, not the normal quantile's 1.96
    _, low, high, _ = mean_ci([0.80, 0.82])
    assert (high - low) / 2 == pytest.approx(12.706 * 0.01 * math.sqrt(2) / math.sqrt(2),
                                             abs=1e-4)


def test_one_seed_has_no_interval_and_nan_is_not_a_seed():
    mean, low, high, n = mean_ci([0.7, float("nan")])
    assert mean == 0.7 and n == 1 and math.isnan(low) and math.isnan(high)
    assert mean_ci([])[3] == 0


def test_separated_needs_non_overlapping_intervals():
    assert separated((0.8, 0.9), (0.5, 0.7))
    assert not separated((0.6, 0.9), (0.5, 0.7))
    assert not separated((0.8, 0.9), (math.nan, math.nan))


def _two_seeds() -> pd.DataFrame:
    one = _metrics()
    two = one.copy()
    two["seed"] = 1
    two["value"] = two["value"] * 0.9  # every metric of seed 1 is 10% lower
    two["relative_to_fp32"] = two["value"] / two["fp32_value"]
    for col in ("train_wall_seconds", "onnx_argmax_agreement", "latency_median_ms",
                "latency_speedup_vs_fp32", "storage_saving"):
        one[col], two[col] = 1.0, 3.0
    return pd.concat([one, two], ignore_index=True)


def test_summary_has_mean_interval_and_seed_count_per_cell_and_quantity():
    summary = seed_summary(_two_seeds()).set_index(
        ["task", "arch", "algorithm", "condition", "severity", "quantity"])
    row = summary.loc[("img", "resnet20", "bnn", "clean", 0, "value")]
    assert row["mean"] == pytest.approx((0.72 + 0.648) / 2) and row["n_seeds"] == 2
    assert row["ci95_high"] - row["mean"] == pytest.approx(12.706 * 0.072 / 2, rel=1e-3)
    wall = summary.loc[("img", "resnet20", "bnn", "clean", 0, "train_wall_seconds")]
    assert wall["mean"] == 2.0 and wall["ci95_low"] < 1.0
    diverged = summary.loc[("img", "resnet20", "fda", "clean", 0, "value")]
    assert diverged["n_seeds"] == 0 and math.isnan(diverged["mean"])


def test_tracks_carry_the_per_seed_mean_and_interval():
    tracks = compute_tracks_over_seeds(_two_seeds())
    row = tracks[(tracks["algorithm"] == "bnn") & (tracks["metric"] == "relative:img")].iloc[0]
    # relative accuracy of bnn on img: 0.72/0.9 = 80% (seed 0) and 72% (seed 1)
    assert row["n_seeds"] == 2 and row["seed_mean"] == pytest.approx(76.0)
    assert row["ci95_high"] - 76.0 == pytest.approx(12.706 * 4.0, rel=1e-3)
    one = compute_tracks_over_seeds(_metrics())
    row = one[(one["algorithm"] == "bnn") & (one["metric"] == "OM_task")].iloc[0]
    assert row["n_seeds"] == 1 and math.isnan(row["ci95_low"])
    assert row["seed_mean"] == pytest.approx(row["value"])


def test_the_shared_fp32_run_is_the_fp32_cell_of_every_seed():
    from bibench.metrics.aggregate import shared_fp32_training

    def run(algorithm, seed, loss):
        return {"task": "mnist", "arch": "resnet20", "algorithm": algorithm, "seed": seed,
                "epoch": 1, "loss": loss}

    train = pd.DataFrame([run("fp32", 0, 0.1), run("bnn", 0, 0.5), run("bnn", 1, 0.6)])
    evals = pd.DataFrame([{"task": "mnist", "arch": "resnet20", "algorithm": a, "seed": s}
                          for a in ("fp32", "bnn") for s in (0, 1, 2)])
    out = shared_fp32_training(train, evals)
    fp32 = out[out["algorithm"] == "fp32"].sort_values("seed")
    # the one pretraining run (pretrain_seed 0) under each seed of the FP32 cells
    assert list(fp32["seed"]) == [0, 1, 2] and set(fp32["loss"]) == {0.1}
    # binarized runs are each seed's own: a missing one stays missing
    assert len(out[out["algorithm"] == "bnn"]) == 2
    # FP32 runs with a seed of their own each are left as they are
    own = pd.concat([train, pd.DataFrame([run("fp32", 1, 0.2)])], ignore_index=True)
    assert len(shared_fp32_training(own, evals)) == len(own)
