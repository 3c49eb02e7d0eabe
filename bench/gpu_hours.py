"""GPU-hours of a config's training jobs, from bench/train_step.py measurements (not a test).

Every training job of the config (pretrain per task x architecture x seed, binarize_finetune
per binarized algorithm, and every sensitivity run) costs epochs x ceil(train samples / batch)
steps; a step costs the measured step time of its architecture and algorithm, scaled linearly
from the measured batch size to the job's. Evaluation, export and latency run on CPUs and are
not counted. Method and caveats: docs/gpu.md.

    python bench/train_step.py --device cuda --arch resnet18 --batch 128 --json > rn18.json
    python bench/gpu_hours.py --config config/paper.yaml rn18.json [more.json ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bibench.catalog import EMBEDDED_DATASETS, FP32
from bibench.config import canonical, load_config

# Training-set sizes of the official datasets (the splits bibench.data.official reads).
TRAIN_SAMPLES = {
    "cifar10": 50_000, "imagenet": 1_281_167, "modelnet40": 9_843, "shapenet_part": 12_137,
    "speech_commands": 51_088, "glue_cola": 8_551, "glue_sst2": 67_349, "glue_mrpc": 3_668,
    "glue_stsb": 5_749, "glue_qqp": 363_846, "glue_mnli": 392_702, "glue_qnli": 104_743,
    "glue_rte": 2_490, "glue_wnli": 635,
    # detection: VOC07+12 trainval; COCO train2017 images with a non-crowd object (the loader
    # drops the others)
    "voc07": 16_551, "coco17": 117_266,
}


def train_samples(task: dict[str, Any]) -> int:
    """Samples one epoch of the task trains on (max_train caps the dataset)."""
    name = task["dataset"]
    if name in EMBEDDED_DATASETS:
        from bibench.data import load_dataset

        n = len(load_dataset(name, options=task.get("options"), max_train=task["max_train"])
                .x_train)
    else:
        n = TRAIN_SAMPLES[name]
    return min(n, task["max_train"]) if task.get("max_train") else n


def training_jobs(config: dict[str, Any]) -> Iterator[tuple[str, str, str, str, dict]]:
    """(kind, task, arch, algorithm, settings) of every training job the workflow runs."""
    binary = [a for a in config["algorithms"] if a != FP32]
    for name, task in config["tasks"].items():
        for arch in task["architectures"]:
            for _seed in config["seeds"]:
                yield "pretrain", name, arch, FP32, task["pretrain"]
                for algo in binary:
                    yield "finetune", name, arch, algo, task["finetune"]
    sens = config["sensitivity"]
    for name in sens["tasks"]:
        task = config["tasks"][name]
        for arch in task["architectures"]:
            for algo in config["algorithms"]:
                base = task["pretrain"] if algo == FP32 else task["finetune"]
                for override in sens["settings"].values():
                    for _seed in sens["seeds"]:
                        yield "sensitivity", name, arch, algo, {**base, **override}


def load_measurements(paths: list[str]) -> dict[str, dict[str, Any]]:
    """train_step.py JSON objects by architecture (one per architecture); a result kept by
    bench/measurements.py (bench/results/*.json) is read from its `result`."""
    by_arch: dict[str, dict[str, Any]] = {}
    for path in paths:
        m = json.loads(Path(path).read_text())
        m = m["result"] if "benchmark" in m and "result" in m else m
        if m["arch"] in by_arch:
            raise ValueError(f"{path}: a second measurement of {m['arch']}")
        by_arch[m["arch"]] = m
    return by_arch


def step_seconds(m: dict[str, Any], algorithm: str, batch: int) -> float:
    """The measured step time of `algorithm`, scaled linearly to `batch`; for an extrapolated
    architecture, the model's FP32 step at `batch` times the algorithm's ratio."""
    if "model" in m:
        ratio = 1.0 if algorithm == FP32 else m["algorithms"][algorithm]["ratio_vs_fp32"]
        fp32_ms = max(m["model"]["floor_ms"], m["model"]["ms_per_sample"] * batch)
        return fp32_ms * ratio / 1e3
    entry = m["fp32"] if algorithm == FP32 else m["algorithms"][algorithm]
    return entry["step_ms"] / 1e3 * batch / m["batch"]


def training_flops(arch: str) -> float:
    """FP32 training FLOPs per sample at the paper's input (forward + backward = 3 forwards)."""
    from bibench.metrics.complexity import layer_costs, totals
    from bibench.models import get_architecture
    from bibench.training.checkpoint import build_cell_model, example_input

    shape, classes = get_architecture(arch).paper_input
    model = build_cell_model(arch, FP32, shape, classes)
    return 3.0 * totals(layer_costs(model, example_input(arch, shape, batch=1))).flops


def extrapolate(measured: dict[str, dict[str, Any]], archs: set[str]) -> dict[str, dict]:
    """Stand-in measurements for unmeasured `archs` (those with a paper input shape).

    An FP32 step at batch b takes max(floor, b x FLOPs / rate): the floor is the smallest
    measured FP32 step (launches and the optimizer, which small models are bound by on a
    GPU), the rate the best measured training FLOP rate (the large models). A binarized step
    takes the ratios to FP32 of the measured architecture in the same regime: the smallest one
    where the floor dominates at its batch size, else the largest. A planning figure only."""
    from bibench.models import get_architecture

    flops = {a: training_flops(a) for a in measured}
    rate = max(flops[a] * m["fp32"]["samples_per_s"] for a, m in measured.items())
    floor = min(m["fp32"]["step_ms"] for m in measured.values())
    smallest, largest = min(measured, key=flops.get), max(measured, key=flops.get)
    out = {}
    for arch in sorted(a for a in archs if get_architecture(a).paper_input is not None):
        per_sample = 1e3 * training_flops(arch) / rate
        bound = per_sample * measured[smallest]["batch"] < floor
        like = smallest if bound else largest
        out[arch] = {"arch": arch, "device_model": measured[like]["device_model"],
                     "model": {"floor_ms": floor, "ms_per_sample": per_sample},
                     "algorithms": measured[like]["algorithms"], "ratios_from": like}
    return out


def estimate(config: dict[str, Any], measured: dict[str, dict[str, Any]],
             extrapolated: bool = False) -> dict[str, Any]:
    """GPU-hours per task/arch and in total; what has no measurement is listed (arch/algorithm,
    or the architecture alone when none of it was measured) and not counted. With
    `extrapolated`, architectures not measured are estimated by `extrapolate` and marked."""
    stand_ins: dict[str, dict] = {}
    if extrapolated:
        archs = {a for t in config["tasks"].values() for a in t["architectures"]}
        stand_ins = extrapolate(measured, archs - set(measured))
        measured = {**measured, **stand_ins}
    hours: dict[str, float] = defaultdict(float)
    jobs: dict[str, int] = defaultdict(int)
    missing: set[str] = set()
    samples: dict[str, int] = {}
    for _kind, task, arch, algo, settings in training_jobs(config):
        if arch not in measured or (algo != FP32 and algo not in measured[arch]["algorithms"]):
            missing.add(f"{arch}/{algo}")
            continue
        if task not in samples:  # only where counted: an embedded one is loaded to count it
            samples[task] = train_samples(config["tasks"][task])
        steps = settings["epochs"] * math.ceil(samples[task] / settings["batch_size"])
        hours[f"{task}/{arch}"] += steps * step_seconds(measured[arch], algo,
                                                        settings["batch_size"]) / 3600
        jobs[f"{task}/{arch}"] += 1
    guessed = {k for k in hours if k.split("/")[1] in stand_ins}
    return {"per_task_arch": {k: {"jobs": jobs[k], "gpu_hours": round(v, 2)}
                              | ({"extrapolated": True,
                                  "ratios_from": stand_ins[k.split("/")[1]]["ratios_from"]}
                                 if k in guessed else {})
                              for k, v in sorted(hours.items())},
            "total_gpu_hours": round(sum(hours.values()), 2),
            "extrapolated_gpu_hours": round(sum(hours[k] for k in guessed), 2),
            "not_measured": sorted(a for a in missing if a.split("/")[0] in measured)
            + sorted({a.split("/")[0] for a in missing if a.split("/")[0] not in measured}),
            "measured_on": sorted({m["device_model"] for m in measured.values()})}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measurements", nargs="+", help="bench/train_step.py --json outputs")
    parser.add_argument("--config", default="config/paper.yaml")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--extrapolate", action="store_true",
                        help="estimate unmeasured architectures from their FLOPs (marked)")
    args = parser.parse_args(argv)
    config = canonical(load_config(args.config))  # bounded, as `bibench status` reads it
    result = estimate(config, load_measurements(args.measurements), args.extrapolate)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.config} on {', '.join(result['measured_on'])}")
    for key, r in result["per_task_arch"].items():
        guess = f"  (extrapolated; ratios of {r['ratios_from']})" \
            if r.get("extrapolated") else ""
        print(f"{key:<40} {r['jobs']:>5} jobs {r['gpu_hours']:>10.1f} GPU-h{guess}")
    print(f"{'total':<40} {'':>10} {result['total_gpu_hours']:>10.1f} GPU-h"
          f" (of which extrapolated {result['extrapolated_gpu_hours']:.1f})")
    if result["not_measured"]:
        print("not counted (no measurement): " + ", ".join(result["not_measured"]),
              file=sys.stderr)


if __name__ == "__main__":
    main()
