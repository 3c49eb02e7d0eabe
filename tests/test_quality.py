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


def test_chance_is_the_majority_class_share_for_accuracy_only():
    labels = np.array([1, 1, 1, 0, 2, 1, 0, 1, 1, 0])
    assert chance_level(labels, "accuracy") == 0.6
    assert math.isnan(chance_level(labels, "miou"))
    assert math.isnan(chance_level(np.array([0.5, 1.5]), "accuracy"))  # regression targets


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
    assert convergence([1.0, 0.9], status="diverged") == NOT_TRAINED
