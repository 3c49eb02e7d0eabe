"""Benchmark: training throughput of bibench's finetune loop against a plain PyTorch loop (target:
bibench within 10% of plain PyTorch on every task of the config).

For each task of the config (its first architecture), the cell model of `--algorithm` (built
from a fresh FP32 model, as a finetune job builds it from the pretrained one) is trained one
epoch at a time on the task's training data with the task's finetune settings, alternately by
`bibench.training.loop.train` (the finetune job's loop: schedule hook, per-epoch records, the
BatchNorm estimate after the last epoch, which is not timed here) and by a plain loop (random
permutation, index the tensors, torch.optim.Adam or SGD, zero_grad/backward/step), each on its
own copy of the same model. Interleaving puts drifts of machine speed on both alike; the median
epoch over `--repeats` gives samples per second and the gap `plain / bibench - 1`.

    python bench/train_throughput.py [--configfile config/config.yaml] [--algorithm bnn]
        [--repeats 5] [--threads 1] [--tasks NAME ...] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from bibench.config import dataset_settings, load_config
from bibench.data import load_task
from bibench.latency.machine import cpu_model
from bibench.training.checkpoint import build_cell_model
from bibench.training.loop import TrainSettings, freeze, loss_function, train


def plain_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, s: TrainSettings,
                opt: torch.optim.Optimizer, loss_fn: nn.Module, gen: torch.Generator) -> float:
    """One epoch as a PyTorch tutorial writes it; its seconds."""
    model.train()
    start = time.perf_counter()
    for idx in torch.randperm(len(x), generator=gen).split(s.batch_size):
        opt.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def _plain_optimizer(model: nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)


def measure_task(name: str, spec: dict, algorithm: str, repeats: int) -> dict:
    data = load_task(dataset_settings(spec))
    arch = spec["architectures"][0]
    settings = TrainSettings.from_config({**spec["finetune"], "epochs": 1})
    torch.manual_seed(0)
    base = build_cell_model(arch, algorithm, data.input_shape, data.num_classes)
    ours, plain = copy.deepcopy(base), copy.deepcopy(base)
    if settings.frozen:
        freeze(plain, settings.frozen)
    opt = _plain_optimizer(plain, settings)
    loss_fn, gen = loss_function(data.task_type), torch.Generator().manual_seed(0)
    timings: dict[str, list[float]] = {"bibench": [], "plain": []}
    # one epoch of each first: allocator and kernel warm-up
    train(ours, data.x_train, data.y_train, settings, seed=0, device=torch.device("cpu"),
          task_type=data.task_type)
    plain_epoch(plain, data.x_train, data.y_train, settings, opt, loss_fn, gen)
    for r in range(repeats):
        records = train(ours, data.x_train, data.y_train, settings, seed=r + 1,
                        device=torch.device("cpu"), task_type=data.task_type)
        timings["bibench"].append(records[-1]["epoch_seconds"])
        timings["plain"].append(plain_epoch(plain, data.x_train, data.y_train, settings, opt,
                                            loss_fn, gen))
    n = len(data.x_train)
    per_s = {k: n / statistics.median(v) for k, v in timings.items()}
    return {"task": name, "arch": arch, "algorithm": algorithm, "samples": n,
            "batch_size": settings.batch_size,
            "bibench_samples_per_s": round(per_s["bibench"], 1),
            "plain_samples_per_s": round(per_s["plain"], 1),
            "gap": round(per_s["plain"] / per_s["bibench"] - 1, 3),
            "epoch_seconds": {k: [round(t, 3) for t in v] for k, v in timings.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--algorithm", default="bnn")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="as a training job has")
    parser.add_argument("--tasks", nargs="*", default=None, help="default: every task")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.configfile)
    tasks = {t: s for t, s in config["tasks"].items() if not args.tasks or t in args.tasks}
    rows = [measure_task(t, s, args.algorithm, args.repeats) for t, s in tasks.items()]
    result = {"cpu": cpu_model(), "threads": args.threads, "torch": torch.__version__,
              "config": str(args.configfile), "repeats": args.repeats, "tasks": rows,
              "max_gap": max(r["gap"] for r in rows)}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{result['cpu']}, {args.threads} thread(s), median of {args.repeats} epochs")
    for r in rows:
        print(f"  {r['task']:12s} {r['arch']:18s} {r['algorithm']:8s} bibench "
              f"{r['bibench_samples_per_s']:8.1f}/s  plain {r['plain_samples_per_s']:8.1f}/s  "
              f"gap {100 * r['gap']:+.1f}%")


if __name__ == "__main__":
    main()
