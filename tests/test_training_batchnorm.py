"""BatchNorm statistics for evaluation (bibench.training.batchnorm) and the eval-mode training
accuracy that every training run records."""

from __future__ import annotations

import torch
from torch import nn

from bibench.binarize import binarize
from bibench.training.batchnorm import (
    STATISTICS_SAMPLE,
    estimate_batchnorm_statistics,
    training_sample,
)
from bibench.training.loop import TrainSettings, train


def _deep_binary_mlp(width: int = 32, depth: int = 6) -> nn.Module:
    """A stack where each BatchNorm feeds a sign: the setting in which batch-averaged running
    statistics stop describing the layers' inputs at evaluation."""
    layers: list[nn.Module] = [nn.Linear(8, width), nn.BatchNorm1d(width)]
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.BatchNorm1d(width)]
    layers += [nn.Linear(width, 3)]
    return nn.Sequential(*layers)


def test_eval_outputs_equal_the_estimation_pass_own():
    """After the estimate, eval mode computes what the one-batch training-mode pass computed:
    every layer sees its input as evaluation shows it."""
    torch.manual_seed(0)
    net = binarize(_deep_binary_mlp(), "bnn")
    x = torch.randn(200, 8) * 3 + 1
    for m in net.modules():  # statistics that describe nothing
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.fill_(5.0)
            m.running_var.fill_(0.01)
    net.train()
    with torch.no_grad():
        reference = net(x)  # training mode: the whole batch's statistics in every layer
    assert estimate_batchnorm_statistics(net, x) == 7
    assert not net.training
    with torch.no_grad():
        assert torch.allclose(net(x), reference, atol=1e-4)
    # momentum is back to what training uses
    assert all(m.momentum == 0.1 for m in net.modules() if isinstance(m, nn.BatchNorm1d))


def test_the_usual_batch_averaged_estimate_is_not_the_same_thing():
    """Averaging per-batch statistics (momentum None) measures each layer under the batch
    statistics of the layers below; in a binarized stack that differs from evaluation."""
    torch.manual_seed(0)
    net = binarize(_deep_binary_mlp(), "bnn")
    x = torch.randn(256, 8) * 3 + 1
    net.train()
    with torch.no_grad():
        reference = net(x)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        for xb in x.split(16):
            net(xb)
    net.eval()
    with torch.no_grad():
        averaged = net(x)
    assert not torch.allclose(averaged, reference, atol=1e-2)


def test_models_without_batchnorm_and_single_samples_are_left_alone():
    net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    assert estimate_batchnorm_statistics(net, torch.randn(8, 4)) == 0
    bn = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    before = bn[1].running_mean.clone()
    assert estimate_batchnorm_statistics(bn, torch.randn(1, 4)) == 0
    assert torch.equal(bn[1].running_mean, before)


def test_the_sample_is_the_first_training_examples():
    x, y = torch.arange(1000).float().unsqueeze(1), torch.arange(1000)
    xs, ys = training_sample(x, y)
    assert len(xs) == STATISTICS_SAMPLE and torch.equal(ys, y[:STATISTICS_SAMPLE])


def test_training_records_the_eval_mode_accuracy_of_the_model_it_returns(digits):
    from bibench.evaluation.predict import predict
    from bibench.evaluation.task_metrics import accuracy
    from bibench.models import build_model

    torch.manual_seed(0)
    net = binarize(build_model("resnet20", digits.input_shape, digits.num_classes), "bnn")
    x, y = digits.x_train[:96], digits.y_train[:96]
    records = train(net, x, y, TrainSettings(epochs=2, batch_size=32), seed=0,
                    device=torch.device("cpu"))
    assert all(torch.isnan(torch.tensor(r["eval_train_accuracy"])) for r in records[:-1])
    measured = records[-1]["eval_train_accuracy"]
    assert measured == accuracy(predict(net, x), y)  # the returned model, in eval mode


def test_a_model_whose_running_statistics_are_wrong_is_marked(digits, monkeypatch):
    """Stale statistics, made on purpose: the estimate is replaced by one that leaves every
    BatchNorm with statistics of nothing the model sees. The run's own record then shows the
    gap, the aggregate marks the cell `eval gap`, and the report's cell tables show it."""
    import pandas as pd

    import bibench.training.loop as loop
    from bibench.metrics.aggregate import _convergence
    from bibench.models import build_model
    from bibench.report.cells import cell_marks

    def stale(model, x):
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.fill_(3.0)
                m.running_var.fill_(1e-2)
        return 0

    monkeypatch.setattr(loop, "estimate_batchnorm_statistics", stale)
    torch.manual_seed(0)
    net = build_model("resnet20", digits.input_shape, digits.num_classes)
    x, y = digits.x_train[:128], digits.y_train[:128]
    records = train(net, x, y, TrainSettings(epochs=3, batch_size=32, lr=2e-3), seed=0,
                    device=torch.device("cpu"))
    last = records[-1]
    assert last["eval_train_accuracy"] < last["train_accuracy"] - 0.10
    key = {"task": "img", "arch": "resnet20", "algorithm": "fp32", "seed": 0}
    table = pd.DataFrame([{**key, "stage": "pretrain", **r} for r in records])
    flags = _convergence(table).iloc[0]
    assert bool(flags["eval_gap"])
    metrics = pd.DataFrame([{**key, "condition": "clean", "train_status": "ok",
                             "at_chance": False, "eval_gap": True, "convergence": "converged"}])
    assert cell_marks(metrics)[("img", "resnet20", "fp32")] == "eval gap"
    # the same run with the real estimate shows no gap
    monkeypatch.undo()
    torch.manual_seed(0)
    net = build_model("resnet20", digits.input_shape, digits.num_classes)
    records = train(net, x, y, TrainSettings(epochs=3, batch_size=32, lr=2e-3), seed=0,
                    device=torch.device("cpu"))
    table = pd.DataFrame([{**key, "stage": "pretrain", **r} for r in records])
    assert not bool(_convergence(table).iloc[0]["eval_gap"])
