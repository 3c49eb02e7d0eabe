"""Time of each image corruption relative to the clean inference it feeds (not a test).

The robustness track corrupts the whole test set once per (corruption, severity) before the
model sees it, so what matters is whether corrupting costs more than predicting. For every
corruption: the median time to corrupt `--images` random images at `--severity`, and its ratio
to the FP32 `--arch`'s clean forward pass over the same images, measured in the same run and
interleaved (inference, corruption 1, ..., inference, corruption 1, ...) so that drifts in
machine speed hit both alike.

    python bench/corruptions.py [--images 1000] [--input-shape 1 28 28] [--severity 5]
        [--arch resnet20] [--batch 256] [--repeats 3] [--threads 2] [--corruptions NAME ...]
        [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from bibench.evaluation import corruptions as C
from bibench.models import build_model

ALL = C.CORRUPTION_NAMES + C.EXTRA_CORRUPTIONS


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Median seconds per task, 'inference' included."""
    torch.manual_seed(0)
    x = torch.rand(args.images, *args.input_shape)
    model = build_model(args.arch, tuple(args.input_shape), 10).eval()

    def inference() -> None:
        with torch.no_grad():
            for batch in x.split(args.batch):
                model(batch)

    tasks = {"inference": inference}
    tasks |= {name: (lambda n=name: C.corrupt(x, n, args.severity)) for name in args.corruptions}
    for fn in tasks.values():  # warm-up: kernels, caches, the frost images
        fn()
    times: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(args.repeats):
        for name, fn in tasks.items():
            times[name].append(_timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def summary(args: argparse.Namespace, medians: dict[str, float]) -> dict:
    """The JSON object: what was measured, the inference time, each corruption's time and ratio."""
    inference_ms = round(medians["inference"] * 1e3, 2)
    rows = {}
    for name in args.corruptions:
        ms = round(medians[name] * 1e3, 2)
        # from the printed times, so a reader who divides them gets the printed ratio
        rows[name] = {"ms": ms, "ratio_vs_inference": round(ms / inference_ms, 2)}
    return {"images": args.images, "input_shape": list(args.input_shape),
            "severity": args.severity, "arch": args.arch, "batch": args.batch,
            "threads": args.threads, "repeats": args.repeats, "inference_ms": inference_ms,
            "corruptions": rows}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corruptions", nargs="+", default=ALL, metavar="NAME")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--input-shape", type=int, nargs=3, default=[1, 28, 28],
                        metavar=("C", "H", "W"))
    parser.add_argument("--severity", type=int, choices=range(1, 6), default=5)
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = sorted(set(args.corruptions) - set(ALL))
    if unknown:
        parser.error(f"unknown corruption(s) {', '.join(unknown)}; known: {', '.join(ALL)}")
    if args.images < 1 or args.repeats < 1 or args.batch < 1:
        parser.error("--images, --repeats and --batch must be at least 1")
    torch.set_num_threads(args.threads)
    result = summary(args, measure(args))
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.images} images {'x'.join(map(str, args.input_shape))}, severity "
          f"{args.severity}; {args.arch} clean inference {result['inference_ms']:.1f} ms")
    print(f"{'corruption':<18} {'ms':>9} {'x inference':>12}")
    for name, row in sorted(result["corruptions"].items(), key=lambda kv: -kv[1]["ms"]):
        print(f"{name:<18} {row['ms']:>9.1f} {row['ratio_vs_inference']:>12.2f}")


if __name__ == "__main__":
    main()
