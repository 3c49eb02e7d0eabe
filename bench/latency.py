"""Same-run speedup of each algorithm's OpenVINO binary form over OpenVINO FP32 (not a test).

ResNet-18 (CIFAR stem, 3x32x32, 10 classes) is binarized by every algorithm (stem, 1x1
downsample shortcuts and FC stay full precision, the architecture's policy). BatchNorm
statistics come from a few train-mode forward passes on random images (latency does not depend
on the weights' values, only parity does). Then for each algorithm: the binary form
(bibench.export_openvino: FakeQuantize + BinaryConvolution IR) is timed against the plain ONNX
export of the FP32 model, both compiled by OpenVINO's CPU plugin with the f32 precision hint,
batch 1, all in one window: the FP32 model and the binary forms alternate in blocks of runs
(bibench.latency.time_interleaved); medians of `--repeats` timed runs after `--warmup` runs.

    python bench/latency.py [--threads 1] [--warmup 20] [--repeats 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from bibench.algorithms import available
from bibench.checkpoint import build_cell_model
from bibench.export import export_onnx
from bibench.export_openvino import IR_FILE, export_openvino_binary
from bibench.latency import cpu_model, time_openvino
from bibench.models import build_model

ARCH, SHAPE, CLASSES = "resnet18", (3, 32, 32), 10


def calibrate_bn(model: torch.nn.Module, batches: int = 4, seed: int = 0) -> torch.nn.Module:
    """Sane BatchNorm statistics: a few train-mode forward passes on random images."""
    gen = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.rand(16, *SHAPE, generator=gen))
    return model.eval()


def run(threads: int, warmup: int, repeats: int, workdir: Path) -> dict[str, dict]:
    torch.manual_seed(0)
    fp = calibrate_bn(build_model(ARCH, SHAPE, CLASSES))
    example = torch.rand(1, *SHAPE, generator=torch.Generator().manual_seed(1))
    fp_path = workdir / "fp32.onnx"
    export_onnx(fp, example, fp_path)
    results: dict[str, dict] = {}
    forms = {}
    for algo in available():
        model = calibrate_bn(build_cell_model(ARCH, algo, SHAPE, CLASSES, fp_model=fp))
        form = export_openvino_binary(model, example, workdir / algo, algo)
        if form.deployable:
            forms[algo] = form
        else:
            results[algo] = {"deployable": False, "reason": form.reason}
            print(f"{algo}: not deployable", file=sys.stderr)
    # one window: the FP32 model and every binary form alternate in blocks, so all speedups
    # share one FP32 timing and the same machine state
    fp32, *binaries = time_openvino(
        [fp_path] + [workdir / algo / IR_FILE for algo in forms], example.numpy(),
        threads=threads, warmup=warmup, repeats=repeats,
    )
    for (algo, form), binary in zip(forms.items(), binaries, strict=True):
        results[algo] = {
            "engine": "openvino-cpu", "threads": threads,
            "fp32_ms": round(fp32.median_ms, 4), "binary_ms": round(binary.median_ms, 4),
            "speedup": round(fp32.median_ms / binary.median_ms, 2),
            "n_binary_conv": form.n_binary_conv,
        }
    return dict(sorted(results.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.repeats < 50:
        parser.error("--repeats must be at least 50")
    torch.set_num_threads(max(1, args.threads))
    print(f"CPU: {cpu_model()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bibench-latency-") as tmp:
        results = run(args.threads, args.warmup, args.repeats, Path(tmp))
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for algo, r in results.items():
            if r.get("deployable", True):
                print(f"{algo:9s} {r['fp32_ms']:8.3f} ms {r['binary_ms']:8.3f} ms "
                      f"{r['speedup']:6.2f}x  {r['n_binary_conv']} BinaryConvolution")
            else:
                print(f"{algo:9s} not deployable: {r['reason']}")


if __name__ == "__main__":
    main()
