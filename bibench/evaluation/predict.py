"""Task metrics on clean and corrupted test sets."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bibench.evaluation.task_metrics import TASK_METRICS


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
