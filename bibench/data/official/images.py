"""CIFAR-10, CIFAR-10-C and ImageNet in their official on-disk formats.

Images come back as float32 tensors (N, 3, H, W) in [0, 1]; normalisation with the per-dataset
mean/std constants below is left to the model/training code.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from bibench.data import TaskData, register_dataset
from bibench.data.official.common import DatasetNotFoundError, require_files, resolve_dir, take

# Per-channel statistics of the training sets, for normalisation in the model/training code.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_FILES = (*CIFAR10_TRAIN_BATCHES, "test_batch", "batches.meta")

# Hendrycks & Dietterich: the 15 benchmark corruptions and the 4 extra ones of the release.
CIFAR10C_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
CIFAR10C_EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
CIFAR10C_ALL = CIFAR10C_CORRUPTIONS + CIFAR10C_EXTRA
CIFAR10C_DIR = "CIFAR-10-C"
CIFAR10C_SEVERITIES = 5

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


# ---------------------------------------------------------------------------------------------
# CIFAR-10


# What the CIFAR-10 python files hold: dicts, lists, bytes and numpy arrays. An array pickles
# as numpy's _reconstruct(ndarray, shape, dtype) plus its state; bytes pickled by Python 3
# at protocol 2 as _codecs.encode(text, 'latin1'). Nothing else may be named by a file under
# a config-given root: a pickle can otherwise call any importable function.
def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: __import__("codecs").encode,
}


class _CifarUnpickler(pickle.Unpickler):
    """Builds only what a CIFAR-10 python file holds (_CIFAR_GLOBALS)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(
                f"refers to {module}.{name}, which a CIFAR-10 python file does not hold "
                "(only dicts, lists, bytes and numpy arrays are read)")
        return _CIFAR_GLOBALS[(module, name)]()


def read_cifar_pickle(path: Path) -> dict:
    """A CIFAR-10 python file (a pickled dict, written by Python 2: bytes keys), read with an
    unpickler restricted to what such a file holds; anything else is a ValueError naming it."""
    try:
        with open(path, "rb") as f:
            data = _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a CIFAR-10 python file: {err or type(err).__name__}"
                         ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a CIFAR-10 python file: holds a "
                         f"{type(data).__name__}, not a dict")
    return data


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = read_cifar_pickle(path)
    try:
        data, labels = batch[b"data"], batch[b"labels"]
    except (KeyError, TypeError):
        raise ValueError(f"{path}: not a CIFAR-10 python batch (no b'data'/b'labels')") from None
    labels = np.asarray(labels) if isinstance(labels, list | np.ndarray) else np.array(None)
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
            or data.shape[1] != 3 * 32 * 32 or labels.dtype.kind not in "iu"
            or labels.shape != (len(data),)):
        got = (f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray)
               else type(data).__name__)
        raise ValueError(f"{path}: expected b'data' uint8 (N, 3072) and N integer b'labels', "
                         f"got {got} and {labels.dtype} {labels.shape}")
    return data, labels.astype(np.int64)


def _cifar_images(data: np.ndarray) -> Tensor:
    # each row: 1024 red, 1024 green, 1024 blue values, each plane row-major 32x32
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)


def _cifar10_dir(root: str | Path) -> Path:
    base = resolve_dir(root, CIFAR10_DIR, "batches.meta", "cifar10")
    require_files(base, CIFAR10_FILES, "cifar10")
    return base


def cifar10_class_names(root: str | Path) -> list[str]:
    path = _cifar10_dir(root) / "batches.meta"
    names = read_cifar_pickle(path).get(b"label_names")
    if not isinstance(names, list):
        raise ValueError(f"{path}: not a CIFAR-10 batches.meta (no b'label_names' list)")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def load_cifar10(root: str | Path, *, max_train: int | None = None,
                 max_test: int | None = None) -> TaskData:
    """CIFAR-10 from `root/cifar-10-batches-py` (the python release): 50,000 train, 10,000 test.

    With `max_train`, only the batches needed for the first `max_train` images are read.
    """
    base = _cifar10_dir(root)
    xs, ys, have = [], [], 0
    for name in CIFAR10_TRAIN_BATCHES:
        if max_train is not None and have >= max_train:
            break
        data, labels = _read_cifar_batch(base / name)
        xs.append(data)
        ys.append(labels)
        have += len(data)
    n_train = take(max_train, have)
    x_train = np.concatenate(xs)[:n_train] if xs else np.zeros((0, 3072), np.uint8)
    y_train = np.concatenate(ys)[:n_train] if ys else np.zeros(0, np.int64)
    x_test, y_test = _read_cifar_batch(base / "test_batch")
    n_test = take(max_test, len(x_test))
    return TaskData(
        name="cifar10", x_train=_cifar_images(x_train), y_train=torch.from_numpy(y_train),
        x_test=_cifar_images(x_test[:n_test]), y_test=torch.from_numpy(y_test[:n_test]),
        num_classes=10, metric="accuracy", embedded=False, stands_in_for="CIFAR-10",
        source=f"{base} (official CIFAR-10 python release)",
    )


# ---------------------------------------------------------------------------------------------
# CIFAR-10-C


def _cifar10c_dir(root: str | Path, corruption: str) -> Path:
    if corruption not in CIFAR10C_ALL:
        raise KeyError(f"unknown CIFAR-10-C corruption {corruption!r}; "
                       f"known: {', '.join(CIFAR10C_ALL)}")
    base = resolve_dir(root, CIFAR10C_DIR, "labels.npy", "cifar10c")
    require_files(base, [f"{corruption}.npy", "labels.npy"], "cifar10c")
    return base


def load_cifar10c(root: str | Path, corruption: str, severity: int, *,
                  max_test: int | None = None) -> tuple[Tensor, Tensor]:
    """Test images of one corruption at one severity (1..5) and their labels.

    `<corruption>.npy` is uint8 (5 * 10000, 32, 32, 3): severities 1..5 stacked in order;
    `labels.npy` holds the matching labels (the CIFAR-10 test labels repeated 5 times).
    Only the requested severity's slice is read (memory-mapped). Returns x (N, 3, 32, 32)
    float32 in [0, 1] and y (N,) int64.
    """
    if not 1 <= int(severity) <= CIFAR10C_SEVERITIES:
        raise ValueError(f"CIFAR-10-C severity must be in 1..5, got {severity}")
    base = _cifar10c_dir(root, corruption)
    images = np.load(base / f"{corruption}.npy", mmap_mode="r")
    labels = np.load(base / "labels.npy", mmap_mode="r")
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or len(images) % CIFAR10C_SEVERITIES:
        raise ValueError(f"{base / (corruption + '.npy')}: expected uint8 (5*N, 32, 32, 3), "
                         f"got {images.shape}")
    if len(labels) != len(images):
        raise ValueError(f"{base / 'labels.npy'}: {len(labels)} labels for {len(images)} images")
    per = len(images) // CIFAR10C_SEVERITIES
    start = (int(severity) - 1) * per
    stop = start + take(max_test, per)
    x = np.ascontiguousarray(images[start:stop]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    y = np.asarray(labels[start:stop], dtype=np.int64)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)


def load_cifar10c_task(root: str | Path, *, corruption: str = "gaussian_noise",
                       severity: int = 1, cifar10_root: str | Path | None = None,
                       max_train: int | None = None, max_test: int | None = None) -> TaskData:
    """CIFAR-10-C as a task: test split = one corruption/severity; train split = clean CIFAR-10
    from `cifar10_root` when given, else empty (the robustness track trains on CIFAR-10)."""
    _cifar10c_dir(root, corruption)  # fail early, before reading CIFAR-10
    if cifar10_root is not None:
        clean = load_cifar10(cifar10_root, max_train=max_train, max_test=0)
        x_train, y_train = clean.x_train, clean.y_train
    else:
        x_train, y_train = torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.int64)
    x_test, y_test = load_cifar10c(root, corruption, severity, max_test=max_test)
    return TaskData(
        name=f"cifar10c/{corruption}/{severity}", x_train=x_train, y_train=y_train,
        x_test=x_test, y_test=y_test, num_classes=10, metric="accuracy", embedded=False,
        stands_in_for="CIFAR-10-C", source=f"{Path(root)} (official CIFAR-10-C release, "
        f"{corruption} severity {severity})",
    )


# ---------------------------------------------------------------------------------------------
# ImageNet (ILSVRC-2012), folder layout train/<wnid>/*.JPEG and val/<wnid>/*.JPEG


def resize_center_crop(image, resize: int | None = 256, crop: int | None = 224) -> Tensor:
    """A PIL image -> float32 (3, crop, crop) in [0, 1]: shorter side to `resize` (bilinear),
    then the central `crop` x `crop` window (torchvision's Resize + CenterCrop arithmetic)."""
    from PIL import Image

    image = image.convert("RGB")
    if resize is not None:
        w, h = image.size
        if w <= h:
            size = (resize, int(resize * h / w))
        else:
            size = (int(resize * w / h), resize)
        if size != (w, h):
            image = image.resize(size, Image.Resampling.BILINEAR)
    if crop is not None:
        w, h = image.size
        if w < crop or h < crop:
            raise ValueError(f"image {w}x{h} smaller than the crop {crop}; set resize >= crop")
        top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
        image = image.crop((left, top, left + crop, top + crop))
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.transpose(2, 0, 1).astype(np.float32) / 255.0)


class ImageFolderDataset(Dataset):
    """A lazy `<root>/<class>/<image>` dataset: files are decoded (Pillow) only when indexed.

    Classes are the sorted sub-folder names (ImageNet: WordNet ids), unless `classes` is given
    (to share the train split's class indices with the val split). Items are (x, y) with x
    float32 (3, crop, crop) in [0, 1] and y an int; `transform`, when given, replaces the
    default resize + center crop and receives the PIL image.
    """

    def __init__(self, root: str | Path, *, resize: int | None = 256, crop: int | None = 224,
                 classes: Sequence[str] | None = None,
                 transform: Callable | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"image folder {self.root} does not exist")
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.classes = list(classes) if classes is not None else found
        unknown = sorted(set(found) - set(self.classes))
        if unknown:
            raise ValueError(f"{self.root}: class folders not in the class list: {unknown[:5]}")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[Path, int]] = []
        for cls in found:
            files = sorted(p for p in (self.root / cls).iterdir()
                           if p.suffix.lower() in IMAGE_EXTENSIONS)
            self.samples += [(p, self.class_to_idx[cls]) for p in files]
        self.targets = [t for _, t in self.samples]
        self.resize, self.crop, self.transform = resize, crop, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from PIL import Image

        path, target = self.samples[index]
        with Image.open(path) as image:
            if self.transform is not None:
                return self.transform(image), target
            return resize_center_crop(image, self.resize, self.crop), target


def balanced_order(targets: Sequence[int], seed: int = 0) -> list[int]:
    """Indices ordered so that every prefix is class-balanced: each class shuffled (seeded),
    then classes interleaved round-robin."""
    gen = torch.Generator().manual_seed(seed)
    per_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        per_class.setdefault(int(t), []).append(i)
    queues = []
    for cls in sorted(per_class):
        idx = per_class[cls]
        perm = torch.randperm(len(idx), generator=gen).tolist()
        queues.append([idx[j] for j in perm])
    order, depth = [], 0
    while len(order) < len(targets):
        order += [q[depth] for q in queues if depth < len(q)]
        depth += 1
    return order


def _decode(ds: ImageFolderDataset, indices: Sequence[int], shape: tuple[int, ...]
            ) -> tuple[Tensor, Tensor]:
    x = torch.empty((len(indices), *shape), dtype=torch.float32)
    y = torch.empty(len(indices), dtype=torch.int64)
    for k, i in enumerate(indices):
        x[k], y[k] = ds[i]
    return x, y


def imagenet_datasets(root: str | Path, *, resize: int | None = 256, crop: int | None = 224
                      ) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """Lazy (train, val) ImageFolderDatasets over `root/train` and `root/val`."""
    base = resolve_dir(root, "imagenet", ["train", "val"], "imagenet")
    train = ImageFolderDataset(base / "train", resize=resize, crop=crop)
    val = ImageFolderDataset(base / "val", resize=resize, crop=crop, classes=train.classes)
    if len(train) == 0 or len(val) == 0:
        raise DatasetNotFoundError(f"imagenet: no images found under {base}/train or "
                                   f"{base}/val (expected <split>/<wnid>/*.JPEG)")
    return train, val


def load_imagenet(root: str | Path, *, max_train: int | None = None,
                  max_test: int | None = None, resize: int = 256, crop: int = 224,
                  seed: int = 0, max_bytes: int = 8 << 30) -> TaskData:
    """ImageNet decoded into tensors, only the images asked for.

    Subsets are class-balanced (`balanced_order`, seeded). Both splits use the deterministic
    resize + center crop (augmentation is a training concern: use `imagenet_datasets` for a lazy
    pipeline). Refuses to decode more than `max_bytes` of tensors (the full train split is
    ~770 GB as float32): pass `max_train`/`max_test` or use the lazy datasets.
    """
    train, val = imagenet_datasets(root, resize=resize, crop=crop)
    n_train, n_test = take(max_train, len(train)), take(max_test, len(val))
    shape = (3, crop, crop)
    need = (n_train + n_test) * int(np.prod(shape)) * 4
    if need > max_bytes:
        raise MemoryError(
            f"imagenet: {n_train} train + {n_test} val images need {need / 2**30:.1f} GiB as "
            f"float32 tensors (limit {max_bytes / 2**30:.1f} GiB): set max_train/max_test, "
            "raise max_bytes, or use bibench.data.official.imagenet_datasets (lazy)")
    x_train, y_train = _decode(train, balanced_order(train.targets, seed)[:n_train], shape)
    x_test, y_test = _decode(val, balanced_order(val.targets, seed)[:n_test], shape)
    return TaskData(
        name="imagenet", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        num_classes=len(train.classes), metric="accuracy", embedded=False,
        stands_in_for="ImageNet", source=f"{train.root.parent} (ILSVRC-2012 image folders)",
    )


# The registry (bibench.data): names and keywords literal, the workflow reads them unimported.
register_dataset("cifar10", "CIFAR-10, the python release (cifar-10-batches-py)", official=True,
                 image=True)(load_cifar10)
register_dataset("cifar10c", "CIFAR-10-C, one corruption x severity as a test set",
                 official=True, task=False)(load_cifar10c_task)
register_dataset("imagenet", "ImageNet ILSVRC-2012, train/<wnid>/ and val/<wnid>/ folders",
                 official=True, image=True)(load_imagenet)
