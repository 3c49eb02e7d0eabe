"""What the report may call better (bibench.report.ranking): significant differences only,
ties said as ties, partial coverage never best, rank agreement with its interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bibench.metrics.comparisons import beats, compare_algorithms
from bibench.report.common import Stat
from bibench.report.ranking import (
    best_and_worst,
    coverage,
    rank_agreement,
    ranking_text,
    row_ranking,
    significant_marks,
    track_replicates,
)


def _evals(correct: dict[str, list[int]], seeds: int = 1) -> pd.DataFrame:
    """Clean eval rows of one (task, arch): per algorithm, which test examples it gets right
    (targets all 1, so a prediction of 1 is right)."""
    rows = []
    n = len(next(iter(correct.values())))
    for algo, hits in correct.items():
        for seed in range(seeds):
            rows.append({"task": "t", "arch": "a", "algorithm": algo, "seed": seed,
                         "condition": "clean", "severity": 0, "metric": "accuracy",
                         "value": float(np.mean(hits)), "n_samples": n, "status": "ok",
                         "predictions": [float(h) for h in hits],
                         "targets": [1.0] * n, "code_fingerprint": "c"})
    return pd.DataFrame(rows)


def _outcomes(n_right: int, n: int = 400, offset: int = 0) -> list[int]:
    return [1 if (i + offset) % n < n_right else 0 for i in range(n)]


def test_a_clear_winner_is_best_and_close_ones_are_tied():
    evals = _evals({"fp32": _outcomes(390), "bnn": _outcomes(300), "xnor": _outcomes(360),
                    "fda": _outcomes(362, offset=7)})
    pairs, boot = compare_algorithms(evals, replicates=500)
    assert set(boot["algorithm"]) == {"fp32", "bnn", "xnor", "fda"}  # fp32 too, paired
    assert len(pairs) == 3  # the binarized pairs
    row = pairs[(pairs["algorithm_a"] == "bnn") & (pairs["algorithm_b"] == "fda")].iloc[0]
    assert row["better"] == "fda" and row["ci95_high"] < 0
    tied = pairs[(pairs["algorithm_a"] == "fda") & (pairs["algorithm_b"] == "xnor")].iloc[0]
    assert tied["better"] == "tied" and tied["ci95_low"] < 0 < tied["ci95_high"]
    means = {"bnn": 0.75, "xnor": 0.9, "fda": 0.905}
    top, bottom = best_and_worst(means, beats(pairs, "t", "a"))
    assert top == ["fda", "xnor"] and bottom == ["bnn"]
    best, worst = significant_marks(top, bottom)
    assert best == set() and worst == {"bnn"}  # a tie is never a best
    assert ranking_text(top, bottom, 3, 1) == (
        "tied for best: fda, xnor; worst: bnn (95%, paired) (one seed: a second seed may "
        "reverse it)")


def test_all_tied_says_so():
    evals = _evals({"bnn": _outcomes(300), "xnor": _outcomes(301, offset=3)})
    pairs, _ = compare_algorithms(evals, replicates=300)
    top, bottom = best_and_worst({"bnn": 0.75, "xnor": 0.7525}, beats(pairs, "t", "a"))
    assert significant_marks(top, bottom) == (set(), set())
    assert ranking_text(top, bottom, 2, 3) == (
        "all 2 tied for best; all 2 tied for worst (95%, paired)")


def test_partial_coverage_is_never_best():
    cells = pd.DataFrame({
        "inputs": ['["t/a/bnn/0", "u/b/bnn/0"]', '["t/a/xnorpp/0"]', '["t/a/fp32/0"]']},
        index=["bnn", "xnorpp", "fp32"])
    partial = coverage(cells)
    assert partial == {"xnorpp": "1 of 2 (task, arch)"}
    stats = {"bnn": Stat(5.0, 4.9, 5.1, 3), "xnorpp": Stat(14.0, 13.9, 14.1, 3)}
    top, _, how = row_ranking("hardware_inference", stats, None, set(partial))
    assert top == [] and how == ""  # xnorpp left out, bnn alone: nothing to rank
    top, bottom, how = row_ranking("hardware_inference", {**stats, "dorefa": Stat(
        4.0, 3.9, 4.1, 3)}, None, set(partial))
    assert top == ["bnn"] and bottom == ["dorefa"] and how == "95% intervals over seeds"


def test_rows_without_a_test_are_not_ranked_and_exact_counts_are():
    one_seed = {"bnn": Stat(5.0), "xnor": Stat(6.0)}
    assert row_ranking("training_consumption", one_seed, None, set())[2] == (
        "one seed and no per-example test: not ranked")
    top, bottom, how = row_ranking("theoretical_complexity", one_seed, None, set())
    assert (top, bottom, how) == (["xnor"], ["bnn"], "exact counts")
    overlapping = {"bnn": Stat(5.0, 4.0, 6.0, 2), "xnor": Stat(5.5, 4.5, 6.5, 2)}
    top, bottom, _ = row_ranking("training_consumption", overlapping, None, set())
    assert top == ["xnor", "bnn"]  # tied


def test_track_rows_are_tested_on_the_shared_bootstrap():
    evals = pd.concat([
        _evals({"fp32": _outcomes(390), "bnn": _outcomes(300), "xnor": _outcomes(360)}),
        _evals({"fp32": _outcomes(380), "bnn": _outcomes(330), "xnor": _outcomes(340)}).assign(
            task="u", arch="b")], ignore_index=True)
    _, boot = compare_algorithms(evals, replicates=400)
    from bibench.report.ranking import replicates

    reps = track_replicates(replicates(boot), {"a": "cnn", "b": "mlp"})
    om = reps["learning_task", "OM_task"]
    assert set(om) == {"bnn", "xnor"} and len(om["xnor"]) == 400
    stats = {"bnn": Stat(float(np.mean(om["bnn"]))), "xnor": Stat(float(np.mean(om["xnor"])))}
    top, bottom, how = row_ranking("learning_task", stats, om, set())
    assert top == ["xnor"] and bottom == ["bnn"] and how.startswith("paired bootstrap")
    assert set(reps) >= {("learning_task", "relative:t"), ("neural_architecture", "OM_arch")}


def test_rank_agreement_has_an_interval():
    paper = {"bnn": 1.0, "xnor": 2.0, "fda": 3.0, "recu": 4.0}
    means = {"bnn": 0.6, "xnor": 0.7, "fda": 0.8, "recu": 0.9}
    reps = pd.DataFrame([means] * 5 + [{"bnn": 0.9, "xnor": 0.8, "fda": 0.7, "recu": 0.6}] * 5)
    assert rank_agreement(means, reps, paper) == "+1.00 [-1.00, +1.00] (n=4)"
    assert rank_agreement(means, pd.DataFrame([means] * 4), paper) == (
        "+1.00 [+1.00, +1.00] (n=4)")
    assert rank_agreement(means, None, paper) == "+1.00 (n=4; no interval)"
    assert rank_agreement({"bnn": 0.5}, None, paper).startswith("n/a (1 algorithm")


def test_failed_at_chance_and_eval_gap_cells_are_not_ranked_but_not_converged_ones_are():
    from bibench.report.cells import unranked

    rows = [("bnn", "ok", False, False), ("xnor", "ok", True, False),
            ("fda", "ok", False, True), ("recu", "diverged", False, False),
            ("dorefa", "ok", False, False)]
    metrics = pd.DataFrame([{"task": "t", "arch": "a", "algorithm": a, "seed": 0,
                             "condition": "clean", "train_status": st, "at_chance": chance,
                             "eval_gap": gap, "convergence": "not converged"}
                            for a, st, chance, gap in rows])
    assert unranked(metrics) == {("t", "a", "xnor"), ("t", "a", "fda"), ("t", "a", "recu")}


def test_an_algorithm_whose_seeds_disagree_by_more_than_ten_points_is_marked_and_not_ranked():
    from bibench.metrics.quality import seed_ranges
    from bibench.report.cells import cell_marks, unranked

    values = {"bnn": (0.90, 0.93, 0.92), "bireal": (0.92, 0.90, 0.81), "fda": (0.95, 0.85, 0.9)}
    metrics = pd.DataFrame([{"task": "t", "arch": "a", "algorithm": a, "seed": s,
                             "condition": "clean", "train_status": "ok", "value": v}
                            for a, vs in values.items() for s, v in enumerate(vs)])
    assert seed_ranges(metrics[metrics["condition"] == "clean"]) == pytest.approx(
        {("t", "a", "bnn"): 0.03, ("t", "a", "bireal"): 0.11, ("t", "a", "fda"): 0.10})
    # 10.0 points is at the limit, not beyond it
    assert unranked(metrics) == {("t", "a", "bireal")}
    assert cell_marks(metrics)[("t", "a", "bireal")] == (
        "unstable over seeds (range 11.0 points > 10)")
    assert cell_marks(metrics)[("t", "a", "fda")] == ""
    # one seed has no range: nothing is unstable
    assert unranked(metrics[metrics["seed"] == 0]) == set()
