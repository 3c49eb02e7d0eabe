"""One training loop for every cell: epochs, the algorithms' schedule hook, per-epoch timing."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from bibench.binarize import update_schedules
from bibench.training.batchnorm import estimate_batchnorm_statistics, training_sample
from bibench.training.device import (
    PRECISIONS,
    autocast,
    determinism_note,
    nondeterministic_ops,
    prepare_device,
)
from bibench.training.optim import SCHEDULERS, SGD, Adam, learning_rate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    precision: str = "fp32"  # or "bf16": autocast of forward and loss; weights stay fp32
    # parameters kept as they are, by name prefix (e.g. a transformer's word embeddings:
    # on a few hundred sentences their 30522 rows only memorize, and updating them is most of
    # a step's time)
    frozen: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, settings: dict[str, Any]) -> TrainSettings:
        names = {f.name for f in fields(cls)}
        unknown = set(settings) - names
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        if "frozen" in settings:
            settings = {**settings, "frozen": tuple(settings["frozen"])}
        return cls(**settings)

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.scheduler!r}; expected one of "
                             f"{SCHEDULERS}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown training precision {self.precision!r}; expected one of "
                             f"{PRECISIONS}")


def freeze(model: nn.Module, prefixes: tuple[str, ...]) -> int:
    """Stop training the parameters whose names start with one of `prefixes`; a prefix that
    names no parameter is a config error (a typo would silently train everything)."""
    names = [n for n, _ in model.named_parameters()]
    unmatched = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if unmatched:
        raise ValueError(f"training setting 'frozen': {unmatched} name no parameter of the "
                         f"model (its parameters start with e.g. {names[:3]})")
    count = 0
    for name, param in model.named_parameters():
        if name.startswith(prefixes):
            param.requires_grad_(False)
            count += param.numel()
    return count


def make_optimizer(model: nn.Module, s: TrainSettings) -> Adam | SGD:
    """The settings' optimizer over the trainable parameters (bibench.training.optim: torch's
    update without torch.optim's import of torch._dynamo)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if s.optimizer == "sgd":
        return SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    if s.optimizer == "adam":
        return Adam(params, lr=s.lr, weight_decay=s.weight_decay)
    raise ValueError(f"unknown optimizer {s.optimizer!r}")


def loss_function(task_type: str) -> nn.Module | None:
    """Cross-entropy for classification and per-point segmentation, MSE for regression; None
    for detection, whose models compute their own multi-part loss (`model.loss`)."""
    if task_type == "detection":
        return None
    if task_type in ("classification", "segmentation"):
        return nn.CrossEntropyLoss()
    if task_type == "regression":
        return _RegressionLoss()
    raise ValueError(f"unknown task type {task_type!r}")


class _RegressionLoss(nn.Module):
    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.mse_loss(output.reshape(target.shape), target.float())


def _forward_loss(model: nn.Module, xb: Tensor, yb: Tensor, loss_fn: nn.Module | None,
                  task_type: str) -> tuple[Tensor | None, Tensor]:
    """(detached outputs or None, loss) of one batch; a detector sums its loss parts."""
    if task_type == "detection":
        return None, sum(model.loss(xb, yb).values())
    logits = model(xb)
    return logits.detach(), loss_fn(logits, yb)


def _correct(logits: Tensor | None, y: Tensor, task_type: str) -> float:
    """Samples (or points) predicted right, for the per-epoch training accuracy."""
    if logits is None or task_type == "regression":
        return float("nan")
    hits = (logits.argmax(1) == y).float()
    return float(hits.sum() if hits.dim() == 1 else hits.flatten(1).mean(1).sum())


def training_setup(load: Callable[[], Any], device: str, determinism: str, threads: int,
                   seed: int) -> tuple[torch.device, Any]:
    """What every training job does first: its thread count and device, then its data
    (`load`), then the seed (after loading, so that the model's initialisation does not depend
    on the loader)."""
    torch.set_num_threads(threads)
    dev = prepare_device(device, determinism)
    data = load()
    torch.manual_seed(int(seed))
    return dev, data


def untrained_record(status: str) -> list[dict[str, Any]]:
    """The single record of a cell whose training did not run to the end."""
    return [{"epoch": 0, "loss": float("nan"), "train_accuracy": float("nan"),
             "epoch_seconds": 0.0, "lr": float("nan"), "status": status[:500],
             "deterministic": "not run", "eval_train_accuracy": float("nan")}]


def train_or_fail(model: nn.Module, data: Any, settings: dict[str, Any], seed: int,
                  device: torch.device) -> list[dict[str, Any]]:
    """Train on `data`'s training split; an exception becomes a "failed: ..." record so the
    rest of the grid goes on."""
    try:
        return train(model, data.x_train, data.y_train, TrainSettings.from_config(settings),
                     seed=int(seed), device=device, task_type=data.task_type)
    except Exception as err:  # reported in the cell's rows and the report
        log.exception("training failed")
        return untrained_record(f"failed: {type(err).__name__}: {err}")


def training_precision(settings: dict[str, Any]) -> str:
    """The rows' `precision` of a training run: fp32, or bf16 autocast of the forward pass."""
    return "bf16-autocast" if settings.get("precision", "fp32") == "bf16" else "fp32"


def train(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    settings: TrainSettings,
    *,
    seed: int,
    device: torch.device,
    task_type: str = "classification",
) -> list[dict[str, Any]]:
    """Train in place; return one record per epoch (loss, accuracy, seconds, lr, status,
    deterministic: whether PyTorch's deterministic mode saw only deterministic kernels,
    eval_train_accuracy: NaN but in the last record).

    Training stops at the first non-finite loss and the last record says "diverged", so a
    failed cell is reported as such instead of silently producing garbage. A run that ends
    well has its BatchNorm statistics estimated for evaluation (bibench.training.batchnorm),
    and its last record carries the eval-mode accuracy on a fixed sample of the training data:
    the model as it will be evaluated, beside what the last epoch saw.
    """
    model.to(device).train()
    if settings.frozen:
        log.info("%d parameters frozen (%s)", freeze(model, settings.frozen),
                 ", ".join(settings.frozen))
    with nondeterministic_ops() as ops:
        records = _epochs(model, x, y, settings, seed=seed, device=device, task_type=task_type)
        for r in records:
            r["eval_train_accuracy"] = float("nan")
        if records and records[-1]["status"] == "ok":
            records[-1]["eval_train_accuracy"] = _evaluation_ready(model, x, y, device,
                                                                   task_type)
    model.eval()
    note = determinism_note(ops)
    if note.startswith("no: "):
        log.warning("kernels without a deterministic implementation ran: %s", note[4:])
    return [{**r, "deterministic": note} for r in records]


@torch.no_grad()
def _evaluation_ready(model: nn.Module, x: Tensor, y: Tensor, device: torch.device,
                      task_type: str) -> float:
    """Estimate the BatchNorm statistics on the fixed training sample, then return the
    eval-mode accuracy on it (NaN for tasks without a per-sample accuracy)."""
    xs, ys = training_sample(x, y)
    xs, ys = xs.to(device), ys.to(device)
    layers = estimate_batchnorm_statistics(model, xs)
    if task_type == "detection" or task_type == "regression" or len(xs) == 0:
        return float("nan")
    model.eval()
    correct = sum(_correct(model(xb), yb, task_type)
                  for xb, yb in zip(xs.split(256), ys.split(256), strict=True))
    accuracy = correct / len(xs)
    log.info("BatchNorm statistics of %d layers estimated on %d training samples; eval-mode "
             "training accuracy %.4f", layers, len(xs), accuracy)
    return accuracy


def _epochs(model: nn.Module, x: Tensor, y: Tensor, settings: TrainSettings, *, seed: int,
            device: torch.device, task_type: str) -> list[dict[str, Any]]:
    opt = make_optimizer(model, settings)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = loss_function(task_type)
    n = len(x)
    records = []
    for epoch in range(settings.epochs):
        update_schedules(model, epoch, settings.epochs)
        start = time.perf_counter()
        lr = opt.lr = learning_rate(settings.scheduler, settings.lr, epoch, settings.epochs)
        total_loss, correct, seen, status = 0.0, 0.0, 0, "ok"
        for idx in torch.randperm(n, generator=gen).split(settings.batch_size):
            xb, yb = x[idx].to(device), y[idx].to(device)
            with autocast(device, settings.precision):
                logits, loss = _forward_loss(model, xb, yb, loss_fn, task_type)
            if not math.isfinite(loss.item()):
                status = "diverged"
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            total_loss += loss.item() * len(idx)
            correct += _correct(logits, yb, task_type)
            seen += len(idx)
        seconds = time.perf_counter() - start
        record = {
            "epoch": epoch + 1,
            "loss": total_loss / seen if seen else float("nan"),
            "train_accuracy": correct / seen if seen else float("nan"),
            "epoch_seconds": seconds,
            "lr": lr,
            "status": status,
        }
        records.append(record)
        log.info(
            "epoch %d/%d loss %.4f acc %.4f time %.2fs lr %.2e %s",
            epoch + 1, settings.epochs, record["loss"], record["train_accuracy"], seconds, lr,
            status,
        )
        if status != "ok":
            break
    return records
