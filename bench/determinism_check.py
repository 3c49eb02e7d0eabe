"""Train one cell twice with the same seed and compare (not a test; docs/gpu.md).

Runs the pretrain job (FP32) twice, then the binarize_finetune job of one algorithm twice from
the first FP32 checkpoint, on an embedded dataset, with the config's device and determinism
switch. Reports the largest difference of any epoch's loss and of any weight between the two
runs of each stage; exits 1 when one exceeds the tolerance. With PyTorch's deterministic mode
and no kernel flagged in the rows' `deterministic` column, both are expected to be 0.

    python bench/determinism_check.py --device cuda [--algorithm bnn] [--epochs 2]
        [--tolerance 1e-6] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from bibench.io import read_table
from bibench.jobs import finetune, pretrain


def _run(stage, out: Path, run: int, args: argparse.Namespace, **extra) -> Path:
    folder = out / f"{stage.__name__}{run}"
    settings = {"epochs": args.epochs, "batch_size": 64, "precision": args.precision}
    stage(task="digits", arch=args.arch, seed=0,
          dataset={"name": args.dataset, "max_train": args.max_train, "max_test": 64},
          settings=settings, device=args.device, determinism=args.determinism,
          threads=args.threads, model=str(folder / "model.pt"),
          table=str(folder / "train.parquet"), code="bench/determinism_check", **extra)
    return folder


def compare(a: Path, b: Path) -> dict:
    """Largest loss and weight differences between two runs, and their rows' facts."""
    ta, tb = read_table(a / "train.parquet", "train"), read_table(b / "train.parquet", "train")
    wa = torch.load(a / "model.pt", map_location="cpu", weights_only=True)
    wb = torch.load(b / "model.pt", map_location="cpu", weights_only=True)
    sa, sb = wa["state_dict"], wb["state_dict"]
    weight_diff = max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa
                      if sa[k].is_floating_point() and sa[k].numel())
    return {"max_loss_diff": float((ta["loss"] - tb["loss"]).abs().max()),
            "max_weight_diff": weight_diff,
            "status": sorted(set(ta["status"]) | set(tb["status"])),
            "deterministic": sorted(set(ta["deterministic"]) | set(tb["deterministic"])),
            "device": ta["device"].iloc[0], "device_model": ta["device_model"].iloc[0],
            "precision": ta["precision"].iloc[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--determinism", choices=["warn", "strict", "none"], default="warn")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--algorithm", default="bnn")
    parser.add_argument("--dataset", default="digits_embedded")
    parser.add_argument("--max-train", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tolerance", type=float, default=1e-6,
                        help="largest accepted loss or weight difference")
    parser.add_argument("--out", default=None, help="keep the runs here (default: temporary)")
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="bibench-determinism-"))
    fp = [_run(pretrain, out, i, args) for i in (1, 2)]
    ft = [_run(finetune, out, i, args, algorithm=args.algorithm,
               pretrained=str(fp[0] / "model.pt")) for i in (1, 2)]
    result = {"tolerance": args.tolerance, "determinism": args.determinism,
              "pretrain": compare(*fp), f"finetune_{args.algorithm}": compare(*ft)}
    stages = [v for v in result.values() if isinstance(v, dict)]
    result["within_tolerance"] = all(
        s["max_loss_diff"] <= args.tolerance and s["max_weight_diff"] <= args.tolerance
        for s in stages)
    print(json.dumps(result))
    return 0 if result["within_tolerance"] else 1


if __name__ == "__main__":
    sys.exit(main())
