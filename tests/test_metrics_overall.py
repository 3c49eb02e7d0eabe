"""The overall metrics reproduce the paper's own figures from its own per-task numbers."""

from __future__ import annotations

import math

import pytest

from bibench.metrics.overall import (
    corruption_gap,
    om_arch,
    om_comp,
    om_infer,
    om_robust,
    om_task,
    om_train,
    quadratic_mean,
    relative,
    sensitivity_ratio,
)

# Paper Table 2 (percent of FP accuracy), columns BNN ... FDA, rows CIFAR10 ... SpeechCom.
TABLE2_TASKS = {
    "bnn": [94.54, 75.81, 76.97, 77.94, 54.19, 48.96, 49.75, 75.03],
    "xnor": [94.73, 77.24, 74.61, 75.37, 93.86, 73.62, 59.63, 76.93],
    "reactnet": [95.92, 78.64, 81.38, 83.82, 92.41, 68.51, 67.64, 81.86],
}
TABLE2_OM_TASK = {"bnn": 70.82, "xnor": 78.97, "reactnet": 81.81}
# Table 2, architecture track: CNNs, Transformers, MLPs -> OM_arch
TABLE2_ARCH = {"bnn": ([72.90, 49.75, 64.61], 63.15), "fda": ([86.34, 70.61, 86.14], 81.36)}


@pytest.mark.parametrize("algo", sorted(TABLE2_TASKS))
def test_om_task_reproduces_table2(algo):
    per_task = {f"t{i}": [v] for i, v in enumerate(TABLE2_TASKS[algo])}
    assert om_task(per_task) == pytest.approx(TABLE2_OM_TASK[algo], abs=0.01)


@pytest.mark.parametrize("algo", sorted(TABLE2_ARCH))
def test_om_arch_reproduces_table2(algo):
    families, expected = TABLE2_ARCH[algo]
    per_family = dict(zip(["cnn", "transformer", "mlp"], ([v] for v in families), strict=True))
    assert om_arch(per_family) == pytest.approx(expected, abs=0.01)


def test_om_train_reproduces_table3():
    # Table 3: BNN sensitivity 27.28, time cost 82.19 -> OM_train 61.23; ReCU 53.33 / 58.25 -> 55.84
    assert om_train([82.19], [27.28]) == pytest.approx(61.23, abs=0.01)
    assert om_train([58.25], [53.33]) == pytest.approx(55.84, abs=0.01)


def test_om_comp_and_infer_reproduce_table3():
    # Table 3: BNN speedup 12.60, compression 13.27 -> OM_comp 12.94;
    # hardware speedup 5.45, compression 15.62 -> OM_infer 11.70
    assert om_comp([13.27], [12.60]) == pytest.approx(12.94, abs=0.01)
    assert om_infer([5.45], [15.62]) == pytest.approx(11.70, abs=0.01)
    assert om_infer([4.89], [15.52]) == pytest.approx(11.51, abs=0.01)  # ReActNet


def test_means_are_taken_inside_the_quadratic_mean():
    # Eq. 2: E over architectures first, then the quadratic mean over tasks
    assert om_task({"a": [0.8, 1.0], "b": [0.6]}) == pytest.approx(math.sqrt((0.81 + 0.36) / 2))


def test_robustness_metric_and_gap():
    assert corruption_gap(0.9, 0.7) == pytest.approx(0.2)
    # binarized net with half the gap of FP on one corruption, equal on another
    value = om_robust({"noise": [0.2], "blur": [0.1]}, {"noise": [0.1], "blur": [0.1]})
    assert value == pytest.approx(math.sqrt((4 + 1) / 2))
    with pytest.raises(ValueError, match="same corruptions"):
        om_robust({"noise": [0.2]}, {"blur": [0.1]})


def test_sensitivity_ratio_uses_population_std():
    assert sensitivity_ratio([1.0, 3.0], [1.0, 5.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="zero spread"):
        sensitivity_ratio([1.0, 2.0], [3.0, 3.0])


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError):
        quadratic_mean([])
    with pytest.raises(ValueError, match="NaN"):
        quadratic_mean([1.0, float("nan")])
    with pytest.raises(ValueError, match="pair up"):
        relative([1.0], [1.0, 2.0])
