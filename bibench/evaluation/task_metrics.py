"""Task metrics of the paper's tasks, on torch tensors, each returning a Python float.

Every metric takes the model's output and the targets:

* classification: logits (N, C) -> argmax over C; an integer/bool tensor is taken as predicted
  labels; a float (N,) or (N, 1) tensor is a single binary logit (positive when > 0);
* regression (STS-B style): output (N, 1) or (N,), targets (N,);
* segmentation: logits (N, C, P) and per-point targets (N, P).

`TASK_METRICS` maps the metric name a task declares (`TaskData.metric`) to its function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def predicted_labels(output: Tensor) -> Tensor:
    """Class labels from logits (N, C[, ...]) (argmax over dim 1), binary logits (N,) / (N, 1)
    (> 0), or labels already (integer or bool tensors, returned as int64)."""
    output = output.detach()
    if not output.is_floating_point():
        return output.long()
    if output.dim() == 1 or (output.dim() == 2 and output.shape[1] == 1):
        return (output.reshape(-1) > 0).long()
    return output.argmax(dim=1)


def _check(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    target = target.detach().long().reshape(-1)
    pred = pred.reshape(-1)
    if pred.shape != target.shape:
        raise ValueError(f"{pred.numel()} predictions for {target.numel()} targets")
    if target.numel() == 0:
        raise ValueError("no samples")
    return pred, target


def accuracy(output: Tensor, target: Tensor) -> float:
    """Fraction of correct labels (per point for segmentation logits)."""
    pred, target = _check(predicted_labels(output), target)
    return (pred == target).double().mean().item()


def f1(output: Tensor, target: Tensor) -> float:
    """Binary F1 of the positive class 1 (0.0 when there are no true positives)."""
    pred, target = _check(predicted_labels(output), target)
    tp = ((pred == 1) & (target == 1)).sum().item()
    fp = ((pred == 1) & (target != 1)).sum().item()
    fn = ((pred != 1) & (target == 1)).sum().item()
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def mcc(output: Tensor, target: Tensor) -> float:
    """Matthews correlation coefficient (multiclass form, as scikit-learn); 0.0 when undefined
    (a constant prediction or a single target class)."""
    pred, target = _check(predicted_labels(output), target)
    n_classes = int(max(pred.max().item(), target.max().item())) + 1
    cm = torch.bincount(target * n_classes + pred, minlength=n_classes**2)
    cm = cm.reshape(n_classes, n_classes).double()
    t, p = cm.sum(1), cm.sum(0)  # true and predicted counts per class
    c, s = cm.trace(), cm.sum()
    cov_tp = c * s - (t * p).sum()
    denom = torch.sqrt((s * s - (p * p).sum()) * (s * s - (t * t).sum()))
    return 0.0 if denom.item() == 0 else (cov_tp / denom).item()


def _values(output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    x = output.detach().double().reshape(-1)
    y = target.detach().double().reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"{x.numel()} outputs for {y.numel()} targets")
    if x.numel() < 2:
        raise ValueError("correlation needs at least 2 samples")
    return x, y


def _corr(x: Tensor, y: Tensor) -> float:
    x, y = x - x.mean(), y - y.mean()
    denom = torch.sqrt((x * x).sum() * (y * y).sum())
    if denom.item() == 0:  # a constant output (e.g. a collapsed binary network): no correlation
        return 0.0
    return (x * y).sum().div(denom).clamp(-1.0, 1.0).item()


def rankdata(x: Tensor) -> Tensor:
    """Ranks 1..N of a 1-d tensor, ties given their average rank (scipy's "average")."""
    sorted_x, order = torch.sort(x, stable=True)
    _, inverse, counts = torch.unique_consecutive(sorted_x, return_inverse=True,
                                                  return_counts=True)
    ends = counts.cumsum(0).double()  # 1-based rank of each tie group's last member
    average = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = average[inverse]
    return ranks


def pearson(output: Tensor, target: Tensor) -> float:
    """Pearson correlation (0.0 when either side is constant)."""
    return _corr(*_values(output, target))


def spearman(output: Tensor, target: Tensor) -> float:
    """Spearman rank correlation, ties by average rank (0.0 when either side is constant)."""
    x, y = _values(output, target)
    return _corr(rankdata(x), rankdata(y))


def pearson_and_spearman(output: Tensor, target: Tensor) -> tuple[float, float]:
    return pearson(output, target), spearman(output, target)


def pearson_spearman(output: Tensor, target: Tensor) -> float:
    """The GLUE STS-B score: mean of Pearson and Spearman correlation."""
    p, s = pearson_and_spearman(output, target)
    return (p + s) / 2


def miou(output: Tensor, target: Tensor,
         part_groups: Sequence[Sequence[int]] | None = None) -> float:
    """Mean IoU of part segmentation, the PointNet convention: per shape, the IoU of every part
    averaged (a part absent from both prediction and ground truth counts 1), then averaged over
    shapes.

    `output`: logits (N, C, P) or predicted labels (N, P); `target`: (N, P).
    Without `part_groups` every shape is scored over all C parts. With `part_groups` (the parts
    of each object category, e.g. ShapeNet's 16 categories over 50 parts), a shape is scored
    over the parts of its category only (the category holding its first ground-truth label),
    and logits are argmaxed within those parts, as PointNet's evaluation does.
    """
    target = target.detach().long()
    if target.dim() != 2:
        raise ValueError(f"targets must be (N, P), got {tuple(target.shape)}")
    output = output.detach()
    logits = output.is_floating_point()
    if logits and output.dim() != 3:
        raise ValueError(f"segmentation logits must be (N, C, P), got {tuple(output.shape)}")
    n_parts = output.shape[1] if logits else int(max(output.max(), target.max())) + 1
    if part_groups is None:
        part_groups = [list(range(n_parts))]
    part_to_group = {p: g for g, parts in enumerate(part_groups) for p in parts}
    scores = []
    for i in range(target.shape[0]):
        parts = torch.as_tensor(list(part_groups[part_to_group[int(target[i, 0])]]))
        if logits:
            pred = parts[output[i, parts].argmax(dim=0)]
        else:
            pred = output[i].long()
        if pred.shape != target[i].shape:
            raise ValueError(f"prediction {tuple(pred.shape)} vs target {tuple(target[i].shape)}")
        p_hot = pred[None, :] == parts[:, None]  # (parts, P)
        t_hot = target[i][None, :] == parts[:, None]
        inter = (p_hot & t_hot).sum(1).double()
        union = (p_hot | t_hot).sum(1).double()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        scores.append(iou.mean())
    return torch.stack(scores).mean().item()


# The part labels of each ShapeNet part category (16 categories, 50 parts), as in PointNet's
# evaluation; use with `miou(..., part_groups=SHAPENET_PART_GROUPS.values())`.
SHAPENET_PART_GROUPS: dict[str, list[int]] = {
    "Airplane": [0, 1, 2, 3], "Bag": [4, 5], "Cap": [6, 7], "Car": [8, 9, 10, 11],
    "Chair": [12, 13, 14, 15], "Earphone": [16, 17, 18], "Guitar": [19, 20, 21],
    "Knife": [22, 23], "Lamp": [24, 25, 26, 27], "Laptop": [28, 29],
    "Motorbike": [30, 31, 32, 33, 34, 35], "Mug": [36, 37], "Pistol": [38, 39, 40],
    "Rocket": [41, 42, 43], "Skateboard": [44, 45, 46], "Table": [47, 48, 49],
}


def miou_shapenet(output: Tensor, target: Tensor) -> float:
    """`miou` scored within each shape's ShapeNet category (for the real ShapeNet part data)."""
    return miou(output, target, part_groups=list(SHAPENET_PART_GROUPS.values()))


TASK_METRICS: dict[str, Callable[[Tensor, Tensor], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "mcc": mcc,
    "pearson_spearman": pearson_spearman,
    "miou": miou,
    "miou_shapenet": miou_shapenet,
}


def _detection_metrics() -> None:
    from bibench.evaluation.detection_metrics import coco_map_metric, voc07_map_metric

    TASK_METRICS.update(voc07_map=voc07_map_metric, coco_map=coco_map_metric)


_detection_metrics()
