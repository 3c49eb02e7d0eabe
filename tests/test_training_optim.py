"""bibench.training.optim: torch.optim's arithmetic without torch.optim.Optimizer."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from bibench.training.optim import SGD, Adam, learning_rate


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3), nn.Linear(3, 2))


def _train(net: nn.Module, opt) -> None:
    gen = torch.Generator().manual_seed(1)
    for step in range(6):
        x = torch.randn(16, 6, generator=gen)
        y = torch.randint(0, 2, (16,), generator=gen)
        out = net(x) if step % 3 else net[3](net[:2](x)[:, :3])  # net[2] skipped: no grad
        loss = nn.functional.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_updates_equal_torch_optim_bit_for_bit(name):
    ours, theirs = _net(), _net()
    if name == "adam":
        opt_ours = Adam(ours.parameters(), lr=3e-3, weight_decay=1e-2)
        opt_theirs = torch.optim.Adam(theirs.parameters(), lr=3e-3, weight_decay=1e-2)
    else:
        opt_ours = SGD(ours.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-2)
        opt_theirs = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9,
                                     weight_decay=1e-2)
    start = [p.detach().clone() for p in ours.parameters()]
    _train(ours, opt_ours)
    _train(theirs, opt_theirs)
    for a, b, s in zip(ours.parameters(), theirs.parameters(), start, strict=True):
        assert not torch.equal(a, s)  # every parameter moved (net[2] in some steps only)
        assert torch.equal(a, b)


@pytest.mark.parametrize("epochs", [1, 2, 5, 8])
@pytest.mark.parametrize("scheduler", ["cosine", "step", "constant"])
def test_schedules_give_torchs_learning_rates(scheduler, epochs):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.2)
    milestones = [max(1, epochs // 2), max(1, (3 * epochs) // 4)]
    sched = {"cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs),
             "step": lambda: torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1),
             "constant": lambda: torch.optim.lr_scheduler.LambdaLR(opt, lambda _e: 1.0)
             }[scheduler]()
    for epoch in range(epochs):
        assert learning_rate(scheduler, 0.2, epoch, epochs) == pytest.approx(
            opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
        opt.step()
        sched.step()


def test_an_unknown_scheduler_is_named():
    from bibench.training.loop import TrainSettings

    with pytest.raises(ValueError, match="unknown scheduler 'linear'"):
        TrainSettings(epochs=1, scheduler="linear")


def test_training_does_not_import_torch_dynamo(tmp_path):
    """torch.optim.Optimizer imports torch._dynamo (2.3 s of every training job here)."""
    code = ("import sys, torch; from bibench.training.loop import TrainSettings, train; "
            "net = torch.nn.Sequential(torch.nn.Linear(4, 2)); "
            "s = TrainSettings.from_config(__import__('json').loads(sys.argv[1])); "
            "train(net, torch.randn(32, 4), torch.randint(0, 2, (32,)), s, seed=0, "
            "device=torch.device('cpu')); "
            "assert 'torch._dynamo' not in sys.modules, 'training imported torch._dynamo'")
    for optimizer in ("adam", "sgd"):
        settings = {"epochs": 2, "batch_size": 8, "optimizer": optimizer, "lr": 1e-2}
        subprocess.run([sys.executable, "-c", code, json.dumps(settings)], check=True)
