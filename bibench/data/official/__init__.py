"""The paper's datasets in their official on-disk formats, for users who have them.

`load_official(name, root, **options)` returns a `TaskData` from the release files under
`root` (see docs/datasets.md for every layout). A missing dataset raises
`DatasetNotFoundError` saying where it is expected and how to get it, before any file is
parsed. `max_train` / `max_test` limit what is read and decoded (class-balanced where the
release order is not already shuffled).

Loaders (all also importable from here):
- cifar10: `load_cifar10(root)`; cifar10c: `load_cifar10c(root, corruption, severity)` -> (x, y)
  and `load_cifar10c_task` (TaskData); imagenet: `load_imagenet`, lazy `ImageFolderDataset`;
- modelnet40: `load_modelnet40`; shapenet_part: `load_shapenet_part` (+ `part_miou`);
- glue_<task>: `load_glue(root, task)`, tokenized with the `tokenizers` package's BERT WordPiece;
- speech_commands: `load_speech_commands` (features from `bibench.data.features`);
- voc07 (train VOC07+12 trainval, test VOC07 test): `load_voc`; coco17 / coco14: `load_coco`
  (`DetectionRecords` is the lazy form).
"""

from __future__ import annotations

from pathlib import Path

from bibench.data import TaskData, registered_datasets
from bibench.data.official.common import DatasetNotFoundError
from bibench.data.official.detection import VOC_CLASSES, DetectionRecords, load_coco, load_voc
from bibench.data.official.images import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR10C_ALL,
    CIFAR10C_CORRUPTIONS,
    CIFAR10C_EXTRA,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFolderDataset,
    balanced_order,
    cifar10_class_names,
    imagenet_datasets,
    load_cifar10,
    load_cifar10c,
    load_cifar10c_task,
    load_imagenet,
    resize_center_crop,
)
from bibench.data.official.points import (
    PART_TO_CATEGORY,
    SHAPENET_NUM_PARTS,
    SHAPENET_PART_CATEGORIES,
    SHAPENET_PART_SEG_CLASSES,
    load_modelnet40,
    load_shapenet_part,
    part_miou,
    shapenet_part_categories,
)
from bibench.data.official.speech import KWS_LABELS, KWS_WORDS, load_speech_commands, read_wav
from bibench.data.official.text import GLUE_TASKS, bert_tokenizer, encode, load_glue

__all__ = [
    "CIFAR10C_ALL", "CIFAR10C_CORRUPTIONS", "CIFAR10C_EXTRA", "CIFAR10_CLASSES", "CIFAR10_MEAN",
    "CIFAR10_STD", "DatasetNotFoundError", "DetectionRecords", "VOC_CLASSES", "load_coco",
    "load_voc", "GLUE_TASKS", "IMAGENET_MEAN", "IMAGENET_STD", "ImageFolderDataset", "KWS_LABELS",
    "KWS_WORDS", "NORMALIZATION", "PART_TO_CATEGORY", "SHAPENET_NUM_PARTS",
    "SHAPENET_PART_CATEGORIES", "SHAPENET_PART_SEG_CLASSES", "balanced_order", "bert_tokenizer",
    "cifar10_class_names", "encode", "imagenet_datasets", "load_cifar10", "load_cifar10c",
    "load_cifar10c_task", "load_glue", "load_imagenet", "load_modelnet40", "load_official",
    "load_shapenet_part", "load_speech_commands", "part_miou", "read_wav", "resize_center_crop",
    "shapenet_part_categories",
]

# Per-dataset normalisation constants (mean, std per channel) for the model/training code.
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar10c": (CIFAR10_MEAN, CIFAR10_STD),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}


def load_official(name: str, root: str | Path, **options) -> TaskData:
    """Load official dataset `name` from the data root `root`.

    `root` is the folder holding the dataset's release folder (e.g. `<root>/cifar-10-batches-py`)
    or that folder itself. Options are passed to the loader (all take max_train / max_test).
    """
    official = {n: d for n, d in registered_datasets().items() if d.official}
    if name not in official:
        raise KeyError(f"unknown official dataset {name!r}; "
                       f"known: {', '.join(sorted(official))}")
    return official[name].loader(Path(root).expanduser(), **options)
