"""The generated point-cloud stand-ins (classification and part segmentation): shapes, balance,
normalisation, and that the shapes and parts carry signal."""

from __future__ import annotations

import pytest
import torch
from fixtures_embedded import load

from bibench.data.embedded import points

pytestmark = pytest.mark.usefixtures("no_network")


def test_pointcloud():
    d = load("pointcloud_embedded")
    assert d.stands_in_for == "ModelNet40" and "SYNTHETIC" in d.source
    assert d.x_train.shape == (1500, 3, 256) and d.x_test.shape == (500, 3, 256)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.num_classes == 10 and d.metric == "accuracy"
    assert d.y_train.bincount().tolist() == [150] * 10
    assert d.y_test.bincount().tolist() == [50] * 10
    norms = torch.cat([d.x_train, d.x_test]).norm(dim=1)  # (N, P)
    assert norms.max() < 1.1 and (norms.max(1).values > 0.9).all()  # unit-ball normalised


def test_pointcloud_rotation_is_about_the_up_axis_unless_so3(monkeypatch):
    """Upright shapes spun about z (ModelNet40's protocol) by default; any 3D rotation with
    rotation: so3; anything else is refused."""
    import numpy as np

    calls = []

    def spy(name, rotations):
        def rotate(rng, n):
            calls.append(name)
            return rotations(rng, n)
        return rotate

    monkeypatch.setitem(points.ROTATIONS, "z", spy("z", points._z_rotations))
    monkeypatch.setitem(points.ROTATIONS, "so3", spy("so3", points._random_rotations))
    points._pointcloud_arrays.cache_clear()
    upright = points.pointcloud_embedded(train_per_class=4, test_per_class=1, n_points=64)
    spun = points.pointcloud_embedded(train_per_class=4, test_per_class=1, n_points=64,
                                      rotation="so3")
    points._pointcloud_arrays.cache_clear()
    assert calls == ["z", "so3"]
    assert "rotation about z" in upright.source and "SO(3)" in spun.source
    r = points._z_rotations(np.random.default_rng(0), 5)
    assert np.allclose(r[:, 2], [0, 0, 1]) and np.allclose(r[:, :, 2], [0, 0, 1])
    with pytest.raises(ValueError, match="rotation 'x' is not one of"):
        points.pointcloud_embedded(train_per_class=4, test_per_class=1, rotation="x")


def test_pointcloud_classes_are_separable_by_simple_features():
    """Sanity: the shapes differ; a nearest-centroid classifier on sorted radii beats chance."""
    d = load("pointcloud_embedded")

    def feats(x):
        return x.norm(dim=1).sort(dim=1).values

    centroids = torch.stack([feats(d.x_train[d.y_train == c]).mean(0) for c in range(10)])
    pred = torch.cdist(feats(d.x_test), centroids).argmin(1)
    assert (pred == d.y_test).double().mean() > 0.4


def test_partseg():
    d = load("partseg_embedded")
    assert d.stands_in_for == "ShapeNet part" and "SYNTHETIC" in d.source
    assert d.task_type == "segmentation" and d.metric == "miou"
    assert d.x_train.shape == (1200, 3, 256) and d.x_test.shape == (300, 3, 256)
    assert d.y_train.shape == (1200, 256) and d.y_test.shape == (300, 256)
    assert d.y_train.dtype == torch.int64 and d.x_train.dtype == torch.float32
    assert d.num_classes == len(points.PART_NAMES) == 4
    counts = d.y_train.flatten().bincount(minlength=4)
    assert (counts > 0.05 * counts.sum()).all()  # every part well represented
    parts_per_shape = torch.stack([(d.y_train == p).any(1) for p in range(4)], 1).sum(1)
    assert parts_per_shape.min() >= 2  # objects are made of parts
    # a part covers at least min_points of the shape
    for p in range(4):
        present = (d.y_train == p).sum(1)
        assert present[present > 0].min() >= 8


def test_partseg_labels_follow_geometry():
    """Points of a part are spatially coherent: nearest-neighbour labels agree mostly."""
    d = load("partseg_embedded")
    x, y = d.x_test[:20].transpose(1, 2), d.y_test[:20]
    dist = torch.cdist(x, x) + torch.eye(x.shape[1]) * 10
    nn_label = torch.gather(y, 1, dist.argmin(2))
    assert (nn_label == y).double().mean() > 0.9
