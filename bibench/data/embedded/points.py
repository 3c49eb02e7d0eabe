"""Offline stand-ins for ModelNet40 and ShapeNet part: no point-cloud data set ships in a wheel,
so `pointcloud_embedded` and `partseg_embedded` are GENERATED (synthetic) shapes.

Every split is fixed (seed 0, seed 1 for part segmentation) and independent of the training
seed; generated arrays are cached in memory and each load builds fresh tensors, so callers may
modify what they get.
"""

from __future__ import annotations

import functools

import numpy as np

from bibench.data import TaskData, register_dataset
from bibench.data.embedded.common import SEED, make_task

NUM_POINTS = 256


def _random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """n uniformly random rotation matrices (n, 3, 3), from normalised Gaussian quaternions."""
    q = rng.normal(size=(n, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def _z_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    a = rng.uniform(0, 2 * np.pi, size=n)
    c, s, zero, one = np.cos(a), np.sin(a), np.zeros(n), np.ones(n)
    return np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1),
                     np.stack([zero, zero, one], -1)], axis=1)


def _finish(rng: np.random.Generator, points: np.ndarray, rotations: np.ndarray,
            jitter: float = 0.01, clip: float = 0.03) -> np.ndarray:
    """Batched (n, P, 3): random anisotropic scale 0.85-1.15, rotation, centring and scaling
    into the unit ball, clipped Gaussian jitter."""
    points = points * rng.uniform(0.85, 1.15, size=(len(points), 1, 3))
    points = points @ rotations.transpose(0, 2, 1)
    points = points - points.mean(1, keepdims=True)
    points = points / np.linalg.norm(points, axis=2).max(1)[:, None, None]
    return points + np.clip(rng.normal(scale=jitter, size=points.shape), -clip, clip)


# Primitive surfaces: each is (area, sampler(rng, k) -> (k, 3)), in the local frame of its shape.

def _box(center, half):
    cx, hx = np.asarray(center, float), np.asarray(half, float)
    faces = np.array([hx[1] * hx[2], hx[0] * hx[2], hx[0] * hx[1]])
    area = 8 * faces.sum()

    cum = np.cumsum(faces) / faces.sum()

    def sample(rng, k):
        axis = np.minimum(np.searchsorted(cum, rng.uniform(size=k)), 2)
        p = rng.uniform(-1, 1, size=(k, 3))
        p[np.arange(k), axis] = np.sign(p[np.arange(k), axis])  # onto the face
        return cx + p * hx

    return area, sample


def _frustum(center, r0, r1, height, axis=2):
    """Lateral surface of a frustum (cone if r1 == 0, cylinder if r0 == r1) along `axis`."""
    c = np.asarray(center, float)
    area = np.pi * (r0 + r1) * np.hypot(height, r0 - r1)

    def sample(rng, k):
        out = np.empty(0)
        while out.size < k:  # area-uniform: accept t with probability radius(t) / max radius
            t = rng.uniform(size=2 * k + 8)
            keep = rng.uniform(size=t.size) * max(r0, r1) <= r0 + (r1 - r0) * t
            out = np.concatenate([out, t[keep]])
        t = out[:k]
        r = r0 + (r1 - r0) * t
        a = rng.uniform(0, 2 * np.pi, size=k)
        local = np.stack([r * np.cos(a), r * np.sin(a), t * height], axis=1)
        return c + np.roll(local, axis - 2, axis=1)

    return area, sample


def _disk(center, radius, axis=2, inner=0.0):
    c = np.asarray(center, float)
    area = np.pi * (radius**2 - inner**2)

    def sample(rng, k):
        r = np.sqrt(rng.uniform(inner**2, radius**2, size=k))
        a = rng.uniform(0, 2 * np.pi, size=k)
        local = np.stack([r * np.cos(a), r * np.sin(a), np.zeros(k)], axis=1)
        return c + np.roll(local, axis - 2, axis=1)

    return area, sample


def _triangle(a, b, c):
    a, b, c = (np.asarray(v, float) for v in (a, b, c))
    e1, e2 = b - a, c - a
    area = 0.5 * float(np.sqrt(((e1[[1, 2, 0]] * e2[[2, 0, 1]] - e1[[2, 0, 1]] * e2[[1, 2, 0]])
                                ** 2).sum()))

    def sample(rng, k):
        u, v = rng.uniform(size=(2, k))
        flip = u + v > 1
        u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
        return a + u[:, None] * (b - a) + v[:, None] * (c - a)

    return area, sample


def _ellipsoid(center, axes, zmin=-1.0):
    c, ax = np.asarray(center, float), np.asarray(axes, float)
    area = 4 * np.pi * (np.prod(ax) ** (2 / 3)) * (1 - zmin) / 2

    def sample(rng, k):
        out = np.empty((0, 3))
        while len(out) < k:
            d = rng.normal(size=(2 * k + 8, 3))
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            out = np.concatenate([out, d[d[:, 2] >= zmin]])
        return c + out[:k] * ax

    return area, sample


def _torus(center, big, small, arc=2 * np.pi, vertical=False):
    """Torus (or, with arc < 2 pi, a partial one centred on +x) around z, or around y when
    `vertical` (a mug handle standing in the x-z plane)."""
    c = np.asarray(center, float)
    area = arc * big * 2 * np.pi * small

    def sample(rng, k):
        u = rng.uniform(-arc / 2, arc / 2, size=k)
        v = rng.uniform(0, 2 * np.pi, size=k)
        ring = big + small * np.cos(v)
        local = np.stack([ring * np.cos(u), ring * np.sin(u), small * np.sin(v)], axis=1)
        return c + (local[:, [0, 2, 1]] if vertical else local)

    return area, sample


def _helix(turns, radius, pitch, tube):
    length = turns * np.hypot(2 * np.pi * radius, pitch)
    area = length * 2 * np.pi * tube

    def sample(rng, k):
        t = rng.uniform(0, 2 * np.pi * turns, size=k)
        p = np.stack([radius * np.cos(t), radius * np.sin(t), pitch * t / (2 * np.pi)], axis=1)
        return p + rng.normal(scale=tube, size=(k, 3))

    return area, sample


def _sample_parts(rng: np.random.Generator, parts: list[tuple[int, list]], n_points: int,
                  min_points: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform samples over the union of primitives; `parts` is [(label, primitives)].

    Points are split between parts by area (largest remainder), each part getting at least
    `min_points`, and between the primitives of a part at random in proportion to area."""
    part_area = np.array([sum(a for a, _ in group) for _, group in parts])
    spare = n_points - min_points * len(parts)
    quota = spare * part_area / part_area.sum()
    take = np.floor(quota).astype(int)
    take[np.argsort(take - quota)[: spare - take.sum()]] += 1
    take += min_points
    points, labels = [], []
    for (label, group), k in zip(parts, take, strict=True):
        w = np.array([a for a, _ in group])
        counts = rng.multinomial(k, w / w.sum()) if len(group) > 1 else [k]
        for (_, fn), m in zip(group, counts, strict=True):
            if m:
                points.append(fn(rng, m))
                labels.append(np.full(m, label))
    return np.concatenate(points), np.concatenate(labels)


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def _shape_sphere(rng):
    return [_ellipsoid((0, 0, 0), (1, 1, 1))]


def _shape_cube(rng):
    return [_box((0, 0, 0), (1, 1, 1))]


def _shape_cylinder(rng):
    r, h = _u(rng, 0.35, 0.6), _u(rng, 1.6, 2.4)
    return [_frustum((0, 0, 0), r, r, h), _disk((0, 0, 0), r), _disk((0, 0, h), r)]


def _shape_cone(rng):
    r, h = _u(rng, 0.6, 1.0), _u(rng, 1.4, 2.0)
    return [_frustum((0, 0, 0), r, 0.0, h), _disk((0, 0, 0), r)]


def _shape_torus(rng):
    return [_torus((0, 0, 0), 1.0, _u(rng, 0.2, 0.4))]


def _shape_plane(rng):
    a, b = 1.0, _u(rng, 0.5, 1.0)
    return [_triangle((-a, -b, 0), (a, -b, 0), (a, b, 0)),
            _triangle((-a, -b, 0), (a, b, 0), (-a, b, 0))]


def _shape_pyramid(rng):
    h, s = _u(rng, 1.0, 1.8), 1.0
    corners = [(-s, -s, 0), (s, -s, 0), (s, s, 0), (-s, s, 0)]
    apex = (0, 0, h)
    faces = [_triangle(corners[i], corners[(i + 1) % 4], apex) for i in range(4)]
    return faces + [_triangle(corners[0], corners[1], corners[2]),
                    _triangle(corners[0], corners[2], corners[3])]


def _shape_helix(rng):
    return [_helix(_u(rng, 2.0, 3.5), 1.0, _u(rng, 0.6, 1.0), 0.05)]


def _shape_ellipsoid(rng):
    return [_ellipsoid((0, 0, 0), (1.0, _u(rng, 0.55, 0.7), _u(rng, 0.25, 0.35)))]


def _shape_bowl(rng):
    return [_ellipsoid((0, 0, 0), (1, 1, _u(rng, 0.8, 1.2)), zmin=0.0)]


POINTCLOUD_CLASSES = {
    "sphere": _shape_sphere, "cube": _shape_cube, "cylinder": _shape_cylinder,
    "cone": _shape_cone, "torus": _shape_torus, "plane": _shape_plane,
    "pyramid": _shape_pyramid, "helix": _shape_helix, "ellipsoid": _shape_ellipsoid,
    "bowl": _shape_bowl,
}


def _split_indices(rng: np.random.Generator, labels: np.ndarray, n_train_per: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        train.append(idx[:n_train_per])
        test.append(idx[n_train_per:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


ROTATIONS = {"z": _z_rotations, "so3": _random_rotations}


@functools.lru_cache(maxsize=2)
def _pointcloud_arrays(train_per_class: int, test_per_class: int, n_points: int,
                       rotation: str):
    if rotation not in ROTATIONS:
        raise ValueError(f"pointcloud_embedded: rotation {rotation!r} is not one of "
                         f"{sorted(ROTATIONS)}")
    rng = np.random.default_rng(SEED)
    xs, ys = [], []
    for label, make in enumerate(POINTCLOUD_CLASSES.values()):
        for _ in range(train_per_class + test_per_class):
            xs.append(_sample_parts(rng, [(0, make(rng))], n_points)[0])
            ys.append(label)
    pts = _finish(rng, np.stack(xs), ROTATIONS[rotation](rng, len(xs)))
    order = np.argsort(rng.uniform(size=pts.shape[:2]), axis=1)  # shuffle the points
    pts = np.take_along_axis(pts, order[:, :, None], axis=1)
    x, y = pts.transpose(0, 2, 1).astype(np.float32), np.array(ys, dtype=np.int64)
    train_idx, test_idx = _split_indices(rng, y, train_per_class)
    return x, y, train_idx, test_idx


@register_dataset(
    "pointcloud_embedded",
    "GENERATED point clouds of 10 parametric shapes (256 points, random rotation about the up "
    "axis (or any, rotation: so3), scale, jitter); synthetic stand-in for ModelNet40",
)
def pointcloud_embedded(train_per_class: int = 150, test_per_class: int = 50,
                        n_points: int = NUM_POINTS, rotation: str = "z") -> TaskData:
    """Rotation about the up axis by default, as ModelNet40's shapes are aligned upright and
    PointNet's protocol augments them about that axis; `so3` rotates them at random in 3D."""
    x, y, train_idx, test_idx = _pointcloud_arrays(train_per_class, test_per_class, n_points,
                                                   rotation)
    return make_task(
        "pointcloud_embedded", x, y, train_idx, test_idx,
        num_classes=len(POINTCLOUD_CLASSES), metric="accuracy", stands_in_for="ModelNet40",
        source="SYNTHETIC: generated in bibench.data.embedded.points (seed 0), area-uniform "
               f"samples of {len(POINTCLOUD_CLASSES)} parametric surfaces "
               f"({', '.join(POINTCLOUD_CLASSES)}), random "
               f"{'SO(3) rotation' if rotation == 'so3' else 'rotation about z'}, "
               "anisotropic scale 0.85-1.15, unit-ball normalised, jitter 0.01; "
               f"{n_points} points, (N, 3, P)",
    )


# Part segmentation: objects made of parts sharing one label space of semantic roles (every
# category uses a subset), so per-shape mIoU over all parts follows the PointNet convention.
PART_NAMES = ("support", "body", "top", "attachment")
SUPPORT, BODY, TOP, ATTACH = range(4)


def _lamp(rng):
    rb, hb = _u(rng, 0.35, 0.5), _u(rng, 0.05, 0.1)
    hp, rp = _u(rng, 1.2, 1.8), _u(rng, 0.03, 0.05)
    rs0, rs1, hs = _u(rng, 0.45, 0.65), _u(rng, 0.15, 0.25), _u(rng, 0.4, 0.6)
    return [
        (SUPPORT, [_frustum((0, 0, 0), rb, rb, hb), _disk((0, 0, hb), rb)]),
        (BODY, [_frustum((0, 0, hb), rp, rp, hp)]),
        (TOP, [_frustum((0, 0, hb + hp - 0.6 * hs), rs0, rs1, hs)]),
    ]


def _table(rng):
    w, d, h, t = _u(rng, 0.9, 1.3), _u(rng, 0.5, 0.9), _u(rng, 0.7, 1.0), _u(rng, 0.04, 0.08)
    leg = _u(rng, 0.04, 0.07)
    legs = [_box((sx * (w - 2 * leg), sy * (d - 2 * leg), h / 2), (leg, leg, h / 2))
            for sx in (-1, 1) for sy in (-1, 1)]
    return [(SUPPORT, legs), (TOP, [_box((0, 0, h + t), (w, d, t))])]


def _chair(rng):
    w, h, t = _u(rng, 0.45, 0.6), _u(rng, 0.45, 0.6), 0.05
    hb, leg = _u(rng, 0.6, 0.9), 0.04
    legs = [_box((sx * (w - leg), sy * (w - leg), h / 2), (leg, leg, h / 2))
            for sx in (-1, 1) for sy in (-1, 1)]
    return [
        (SUPPORT, legs),
        (BODY, [_box((0, 0, h + t), (w, w, t))]),
        (TOP, [_box((0, -w + t, h + 2 * t + hb / 2), (w, t, hb / 2))]),
    ]


def _mug(rng):
    r, h = _u(rng, 0.4, 0.55), _u(rng, 0.8, 1.2)
    big, small = _u(rng, 0.22, 0.3), 0.05
    return [
        (BODY, [_frustum((0, 0, 0), r, r, h), _disk((0, 0, 0), r)]),
        (ATTACH, [_torus((r, 0, h / 2), big, small, arc=np.pi, vertical=True)]),
    ]


def _airplane(rng):
    L, r = _u(rng, 2.0, 2.6), _u(rng, 0.12, 0.18)
    span, chord = _u(rng, 1.0, 1.4), _u(rng, 0.3, 0.45)
    fin = _u(rng, 0.3, 0.45)
    x0 = -L / 2
    wing_x = x0 + 0.45 * L
    wings = [_triangle((wing_x, 0, 0), (wing_x + chord, 0, 0), (wing_x + chord, s * span, 0))
             for s in (-1, 1)]
    tail_x = x0 + 0.05 * L
    return [
        (BODY, [_frustum((x0, 0, 0), r, r, L, axis=0)]),
        (ATTACH, wings),
        (TOP, [_triangle((tail_x, 0, r), (tail_x + 0.3, 0, r), (tail_x, 0, r + fin))]),
    ]


def _rocket(rng):
    r, h, hn = _u(rng, 0.15, 0.22), _u(rng, 1.4, 2.0), _u(rng, 0.35, 0.55)
    fin = _u(rng, 0.25, 0.4)
    fins = []
    for k in range(4):
        a = k * np.pi / 2 + np.pi / 4
        d = np.array([np.cos(a), np.sin(a), 0.0])
        fins.append(_triangle(r * d, r * d + (0, 0, fin * 1.5), (r + fin) * d))
    return [
        (BODY, [_frustum((0, 0, 0), r, r, h)]),
        (TOP, [_frustum((0, 0, h), r, 0.0, hn)]),
        (ATTACH, fins),
    ]


PARTSEG_CATEGORIES = {
    "lamp": _lamp, "table": _table, "chair": _chair, "mug": _mug, "airplane": _airplane,
    "rocket": _rocket,
}


@functools.lru_cache(maxsize=2)
def _partseg_arrays(train_per_category: int, test_per_category: int, n_points: int):
    rng = np.random.default_rng(SEED + 1)
    xs, ys, cats = [], [], []
    for cat, make in enumerate(PARTSEG_CATEGORIES.values()):
        for _ in range(train_per_category + test_per_category):
            pts, parts = _sample_parts(rng, make(rng), n_points, min_points=8)
            xs.append(pts)
            ys.append(parts)
            cats.append(cat)
    # ShapeNet part shapes are aligned: rotate about the vertical axis only
    pts = _finish(rng, np.stack(xs), _z_rotations(rng, len(xs)), jitter=0.005, clip=0.015)
    order = np.argsort(rng.uniform(size=pts.shape[:2]), axis=1)  # shuffle the points
    pts = np.take_along_axis(pts, order[:, :, None], axis=1)
    x = pts.transpose(0, 2, 1).astype(np.float32)
    y = np.take_along_axis(np.stack(ys), order, axis=1).astype(np.int64)
    train_idx, test_idx = _split_indices(rng, np.array(cats), train_per_category)
    return x, y, train_idx, test_idx


@register_dataset(
    "partseg_embedded",
    "GENERATED objects made of parts (lamp, table, chair, mug, airplane, rocket) with per-point "
    "part labels (4 parts, 256 points); synthetic stand-in for ShapeNet part",
)
def partseg_embedded(train_per_category: int = 200, test_per_category: int = 50,
                     n_points: int = NUM_POINTS) -> TaskData:
    x, y, train_idx, test_idx = _partseg_arrays(train_per_category, test_per_category, n_points)
    return make_task(
        "partseg_embedded", x, y, train_idx, test_idx, num_classes=len(PART_NAMES),
        metric="miou", task_type="segmentation", stands_in_for="ShapeNet part",
        source="SYNTHETIC: generated in bibench.data.embedded.points (seed 1), "
               f"{len(PARTSEG_CATEGORIES)} object categories ({', '.join(PARTSEG_CATEGORIES)}) "
               f"built from primitive surfaces, part labels {', '.join(PART_NAMES)}; random "
               f"rotation about z, unit-ball normalised; {n_points} points, x (N, 3, P), "
               "y (N, P)",
    )
