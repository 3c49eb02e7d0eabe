"""Training-step time of a binarized model per algorithm, relative to FP32 (not a test).

For every algorithm: forward + backward + Adam step of `binarize(arch)` on a batch of random
inputs, after warm-up; the median over several steps divided by the FP32 median measured in
the same run, and samples (images) per second. Measurements are interleaved (FP32, algo1, ...,
FP32, algo1, ...) so that drifts in machine speed hit every model alike. On CUDA each step is
timed between two synchronisations. bench/gpu_hours.py turns the JSON into a GPU-hour estimate
of a config (docs/gpu.md).

    python bench/train_step.py [--device cpu|cuda] [--precision fp32|bf16] [--arch resnet20]
        [--input-shape 3 32 32] [--classes 10] [--batch 128] [--steps 7] [--warmup 2]
        [--threads 2] [--algorithms NAME ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from importlib.metadata import version

import torch
from torch import nn

from bibench.algorithms import available
from bibench.binarize import binarize, update_schedules
from bibench.models import build_model, get_architecture
from bibench.provenance import device_model
from bibench.training.device import autocast, prepare_device

BERT_VOCAB = 30522  # token ids of the transformer architectures (bibench.models.bert)


def _example(arch: str, shape: tuple[int, ...], batch: int, device: torch.device) -> torch.Tensor:
    if get_architecture(arch).family == "transformer":
        return torch.randint(1, BERT_VOCAB, (batch, *shape), device=device)
    return torch.randn(batch, *shape, device=device)


def _make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)

    def step() -> float:
        sync()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast(x.device, precision):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        sync()
        return time.perf_counter() - start

    return step


def _models(arch: str, shape: tuple[int, ...], classes: int, algorithms: list[str],
            x: torch.Tensor) -> dict[str, nn.Module]:
    fp = build_model(arch, shape, classes).to(x.device)
    spec = get_architecture(arch)
    models = {"fp32": fp}
    for name in algorithms:
        model = binarize(fp, name, example_input=x[:2], keep_fp=spec.keep_fp,
                         keep_first_last=spec.keep_first_last)
        update_schedules(model, 0, 100)
        models[name] = model
    return models


def measure(args: argparse.Namespace, algorithms: list[str], device: torch.device
            ) -> dict[str, float]:
    """Median step time (s) per model, 'fp32' included."""
    torch.manual_seed(0)
    shape = tuple(args.input_shape)
    x = _example(args.arch, shape, args.batch, device)
    models = _models(args.arch, shape, args.classes, algorithms, x)
    with torch.no_grad():  # targets shaped like the output: per sample, or per point
        out_shape = models["fp32"].eval()(x[:2]).shape
    y = torch.randint(0, args.classes, (args.batch, *out_shape[2:]), device=device)
    steppers = {name: _make_step(m, x, y, args.precision) for name, m in models.items()}
    for _ in range(args.warmup):
        for step in steppers.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(args.steps):
        for name, step in steppers.items():
            times[name].append(step())
    return {name: statistics.median(t) for name, t in times.items()}


def summary(args: argparse.Namespace, device: torch.device, medians: dict[str, float]) -> dict:
    """The JSON object: what was measured where, FP32's step, each algorithm's step and ratio."""
    def entry(seconds: float) -> dict[str, float]:
        return {"step_ms": round(seconds * 1e3, 3),
                "samples_per_s": round(args.batch / seconds, 1)}

    return {
        "arch": args.arch, "input_shape": list(args.input_shape), "classes": args.classes,
        "batch": args.batch, "precision": args.precision, "device": device.type,
        "device_model": device_model(str(device)), "threads": args.threads,
        "torch_version": version("torch"), "steps": args.steps, "warmup": args.warmup,
        "fp32": entry(medians["fp32"]),
        "algorithms": {name: {**entry(t), "ratio_vs_fp32": round(t / medians["fp32"], 3)}
                       for name, t in medians.items() if name != "fp32"},
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="*", default=None, help="default: all")
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--input-shape", type=int, nargs="+", default=[3, 32, 32],
                        help="per-sample input shape (token count for transformers)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--determinism", choices=["warn", "strict", "none"], default="warn",
                        help="as the config's `determinism` (training jobs use it too)")
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    device = prepare_device(args.device, args.determinism)
    algorithms = args.algorithms if args.algorithms is not None else available()
    result = summary(args, device, measure(args, algorithms, device))
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.arch} batch {args.batch} {args.precision} on {result['device_model']}")
    print(f"{'algorithm':<10} {'step (ms)':>10} {'x FP32':>7} {'samples/s':>10}")
    rows = {"fp32": {**result["fp32"], "ratio_vs_fp32": 1.0}, **result["algorithms"]}
    for name, r in rows.items():
        print(f"{name:<10} {r['step_ms']:>10.1f} {r['ratio_vs_fp32']:>7.2f} "
              f"{r['samples_per_s']:>10.1f}")


if __name__ == "__main__":
    main()
