"""Task metrics: hand-computed examples and cross-checks against scikit-learn / scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import f1_score, matthews_corrcoef

from bibench.evaluation.task_metrics import (
    SHAPENET_PART_GROUPS,
    TASK_METRICS,
    accuracy,
    f1,
    mcc,
    miou,
    miou_shapenet,
    pearson,
    pearson_and_spearman,
    pearson_spearman,
    predicted_labels,
    rankdata,
    spearman,
)


def onehot_logits(labels: list[int], n_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(labels), n_classes).float() * 3 - 1


def test_registry_keys_and_types():
    assert {"accuracy", "f1", "mcc", "pearson_spearman", "miou"} <= set(TASK_METRICS)
    logits, y = onehot_logits([0, 1, 1], 2), torch.tensor([0, 1, 0])
    for name in ("accuracy", "f1", "mcc"):
        assert isinstance(TASK_METRICS[name](logits, y), float)
    assert isinstance(TASK_METRICS["pearson_spearman"](torch.randn(5, 1), torch.randn(5)), float)
    assert isinstance(TASK_METRICS["miou"](torch.randn(2, 3, 4), torch.zeros(2, 4)), float)


def test_predicted_labels_conventions():
    assert predicted_labels(torch.tensor([[0.1, 2.0], [3.0, -1.0]])).tolist() == [1, 0]
    assert predicted_labels(torch.tensor([0.5, -0.5])).tolist() == [1, 0]  # binary logit
    assert predicted_labels(torch.tensor([[0.5], [-0.5]])).tolist() == [1, 0]
    assert predicted_labels(torch.tensor([2, 0, 1])).tolist() == [2, 0, 1]  # labels
    seg = torch.zeros(1, 3, 2)
    seg[0, 2, 0] = seg[0, 1, 1] = 1.0
    assert predicted_labels(seg).tolist() == [[2, 1]]


def test_accuracy_hand_example():
    logits = onehot_logits([0, 1, 2, 2], 3)
    assert accuracy(logits, torch.tensor([0, 1, 1, 2])) == pytest.approx(0.75)
    assert accuracy(torch.tensor([1, 1]), torch.tensor([1, 0])) == 0.5


def test_f1_hand_example():
    # pred 1 1 0 0 1, target 1 0 1 0 1: tp=2, fp=1, fn=1 -> F1 = 4 / 6
    pred, target = torch.tensor([1, 1, 0, 0, 1]), torch.tensor([1, 0, 1, 0, 1])
    assert f1(pred, target) == pytest.approx(2 / 3)
    assert f1(onehot_logits(pred.tolist(), 2), target) == pytest.approx(2 / 3)
    assert f1(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 0, 1])) == 0.0


def test_mcc_hand_example():
    # tp=2, tn=1, fp=1, fn=1: (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6
    pred, target = torch.tensor([1, 1, 0, 0, 1]), torch.tensor([1, 0, 1, 0, 1])
    assert mcc(pred, target) == pytest.approx(1 / 6)
    assert mcc(target, target) == pytest.approx(1.0)
    assert mcc(1 - target, target) == pytest.approx(-1.0)
    assert mcc(torch.ones(5, dtype=torch.long), target) == 0.0  # constant prediction


@pytest.mark.parametrize("seed", range(5))
def test_f1_mcc_match_sklearn(seed):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 2, (200,), generator=gen)
    logits = torch.randn(200, 2, generator=gen) + 0.8 * torch.nn.functional.one_hot(target, 2)
    pred = logits.argmax(1).numpy()
    assert f1(logits, target) == pytest.approx(f1_score(target.numpy(), pred))
    assert mcc(logits, target) == pytest.approx(matthews_corrcoef(target.numpy(), pred))
    # multiclass MCC
    t3 = torch.randint(0, 4, (300,), generator=gen)
    p3 = torch.where(torch.rand(300, generator=gen) < 0.5, t3, torch.randint(0, 4, (300,)))
    assert mcc(p3, t3) == pytest.approx(matthews_corrcoef(t3.numpy(), p3.numpy()))


def test_pearson_spearman_hand_example():
    x, y = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([2.0, 4.0, 6.0, 9.0])
    # deviations x: -1.5 -.5 .5 1.5; y (mean 5.25): -3.25 -1.25 .75 3.75
    cov = 1.5 * 3.25 + 0.5 * 1.25 + 0.5 * 0.75 + 1.5 * 3.75
    expected = cov / math.sqrt(5.0 * (3.25**2 + 1.25**2 + 0.75**2 + 3.75**2))
    assert pearson(x, y) == pytest.approx(expected)
    assert spearman(x, y) == pytest.approx(1.0)  # monotone
    assert pearson_spearman(x[:, None], y) == pytest.approx((expected + 1.0) / 2)
    assert pearson_and_spearman(x, -y) == pytest.approx((-expected, -1.0))


def test_rankdata_ties():
    x = torch.tensor([10.0, 20.0, 10.0, 30.0, 20.0, 10.0])
    assert rankdata(x).tolist() == [2.0, 4.5, 2.0, 6.0, 4.5, 2.0]
    assert rankdata(x).tolist() == stats.rankdata(x.numpy()).tolist()


@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 6, size=120).astype(np.float64)  # STS-B-like scores, many ties
    output = np.round(target + rng.normal(scale=1.5, size=120))  # rounded: ties too
    out_t, tgt_t = torch.tensor(output, dtype=torch.float32)[:, None], torch.tensor(target)
    assert pearson(out_t, tgt_t) == pytest.approx(stats.pearsonr(output, target)[0], abs=1e-6)
    assert spearman(out_t, tgt_t) == pytest.approx(stats.spearmanr(output, target)[0], abs=1e-9)
    both = (stats.pearsonr(output, target)[0] + stats.spearmanr(output, target)[0]) / 2
    assert pearson_spearman(out_t, tgt_t) == pytest.approx(both, abs=1e-6)


def test_correlation_of_constant_output_is_zero():
    assert pearson(torch.ones(5), torch.arange(5.0)) == 0.0
    assert spearman(torch.ones(5), torch.arange(5.0)) == 0.0


def seg_logits(pred: list[list[int]], n_parts: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(pred), n_parts).float().permute(0, 2, 1)


def test_miou_hand_example():
    # shape 0: parts 0/1 present; part 2 absent from both -> IoU 1
    #   part 0: pred {0,1}, true {0,1,2} -> 2/3; part 1: pred {2,3}, true {3} -> 1/2
    # shape 1: perfect -> 1
    pred = [[0, 0, 1, 1], [2, 2, 0, 0]]
    target = torch.tensor([[0, 0, 0, 1], [2, 2, 0, 0]])
    shape0 = (2 / 3 + 1 / 2 + 1) / 3
    expected = (shape0 + 1.0) / 2
    assert miou(seg_logits(pred, 3), target) == pytest.approx(expected)
    assert miou(torch.tensor(pred), target) == pytest.approx(expected)  # labels accepted
    assert TASK_METRICS["miou"](seg_logits(pred, 3), target) == pytest.approx(expected)


def test_miou_part_predicted_but_absent_counts_zero():
    target = torch.tensor([[0, 0, 0, 0]])
    pred = seg_logits([[0, 0, 0, 1]], 2)  # part 1 predicted but absent: IoU 0
    assert miou(pred, target) == pytest.approx((3 / 4 + 0.0) / 2)


def test_miou_within_category_groups():
    groups = [[0, 1], [2, 3]]
    target = torch.tensor([[2, 2, 3, 3]])
    logits = torch.zeros(1, 4, 4)
    logits[0, 0] = 5.0  # a part of another category scores highest everywhere: ignored
    logits[0, 2, :2] = logits[0, 3, 2:] = 1.0
    assert miou(logits, target, part_groups=groups) == pytest.approx(1.0)
    assert miou(logits, target) < 0.6  # without the groups part 0 wins


def test_miou_shapenet_groups_cover_50_parts():
    parts = sorted(p for group in SHAPENET_PART_GROUPS.values() for p in group)
    assert parts == list(range(50))
    target = torch.full((1, 6), 12)  # a chair seen only as part 12
    logits = torch.zeros(1, 50, 6)
    logits[0, 12] = 1.0
    assert miou_shapenet(logits, target) == pytest.approx(1.0)
