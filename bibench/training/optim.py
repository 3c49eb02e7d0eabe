"""Adam and SGD as torch.optim computes them, and the learning-rate schedules, without
torch.optim.Optimizer.

torch.optim.Optimizer imports torch._dynamo the first time a parameter group is added and at
every step (its guards for torch.compile, no-ops in eager mode): 2.3 s in every training job
on this project's 2-core machine, 36 jobs in the default run. The update here is
torch's own functional form (torch.optim.adam.adam, torch.optim.sgd.sgd) on state laid out as
torch.optim keeps it, so the arithmetic is torch's: tests/test_training_optim.py checks that
the parameters equal torch.optim's, bit for bit, after several steps, and that the schedules
give torch's learning rates (to float rounding: torch computes them step by step).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.optim.adam import adam
from torch.optim.sgd import sgd

SCHEDULERS = ("cosine", "step", "constant")
BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, as the paper's recipes use them
EPS = 1e-8


class _Optimizer:
    """The parameters with gradients, their state, and the learning rate of the next step."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, weight_decay: float) -> None:
        self.params = list(params)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.state: dict[Tensor, dict[str, Tensor]] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _with_grad(self) -> list[nn.Parameter]:
        return [p for p in self.params if p.grad is not None]


class Adam(_Optimizer):
    """torch.optim.Adam(params, lr, weight_decay) with its other defaults (L2 weight decay
    added to the gradient, no AMSGrad)."""

    @torch.no_grad()
    def step(self) -> None:
        params = self._with_grad()
        for p in params:
            if p not in self.state:  # as torch.optim.Adam._init_group lays it out
                step_dtype = (torch.float64 if torch.get_default_dtype() == torch.float64
                              else torch.float32)
                self.state[p] = {
                    "step": torch.tensor(0.0, dtype=step_dtype),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
        states = [self.state[p] for p in params]
        adam(params, [p.grad for p in params], [s["exp_avg"] for s in states],
             [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states],
             has_complex=any(torch.is_complex(p) for p in params), amsgrad=False,
             beta1=BETAS[0], beta2=BETAS[1], lr=self.lr, weight_decay=self.weight_decay,
             eps=EPS, maximize=False)


class SGD(_Optimizer):
    """torch.optim.SGD(params, lr, momentum, weight_decay): no dampening, no Nesterov."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, momentum: float,
                 weight_decay: float) -> None:
        super().__init__(params, lr, weight_decay)
        self.momentum = float(momentum)

    @torch.no_grad()
    def step(self) -> None:
        params = self._with_grad()
        buffers = [self.state.get(p, {}).get("momentum_buffer") for p in params]
        sgd(params, [p.grad for p in params], buffers, weight_decay=self.weight_decay,
            momentum=self.momentum, lr=self.lr, dampening=0.0, nesterov=False, maximize=False)
        if self.momentum != 0:  # sgd() created the first step's buffers in the list
            for p, buffer in zip(params, buffers, strict=True):
                self.state[p] = {"momentum_buffer": buffer}


def learning_rate(scheduler: str, base_lr: float, epoch: int, epochs: int) -> float:
    """The learning rate of `epoch` (0-based), the schedule stepped once per epoch:
    cosine (torch's CosineAnnealingLR, T_max = epochs, to 0), step (/10 at 1/2 and 3/4 of
    training) or constant."""
    if scheduler == "cosine":
        return base_lr * (1 + math.cos(math.pi * epoch / epochs)) / 2
    if scheduler == "step":
        milestones = [max(1, epochs // 2), max(1, (3 * epochs) // 4)]
        return base_lr * 0.1 ** sum(epoch >= m for m in milestones)
    if scheduler == "constant":
        return base_lr
    raise ValueError(f"unknown scheduler {scheduler!r}")
