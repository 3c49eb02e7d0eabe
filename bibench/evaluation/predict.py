"""Task metrics on clean and corrupted test sets."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from bibench.evaluation.task_metrics import TASK_METRICS, predicted_labels


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, *, batch_size: int = 256,
            device: torch.device | str = "cpu") -> Tensor | list[dict[str, Tensor]]:
    """Logits of `model` on `x`, computed in eval mode, returned on the CPU.

    A detector (a model with `detect`) returns its per-image detections instead: a list of
    {"boxes", "scores", "labels"}, what the detection metrics take.
    """
    model.to(device).eval()
    if hasattr(model, "detect"):
        return [{k: v.cpu() for k, v in d.items()}
                for xb in x.split(batch_size) for d in model.detect(xb.to(device))]
    return torch.cat([model(xb.to(device)).float().cpu() for xb in x.split(batch_size)])


# Task metrics by name (TaskData.metric): accuracy, f1, mcc, pearson_spearman, miou, ...
METRICS = TASK_METRICS


def per_example(output: Tensor | list, task_type: str, *, targets: bool = False
                ) -> np.ndarray | None:
    """What a paired test needs of each test example, flattened as float32: the predicted
    class (per point for segmentation), or the regression output; with `targets`, the
    targets themselves. Every task metric takes predicted labels as it takes logits
    (`predicted_labels`), so the metric can be recomputed on any resample of the examples.
    None for detection: its metric is not a function of per-image labels."""
    if task_type == "detection":
        return None
    if targets or task_type == "regression":
        values = output
    else:
        values = predicted_labels(output)
    return values.detach().cpu().reshape(-1).numpy().astype(np.float32)
