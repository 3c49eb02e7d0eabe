"""FP32 (and optionally binarized) detectors on the embedded MNIST-scenes task: VOC07 mAP after
training, next to the mAP of random boxes on the same test set.

Usage: python bench/detection_embedded.py [--arch ssd300_vgg16_small] [--epochs 12]
       [--algorithm fp32] [--out bench/results/detection_embedded.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import numpy as np
import torch

from bibench.data import load_dataset
from bibench.evaluation.detection_metrics import voc07_map_metric
from bibench.evaluation.predict import predict
from bibench.training.checkpoint import build_cell_model
from bibench.training.loop import TrainSettings, train


def random_boxes(targets: torch.Tensor, num_classes: int, per_image: int, size: int,
                 seed: int = 0) -> list[dict]:
    """`per_image` boxes of digit-like sizes at random places, random classes and scores."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(len(targets)):
        wh = rng.uniform(14, 44, (per_image, 2))
        xy = rng.uniform(0, size - wh)
        out.append({"boxes": np.concatenate([xy, xy + wh], 1),
                    "scores": rng.random(per_image),
                    "labels": rng.integers(0, num_classes, per_image)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="ssd300_vgg16_small")
    parser.add_argument("--algorithm", default="fp32")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/results/detection_embedded.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = load_dataset("mnist_detection_embedded")
    model = build_cell_model(args.arch, args.algorithm, data.input_shape, data.num_classes)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    start = time.perf_counter()
    records = train(model, data.x_train, data.y_train, settings, seed=0,
                    device=torch.device("cpu"), task_type="detection")
    seconds = time.perf_counter() - start
    value = voc07_map_metric(predict(model, data.x_test, batch_size=32), data.y_test)
    baselines = {n: voc07_map_metric(random_boxes(data.y_test, data.num_classes, n, 96),
                                     data.y_test) for n in (10, 100)}
    result = {"arch": args.arch, "algorithm": args.algorithm, "epochs": args.epochs,
              "lr": args.lr, "batch_size": args.batch_size, "train_seconds": round(seconds, 1),
              "final_loss": records[-1]["loss"], "status": records[-1]["status"],
              "voc07_map": value, "random_boxes_voc07_map": baselines,
              "cpu": platform.processor() or platform.machine(), "threads": args.threads,
              "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(result, indent=1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(out.read_text()) if out.exists() else []
    out.write_text(json.dumps([*existing, result], indent=1) + "\n")


if __name__ == "__main__":
    main()
