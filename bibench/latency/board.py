"""Time ONNX models on this machine and print JSON: the program a remote board runs.

`bibench.latency.remote` copies this module (with bibench/latency/timing.py) to the board and
runs it there, so it must stay light: no torch, and openvino is imported only when asked for.
Several models given in one call are timed interleaved in blocks of runs, as the local latency
job does, so their ratio is a same-run ratio.

    python -m bibench.latency.board MODEL [MODEL ...] --engine openvino --threads 1 --warmup 10 \
        --repeats 100 --batch-size 1 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bibench.latency.machine import cpu_model
from bibench.latency.timing import Timing, openvino_example, time_openvino

ENGINES = ("onnxruntime", "openvino")


def time_models(paths: list[str | Path], *, engine: str, batch_size: int, threads: int,
                warmup: int, repeats: int) -> list[Timing]:
    """Time the models with the named engine (inputs built from the first model)."""
    if engine == "openvino":
        example = openvino_example(paths[0], batch_size)
        return time_openvino(paths, example, threads=threads, warmup=warmup, repeats=repeats)
    if engine == "onnxruntime":
        from bibench.latency.timing import example_input, time_onnxruntime

        example = example_input(paths[0], batch_size)
        return time_onnxruntime(paths, example, threads=threads, warmup=warmup, repeats=repeats)
    raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bibench.latency.board", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, metavar="MODEL")
    parser.add_argument("--engine", choices=ENGINES, default="onnxruntime")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per model, one per line (else a readable line)")
    args = parser.parse_args(argv)
    for path in args.models:
        if not path.is_file():
            parser.error(f"{path}: no such file")
    timings = time_models(args.models, engine=args.engine, batch_size=args.batch_size,
                          threads=args.threads, warmup=args.warmup, repeats=args.repeats)
    cpu = cpu_model()
    for path, t in zip(args.models, timings, strict=True):
        if args.json:
            print(json.dumps({"model": path.name, "median_ms": t.median_ms, "p10_ms": t.p10_ms,
                              "p90_ms": t.p90_ms, "repeats": t.repeats, "engine": args.engine,
                              "threads": args.threads, "batch_size": args.batch_size,
                              "cpu_model": cpu}))
        else:
            print(f"{path.name}: median {t.median_ms:.3f} ms (p10 {t.p10_ms:.3f}, "
                  f"p90 {t.p90_ms:.3f}; {t.repeats} runs, {args.engine}, {args.threads} threads, "
                  f"{cpu})")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
