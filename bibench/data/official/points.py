"""ModelNet40 and ShapeNet part segmentation in PointNet's HDF5 releases.

Point clouds come back as float32 (N, 3, P) (channels first, as PointNet's Conv1d expects);
the first `num_points` points of each 2048-point cloud are kept (as PointNet does).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bibench.data import TaskData, register_dataset
from bibench.data.official.common import require_files, resolve_dir

MODELNET40_DIR = "modelnet40_ply_hdf5_2048"
SHAPENET_PART_DIR = "hdf5_data"

# all_object_categories.txt order (category index = `label` in the h5 files) and the global
# part ids (`pid`, 0..49) of each category, as in PointNet/PointNet++/DGCNN evaluation code.
SHAPENET_PART_CATEGORIES = (
    "Airplane", "Bag", "Cap", "Car", "Chair", "Earphone", "Guitar", "Knife", "Lamp", "Laptop",
    "Motorbike", "Mug", "Pistol", "Rocket", "Skateboard", "Table",
)
_PARTS_PER_CATEGORY = (4, 2, 2, 4, 4, 3, 3, 2, 4, 2, 6, 2, 3, 3, 3, 3)
SHAPENET_PART_SEG_CLASSES: dict[str, tuple[int, ...]] = {}
_first = 0
for _cat, _n in zip(SHAPENET_PART_CATEGORIES, _PARTS_PER_CATEGORY, strict=True):
    SHAPENET_PART_SEG_CLASSES[_cat] = tuple(range(_first, _first + _n))
    _first += _n
SHAPENET_NUM_PARTS = _first  # 50
PART_TO_CATEGORY = torch.tensor(
    [c for c, n in enumerate(_PARTS_PER_CATEGORY) for _ in range(n)], dtype=torch.int64)


def _h5py():
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is a dependency of the package
        raise ImportError("reading ModelNet40/ShapeNet HDF5 files needs h5py: "
                          "pip install h5py") from exc
    return h5py


def _file_list(base: Path, list_name: str, name: str) -> list[Path]:
    """The h5 files named in a list file (entries may carry PointNet's `data/...` prefix)."""
    (list_path,) = require_files(base, [list_name], name)
    entries = [line.strip() for line in list_path.read_text().splitlines() if line.strip()]
    return require_files(base, [Path(e).name for e in entries], name)


def _read_h5(files: list[Path], keys: tuple[str, ...], limit: int | None) -> list[np.ndarray]:
    h5py = _h5py()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    have = 0
    for path in files:
        if limit is not None and have >= limit and parts[keys[0]]:
            break  # (one file is always opened, so that empty results keep their shapes)
        with h5py.File(path, "r") as f:
            missing = [k for k in keys if k not in f]
            if missing:
                raise ValueError(f"{path}: missing HDF5 datasets {missing}")
            n = len(f[keys[0]]) if limit is None else min(len(f[keys[0]]), limit - have)
            for k in keys:
                parts[k].append(np.asarray(f[k][:n]))
            have += n
    return [np.concatenate(parts[k]) if parts[k] else np.zeros((0,)) for k in keys]


def _points(data: np.ndarray, num_points: int, path_hint: Path) -> Tensor:
    if data.ndim != 3 or data.shape[2] != 3:
        if data.size == 0:
            return torch.zeros(0, 3, num_points)
        raise ValueError(f"{path_hint}: expected point data (N, P, 3), got {data.shape}")
    if not 1 <= num_points <= data.shape[1]:
        raise ValueError(f"num_points must be in 1..{data.shape[1]}, got {num_points}")
    return torch.from_numpy(np.ascontiguousarray(
        data[:, :num_points, :].astype(np.float32).transpose(0, 2, 1)))


def load_modelnet40(root: str | Path, *, num_points: int = 1024, max_train: int | None = None,
                    max_test: int | None = None) -> TaskData:
    """ModelNet40 from `root/modelnet40_ply_hdf5_2048` (9,840 train / 2,468 test clouds).

    h5 keys `data` (N, 2048, 3) float32 and `label` (N, 1) uint8; x (N, 3, num_points),
    y (N,) int64 in 0..39 (class names in shape_names.txt).
    """
    base = resolve_dir(root, MODELNET40_DIR, "shape_names.txt", "modelnet40")
    require_files(base, ["train_files.txt", "test_files.txt"], "modelnet40")
    train_files = _file_list(base, "train_files.txt", "modelnet40")
    test_files = _file_list(base, "test_files.txt", "modelnet40")
    names = [s for s in (base / "shape_names.txt").read_text().splitlines() if s.strip()]
    x_tr, y_tr = _read_h5(train_files, ("data", "label"), max_train)
    x_te, y_te = _read_h5(test_files, ("data", "label"), max_test)
    return TaskData(
        name="modelnet40", x_train=_points(x_tr, num_points, base),
        y_train=torch.from_numpy(y_tr.reshape(-1).astype(np.int64)),
        x_test=_points(x_te, num_points, base),
        y_test=torch.from_numpy(y_te.reshape(-1).astype(np.int64)),
        num_classes=len(names), metric="accuracy", embedded=False, stands_in_for="ModelNet40",
        source=f"{base} (PointNet modelnet40_ply_hdf5_2048 release)",
    )


def shapenet_part_categories(root: str | Path) -> tuple[Tensor, Tensor]:
    """Object category (0..15) of every train and test shape, in load order (all of them)."""
    base = resolve_dir(root, SHAPENET_PART_DIR, "all_object_categories.txt", "shapenet_part")
    train = _file_list(base, "train_hdf5_file_list.txt", "shapenet_part")
    train += _file_list(base, "val_hdf5_file_list.txt", "shapenet_part")
    test = _file_list(base, "test_hdf5_file_list.txt", "shapenet_part")
    (c_tr,), (c_te,) = _read_h5(train, ("label",), None), _read_h5(test, ("label",), None)
    return (torch.from_numpy(c_tr.reshape(-1).astype(np.int64)),
            torch.from_numpy(c_te.reshape(-1).astype(np.int64)))


def load_shapenet_part(root: str | Path, *, num_points: int = 2048, include_val: bool = True,
                       category_onehot: bool = False, max_train: int | None = None,
                       max_test: int | None = None) -> TaskData:
    """ShapeNet part segmentation from `root/hdf5_data` (PointNet's shapenet_part_seg release).

    h5 keys `data` (N, 2048, 3), `label` (N, 1) category, `pid` (N, 2048) part id (0..49).
    Train = train (+ val lists when `include_val`), test = test lists. x (N, 3, P) — or
    (N, 3 + 16, P) with the category one-hot repeated over points when `category_onehot`
    (PointNet's part-seg input); y (N, P) int64 part ids. The category of a shape is also
    `PART_TO_CATEGORY[y[i, 0]]` (part ids are unique to a category), which the instance mIoU
    (`part_miou`) uses to restrict each shape to its category's parts.
    """
    name = "shapenet_part"
    base = resolve_dir(root, SHAPENET_PART_DIR, "all_object_categories.txt", name)
    require_files(base, ["train_hdf5_file_list.txt", "val_hdf5_file_list.txt",
                         "test_hdf5_file_list.txt"], name)
    train_files = _file_list(base, "train_hdf5_file_list.txt", name)
    if include_val:
        train_files += _file_list(base, "val_hdf5_file_list.txt", name)
    test_files = _file_list(base, "test_hdf5_file_list.txt", name)
    keys = ("data", "label", "pid")
    x_tr, c_tr, p_tr = _read_h5(train_files, keys, max_train)
    x_te, c_te, p_te = _read_h5(test_files, keys, max_test)

    def inputs(x: np.ndarray, c: np.ndarray) -> Tensor:
        pts = _points(x, num_points, base)
        if not category_onehot:
            return pts
        onehot = torch.nn.functional.one_hot(
            torch.from_numpy(c.reshape(-1).astype(np.int64)), len(SHAPENET_PART_CATEGORIES))
        return torch.cat([pts, onehot.float()[:, :, None].expand(-1, -1, num_points)], dim=1)

    def parts(p: np.ndarray) -> Tensor:
        return torch.from_numpy(p.reshape(len(p), -1)[:, :num_points].astype(np.int64))

    return TaskData(
        name="shapenet_part", x_train=inputs(x_tr, c_tr), y_train=parts(p_tr),
        x_test=inputs(x_te, c_te), y_test=parts(p_te), num_classes=SHAPENET_NUM_PARTS,
        metric="miou_shapenet", embedded=False, stands_in_for="ShapeNet",
        source=f"{base} (PointNet shapenet_part_seg_hdf5_data release)",
        task_type="segmentation",
    )


def part_miou(pred: Tensor, y: Tensor) -> tuple[float, float]:
    """(instance mIoU, class mIoU) of part predictions, PointNet convention.

    `pred` is (N, P) part ids or (N, 50, P) logits; logits are restricted to the parts of each
    shape's category (taken from its ground truth) before the argmax. Per shape, the IoU of
    every part of its category is averaged, a part absent from both prediction and ground
    truth counting as 1. Instance mIoU averages shapes; class mIoU averages categories.
    """
    y = y.long()
    category = PART_TO_CATEGORY[y[:, 0]]
    if pred.dim() == 3:
        mask = PART_TO_CATEGORY[None, :] == category[:, None]  # (N, 50)
        pred = pred.masked_fill(~mask[:, :, None], float("-inf")).argmax(dim=1)
    ious = []
    for i in range(len(y)):
        cat = SHAPENET_PART_CATEGORIES[int(category[i])]
        part_ious = []
        for part in SHAPENET_PART_SEG_CLASSES[cat]:
            p, t = pred[i] == part, y[i] == part
            union = int((p | t).sum())
            part_ious.append(1.0 if union == 0 else int((p & t).sum()) / union)
        ious.append(sum(part_ious) / len(part_ious))
    if not ious:
        return float("nan"), float("nan")
    per_cat: dict[int, list[float]] = {}
    for c, v in zip(category.tolist(), ious, strict=True):
        per_cat.setdefault(c, []).append(v)
    class_miou = sum(sum(v) / len(v) for v in per_cat.values()) / len(per_cat)
    return sum(ious) / len(ious), class_miou


# The registry (bibench.data): names and keywords literal, the workflow reads them unimported.
register_dataset("modelnet40", "ModelNet40, the 2,048-point HDF5 release",
                 official=True)(load_modelnet40)
register_dataset("shapenet_part", "ShapeNet-Part, the HDF5 part-segmentation release",
                 official=True)(load_shapenet_part)
