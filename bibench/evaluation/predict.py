"""Task metrics on clean and corrupted test sets."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bibench.evaluation.task_metrics import TASK_METRICS


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, *, batch_size: int = 256,
            device: torch.device | str = "cpu") -> Tensor:
    """Logits of `model` on `x`, computed in eval mode, returned on the CPU."""
    model.to(device).eval()
    return torch.cat([model(xb.to(device)).float().cpu() for xb in x.split(batch_size)])


# Task metrics by name (TaskData.metric): accuracy, f1, mcc, pearson_spearman, miou, ...
METRICS = TASK_METRICS
