"""Same-run speedup of each algorithm's OpenVINO binary form over OpenVINO FP32 (not a test).

ResNet-18 (CIFAR stem, 3x32x32, 10 classes) is binarized by every algorithm (stem, 1x1
downsample shortcuts and FC stay full precision, the architecture's policy). BatchNorm
statistics come from a few train-mode forward passes on random images (latency does not depend
on the weights' values, only parity does). Then for each algorithm: the binary form
(bibench.export.openvino: FakeQuantize + BinaryConvolution IR) is timed against the plain ONNX
export of the FP32 model, both compiled by OpenVINO's CPU plugin with the f32 precision hint,
batch 1, all in one window: the FP32 model and the binary forms alternate in blocks of runs
(bibench.latency.time_interleaved); medians of `--repeats` timed runs after `--warmup` runs.

With `--reference`, the window also holds the hand-built reference of
bibench.latency.reference (the same ResNet-18 written directly with OpenVINO's opset API), which
the latency job times too. It shows how far bibench's export is from the best this engine does
with this network, on this machine, at this moment.

`--keep-fp PATTERNS` replaces the architecture's full-precision policy as `bibench summary`
does: `--keep-fp ''` binarizes the 1x1 downsample shortcuts too (the layers the paper's Table 3
counts as binary; the reference then binarizes them as well).

    python bench/latency.py [--threads 1] [--warmup 20] [--repeats 500] [--reference]
                            [--algorithms NAME ...] [--keep-fp PATTERNS] [--json]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import tempfile
from pathlib import Path

import torch

from bibench.algorithms import available
from bibench.export.onnx import export_onnx
from bibench.export.openvino import IR_FILE, export_openvino_binary
from bibench.latency.machine import cpu_model
from bibench.latency.reference import write_reference
from bibench.latency.timing import (
    count_binary_convolutions,
    openvino_compile,
    time_compiled,
)
from bibench.models import build_model, get_architecture
from bibench.training.checkpoint import build_cell_model

ARCH, SHAPE, CLASSES = "resnet18", (3, 32, 32), 10
REFERENCE = "reference-opset"  # the hand-built reference's key in the results


def calibrate_bn(model: torch.nn.Module, batches: int = 4, seed: int = 0) -> torch.nn.Module:
    """Sane BatchNorm statistics: a few train-mode forward passes on random images."""
    gen = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.rand(16, *SHAPE, generator=gen))
    return model.eval()


def run(threads: int, warmup: int, repeats: int, workdir: Path, reference: bool = False,
        algorithms: list[str] | None = None, keep_fp: tuple[str, ...] | None = None
        ) -> dict[str, dict]:
    torch.manual_seed(0)
    fp = calibrate_bn(build_model(ARCH, SHAPE, CLASSES))
    example = torch.rand(1, *SHAPE, generator=torch.Generator().manual_seed(1))
    fp_path = workdir / "fp32.onnx"
    export_onnx(fp, example, fp_path)
    results: dict[str, dict] = {}
    forms = {}
    for algo in algorithms or available():
        model = calibrate_bn(build_cell_model(ARCH, algo, SHAPE, CLASSES, fp_model=fp,
                                              keep_fp=keep_fp))
        form = export_openvino_binary(model, example, workdir / algo, algo)
        if form.deployable:
            forms[algo] = form
        else:
            results[algo] = {"deployable": False, "reason": form.reason}
            print(f"{algo}: not deployable", file=sys.stderr)
    binary_paths = {algo: workdir / algo / IR_FILE for algo in forms}
    if reference:
        binary_paths[REFERENCE] = workdir / "reference.xml"
        policy = get_architecture(ARCH).keep_fp if keep_fp is None else keep_fp
        write_reference(binary_paths[REFERENCE], ARCH, SHAPE, CLASSES, binary_shortcuts=not any(
            fnmatch.fnmatchcase("layer2.0.shortcut.0", p) for p in policy))
    # one window: the FP32 model and every binary form alternate in blocks, so all speedups
    # share one FP32 timing and the same machine state
    compiled = [openvino_compile(p, threads) for p in [fp_path, *binary_paths.values()]]
    fp32, *binaries = time_compiled(compiled, example.numpy(), warmup=warmup, repeats=repeats)
    for algo, binary, model in zip(binary_paths, binaries, compiled[1:], strict=True):
        fp32_ms, binary_ms = round(fp32.median_ms, 4), round(binary.median_ms, 4)
        results[algo] = {
            "engine": "openvino-cpu", "threads": threads,
            "fp32_ms": fp32_ms, "binary_ms": binary_ms,
            # from the printed times, so a reader who divides them gets the printed speedup
            "speedup": round(fp32_ms / binary_ms, 2),
            "n_binary_conv": count_binary_convolutions(model),
        }
        if algo in forms and forms[algo].n_binary_conv != results[algo]["n_binary_conv"]:
            raise RuntimeError(f"{algo}: the timed model runs a different number of "
                               "BinaryConvolution layers than the export counted")
    return dict(sorted(results.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--reference", action="store_true",
                        help="also time the hand-built opset reference in the same window")
    parser.add_argument("--algorithms", nargs="+", metavar="NAME",
                        help="time these registered algorithms only (default: all)")
    parser.add_argument("--keep-fp", metavar="PATTERNS",
                        help="comma-separated globs of layers kept full precision, replacing "
                             "the architecture's policy ('' = only first and last layers)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    keep_fp = None if args.keep_fp is None else tuple(p for p in args.keep_fp.split(",") if p)
    if args.repeats < 50:
        parser.error("--repeats must be at least 50")
    unknown = sorted(set(args.algorithms or ()) - set(available()))
    if unknown:
        parser.error(f"unknown algorithm(s) {', '.join(unknown)}; registered: "
                     f"{', '.join(available())}")
    torch.set_num_threads(max(1, args.threads))
    print(f"CPU: {cpu_model()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bibench-latency-") as tmp:
        results = run(args.threads, args.warmup, args.repeats, Path(tmp), args.reference,
                          args.algorithms, keep_fp)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for algo, r in results.items():
            if r.get("deployable", True):
                print(f"{algo:15s} {r['fp32_ms']:8.3f} ms {r['binary_ms']:8.3f} ms "
                      f"{r['speedup']:6.2f}x  {r['n_binary_conv']} BinaryConvolution")
            else:
                print(f"{algo:15s} not deployable: {r['reason']}")


if __name__ == "__main__":
    main()
