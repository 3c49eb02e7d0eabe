"""The at-chance and convergence rules (bibench.metrics.quality)."""

from __future__ import annotations

import math

import numpy as np

from bibench.metrics.quality import (
    CONVERGED,
    NOT_CONVERGED,
    NOT_TRAINED,
    at_chance,
    chance_level,
    convergence,
)


def test_chance_is_the_majority_class_share_for_accuracy():
    labels = np.array([1, 1, 1, 0, 2, 1, 0, 1, 1, 0])
    assert chance_level(labels, "accuracy") == 0.6
    assert math.isnan(chance_level(labels, "miou"))
    assert math.isnan(chance_level(np.array([0.5, 1.5]), "accuracy"))  # regression targets


def _scene_targets() -> np.ndarray:
    """Two 100x100 images with two and one objects (label, x1, y1, x2, y2, ignore), padded."""
    return np.array([[[0, 10, 10, 40, 40, 0], [1, 50, 50, 90, 80, 0]],
                     [[1, 20, 30, 60, 70, 0], [-1, -1, -1, -1, -1, -1]]], dtype=np.float32)


def test_chance_of_detection_is_what_random_boxes_score():
    import torch

    from bibench.evaluation.task_metrics import TASK_METRICS

    targets = np.repeat(_scene_targets(), 20, axis=0)  # 40 images
    for metric in ("voc07_map", "coco_map"):
        chance = chance_level(targets, metric)
        assert 0 < chance < 0.2, (metric, chance)
        assert chance_level(targets, metric) == chance  # fixed seed
        rows = torch.as_tensor(targets)
        perfect = [{"boxes": r[r[:, 0] >= 0, 1:5], "labels": r[r[:, 0] >= 0, 0].long(),
                    "scores": torch.ones(int((r[:, 0] >= 0).sum()))} for r in rows]
        assert TASK_METRICS[metric](perfect, rows) > 0.99  # the same metric, on real boxes
    assert math.isnan(chance_level(np.full((2, 1, 6), -1.0), "voc07_map"))  # no objects


def test_at_chance_means_within_five_points_of_it():
    assert at_chance(0.63, 0.58) and at_chance(0.40, 0.58)
    assert not at_chance(0.64, 0.58)
    assert not at_chance(float("nan"), 0.1) and not at_chance(0.1, float("nan"))


def test_converged_when_the_last_epoch_lowers_the_loss_by_less_than_ten_percent():
    assert convergence([1.0, 0.5, 0.46]) == CONVERGED  # 8% lower
    assert convergence([1.0, 0.5, 0.44]) == NOT_CONVERGED  # 12% lower
    assert convergence([1.0, 0.5, 0.6]) == CONVERGED  # went up: no longer falling
    assert convergence([0.3]) == NOT_CONVERGED  # one epoch cannot show it
    assert convergence([1.0, float("nan")]) == NOT_TRAINED
    assert convergence([1.0, 0.5, 0.44]) == NOT_CONVERGED  # 0.06: above the absolute floor


def test_a_near_zero_loss_that_still_falls_by_a_fraction_has_converged():
    """The absolute floor: 0.020 -> 0.012 is 40% lower but 0.008 nats, no learning left to
    show (the FP32 speech and point-cloud cells were marked `not converged` this way)."""
    assert convergence([0.3, 0.020, 0.012]) == CONVERGED
    assert convergence([0.3, 0.05, 0.035]) == NOT_CONVERGED  # 0.015: still learning
    assert convergence([0.3, 0.010, 0.0]) == NOT_CONVERGED  # exactly the floor: not below it
    assert convergence([1.0, 0.9], status="diverged") == NOT_TRAINED
