"""Detectors on the embedded MNIST-scenes task: VOC07 mAP of the FP32 detector after training
and of each binarized one finetuned from it (the pipeline's recipe), next to the mAP of random
boxes on the same test set.

Usage: python bench/detection_embedded.py [--arch ssd300_vgg16_small] [--epochs 12]
       [--finetune bnn reactnet] [--finetune-epochs 12] [--finetune-lr 1e-3]
       [--fp32-checkpoint PATH] [--json]
With --fp32-checkpoint, the FP32 detector is trained once and saved there; later runs load it
and finetune other algorithms from the same start (a Faster R-CNN-small takes about half an
hour on one core). Keep a result with `python bench/measurements.py record detection_embedded
-- python bench/detection_embedded.py ... --json` (docs/measurements.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path

import torch

from bibench.data import load_dataset
from bibench.evaluation.detection_metrics import voc07_map_metric
from bibench.evaluation.predict import predict
from bibench.metrics.quality import convergence, random_boxes_level
from bibench.training.checkpoint import build_cell_model
from bibench.training.loop import TrainSettings, train


def _map(model: torch.nn.Module, data) -> float:
    return voc07_map_metric(predict(model, data.x_test, batch_size=32), data.y_test)


def _train(model: torch.nn.Module, data, epochs: int, lr: float, batch_size: int) -> dict:
    start = time.perf_counter()
    records = train(model, data.x_train, data.y_train,
                    TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr), seed=0,
                    device=torch.device("cpu"), task_type="detection")
    losses = [r["loss"] for r in records]
    return {"epochs": epochs, "lr": lr, "train_seconds": round(time.perf_counter() - start, 1),
            "losses": [round(v, 4) for v in losses], "status": records[-1]["status"],
            "convergence": convergence(losses, records[-1]["status"]),
            "voc07_map": _map(model, data)}


def _fp32(args, data) -> tuple[torch.nn.Module, dict]:
    """The FP32 detector: trained here (and saved to --fp32-checkpoint), or loaded from it."""
    model = build_cell_model(args.arch, "fp32", data.input_shape, data.num_classes)
    path = Path(args.fp32_checkpoint) if args.fp32_checkpoint else None
    if path is not None and path.exists():
        saved = torch.load(path, weights_only=True)
        if saved["arch"] != args.arch:
            raise SystemExit(f"{path} holds a {saved['arch']}, not a {args.arch}")
        model.load_state_dict(saved["state"])
        return model.eval(), {**saved["record"], "voc07_map": _map(model, data),
                              "loaded_from": str(path)}
    record = _train(model, data, args.epochs, args.lr, args.batch_size)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"arch": args.arch, "state": model.state_dict(), "record": record}, path)
    return model, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="ssd300_vgg16_small")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--finetune", nargs="*", default=[], help="binarized algorithms")
    parser.add_argument("--finetune-epochs", type=int, default=12)
    parser.add_argument("--finetune-lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fp32-checkpoint", help="save the trained FP32 detector here, or "
                        "load it from here when the file exists")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = load_dataset("mnist_detection_embedded")
    fp32, fp32_record = _fp32(args, data)
    result = {"arch": args.arch, "batch_size": args.batch_size, "threads": args.threads,
              "train_scenes": len(data.x_train), "test_scenes": len(data.x_test),
              "random_boxes_voc07_map": {
                  f"{n}_per_image": random_boxes_level(data.y_test, "voc07_map", per_image=n)
                  for n in (10, 100)},
              "fp32": fp32_record}
    for algorithm in args.finetune:
        torch.manual_seed(0)
        net = build_cell_model(args.arch, algorithm, data.input_shape, data.num_classes,
                               copy.deepcopy(fp32))
        result[algorithm] = _train(net, data, args.finetune_epochs, args.finetune_lr,
                                   args.batch_size)
    print(json.dumps(result) if args.json else json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
