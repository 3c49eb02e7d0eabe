"""Training-step time of a binarized ResNet-20 per algorithm, relative to FP32 (not a test).

For every algorithm: forward + backward + Adam step of `binarize(resnet20)` on a batch of 128
random 3x32x32 images, after warm-up; the median over several steps divided by the FP32 median
measured in the same run. Measurements are interleaved (FP32, algo1, ..., FP32, algo1, ...) so
that drifts in machine speed hit every model alike.

    python bench/train_step.py [--steps 7] [--warmup 2] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from bibench.algorithms import available
from bibench.binarize import binarize, update_schedules
from bibench.models import build_model, get_architecture


def _make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step() -> float:
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        return time.perf_counter() - start

    return step


def measure(
    algorithms: list[str], steps: int, warmup: int, batch: int, threads: int
) -> dict[str, float]:
    """Median step time (s) per model, 'fp32' included."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    fp = build_model("resnet20", (3, 32, 32), 10)
    keep_fp = get_architecture("resnet20").keep_fp
    models = {"fp32": fp}
    for name in algorithms:
        model = binarize(fp, name, example_input=x[:2], keep_fp=keep_fp)
        update_schedules(model, 0, 100)
        models[name] = model
    steppers = {name: _make_step(m, x, y) for name, m in models.items()}
    for _ in range(warmup):
        for step in steppers.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(steps):
        for name, step in steppers.items():
            times[name].append(step())
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="*", default=None, help="default: all")
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object {algo: ratio}")
    args = parser.parse_args(argv)
    algorithms = args.algorithms or available()
    medians = measure(algorithms, args.steps, args.warmup, args.batch, args.threads)
    ratios = {name: medians[name] / medians["fp32"] for name in algorithms}
    if args.json:
        print(json.dumps({name: round(r, 3) for name, r in ratios.items()}))
        return
    print(f"{'algorithm':<10} {'step (ms)':>10} {'x FP32':>7}")
    print(f"{'fp32':<10} {medians['fp32'] * 1e3:>10.1f} {1.0:>7.2f}")
    for name in algorithms:
        print(f"{name:<10} {medians[name] * 1e3:>10.1f} {ratios[name]:>7.2f}")


if __name__ == "__main__":
    main()
