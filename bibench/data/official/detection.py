"""PASCAL VOC (2007 + 2012) and COCO (2014 / 2017) detection data in their released formats.

VOC: `VOCdevkit/VOC<year>/{Annotations/<id>.xml, JPEGImages/<id>.jpg, ImageSets/Main/<split>.txt}`;
train on VOC2007 trainval + VOC2012 trainval, test on VOC2007 test (the paper's protocol).
COCO: `annotations/instances_<split><year>.json` and the image folder `<split><year>/`.

Images are decoded, resized to `image_size` x `image_size` (as SSD300 trains; boxes scaled
with them) and returned as float32 (N, 3, S, S) in [0, 1]. Targets are the detectors' padded
tensor (N, G, 8): rows (label, x1, y1, x2, y2, ignore, pixel x, pixel y) with label -1 for
padding; `ignore` marks VOC 'difficult' and COCO crowd objects, which training skips and
evaluation ignores; the pixel columns are one original pixel in the resized image, with which
the VOC07 metric applies the devkit's "+1" widths in original pixels.
`DetectionRecords` is the lazy form (decode on access) for sets too large for memory.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from bibench.data import TaskData, register_dataset
from bibench.data.official.common import DatasetNotFoundError, how_to_get, require_files, take

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")
VOC_TRAIN = (("2007", "trainval"), ("2012", "trainval"))
VOC_TEST = (("2007", "test"),)


@dataclass(frozen=True)
class DetectionRecord:
    image: Path
    boxes: np.ndarray  # (G, 4) x1, y1, x2, y2 in the image's pixels
    labels: np.ndarray  # (G,) 0-based class indices
    ignore: np.ndarray  # (G,) bool: VOC 'difficult' / COCO 'iscrowd'
    image_id: int | str | None = None  # the release's id: COCO's image id, VOC's file stem


def read_voc_xml(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (as written: 1-based pixel corners), class indices and 'difficult' flags."""
    boxes, labels, difficult = [], [], []
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path}: not a VOC annotation: malformed XML ({err})") from None
    for obj in root.iter("object"):
        name = obj.findtext("name", "").strip()
        if name not in VOC_CLASSES:
            raise ValueError(f"{path}: unknown VOC class {name!r}")
        box = obj.find("bndbox")
        if box is None:
            raise ValueError(f"{path}: object {name!r} has no <bndbox>")
        boxes.append([_voc_coordinate(box, k, name, path) for k in ("xmin", "ymin", "xmax",
                                                                     "ymax")])
        labels.append(VOC_CLASSES.index(name))
        difficult.append(obj.findtext("difficult", "0").strip() == "1")
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64),
            np.asarray(difficult, bool))


def _voc_coordinate(box: ET.Element, key: str, name: str, path: Path) -> float:
    text = box.findtext(key)
    if text is None:
        raise ValueError(f"{path}: object {name!r}: <bndbox> has no <{key}>")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{path}: object {name!r}: <{key}> is {text.strip()!r}, not a "
                         "number")
    return value


def voc_dir(root: Path, year: str, split: str) -> Path:
    """VOC<year> holding ImageSets/Main/<split>.txt: merged VOCdevkit, or fetch()'s layout."""
    candidates = [root / "VOCdevkit" / f"VOC{year}", root / f"VOC{year}",
                  root / f"voc{year}_{split}" / "VOCdevkit" / f"VOC{year}"]
    for base in candidates:
        if (base / "ImageSets" / "Main" / f"{split}.txt").exists():
            return base
    raise DatasetNotFoundError(
        f"voc: VOC{year} {split} not found: expected {candidates[0]}/ImageSets/Main/{split}.txt "
        f"with Annotations/ and JPEGImages/. How to get it: {how_to_get('voc07')}")


def voc_records(root: str | Path, sets: tuple[tuple[str, str], ...]) -> list[DetectionRecord]:
    """Records of the listed (year, split) sets; every file is checked before any is parsed."""
    root = Path(root).expanduser()
    todo = []
    for year, split in sets:
        base = voc_dir(root, year, split)
        ids = (base / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        files = [f"Annotations/{i}.xml" for i in ids] + [f"JPEGImages/{i}.jpg" for i in ids]
        require_files(base, files, "voc07")
        todo += [(base, i) for i in ids]
    records = []
    for base, i in todo:
        boxes, labels, difficult = read_voc_xml(base / "Annotations" / f"{i}.xml")
        records.append(DetectionRecord(base / "JPEGImages" / f"{i}.jpg", boxes, labels,
                                       difficult, image_id=i))
    return records


def coco_paths(root: str | Path, split: str, year: str) -> tuple[Path, Path]:
    """The instances JSON and image folder of COCO <split><year>, under root or root/coco."""
    root = Path(root).expanduser()
    rel = (Path("annotations") / f"instances_{split}{year}.json", Path(f"{split}{year}"))
    for base in (root / "coco", root):
        if all((base / r).exists() for r in rel):
            return base / rel[0], base / rel[1]
    raise DatasetNotFoundError(
        f"coco: COCO {split}{year} not found: expected {root / 'coco' / rel[0]} and "
        f"{root / 'coco' / rel[1]}/. How to get it: {how_to_get(f'coco{year[2:]}')}")


# The fields the loader reads, per list of a COCO instances file.
COCO_FIELDS = {"categories": ("id",), "images": ("id", "file_name"),
               "annotations": ("image_id", "category_id", "bbox")}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _coco_item(key: str, i: int, item: dict) -> str:
    return f"{key}[{i}]" + (f" (id {item['id']!r})" if "id" in item else "")


def read_coco_json(path: Path) -> tuple[list[dict], list[dict], list[dict]]:
    """Categories, images and annotations of a COCO instances file, checked: a malformed file
    is a ValueError naming it and what is wrong (the item's index and id)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a COCO instances file: malformed JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a COCO instances file: holds a JSON "
                         f"{type(data).__name__}, not an object")
    for key, fields in COCO_FIELDS.items():
        if not isinstance(data.get(key), list):
            raise ValueError(f"{path}: not a COCO instances file: no {key!r} list")
        for i, item in enumerate(data[key]):
            if not isinstance(item, dict):
                raise ValueError(f"{path}: {key}[{i}] is not an object")
            missing = [f for f in fields if f not in item]
            if missing:
                raise ValueError(f"{path}: {_coco_item(key, i, item)} has no "
                                 + ", ".join(repr(f) for f in missing))
    for key in ("categories", "images"):
        for i, item in enumerate(data[key]):
            if not isinstance(item["id"], int) or isinstance(item["id"], bool):
                raise ValueError(f"{path}: {key}[{i}]: id {item['id']!r} is not an integer")
            if key == "images" and not isinstance(item["file_name"], str):
                raise ValueError(f"{path}: {_coco_item(key, i, item)}: file_name "
                                 f"{item['file_name']!r} is not a string")
    categories = {c["id"] for c in data["categories"]}
    image_ids = {im["id"] for im in data["images"]}
    for i, ann in enumerate(data["annotations"]):
        where = f"{path}: {_coco_item('annotations', i, ann)}"
        if ann["category_id"] not in categories:
            raise ValueError(f"{where}: unknown category_id {ann['category_id']!r} (not in "
                             "'categories')")
        if ann["image_id"] not in image_ids:
            raise ValueError(f"{where}: unknown image_id {ann['image_id']!r} (not in 'images')")
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
            raise ValueError(f"{where}: bbox {bbox!r} is not 4 numbers [x, y, width, height]")
    return data["categories"], data["images"], data["annotations"]


def coco_records(root: str | Path, split: str, year: str,
                 keep_empty: bool) -> tuple[list[DetectionRecord], list[str]]:
    """Records of COCO <split><year> (boxes xywh -> xyxy; category ids -> 0-based by id order)
    and the class names. Images without a non-crowd object are dropped unless `keep_empty`."""
    ann_file, image_dir = coco_paths(root, split, year)
    cats, images, annotations = read_coco_json(ann_file)
    cats = sorted(cats, key=lambda c: c["id"])
    index = {c["id"]: k for k, c in enumerate(cats)}
    per_image: dict[int, list[dict]] = {}
    for ann in annotations:
        per_image.setdefault(ann["image_id"], []).append(ann)
    images = sorted(images, key=lambda im: im["id"])
    require_files(image_dir, [im["file_name"] for im in images], f"coco{year[2:]}")
    records = []
    for im in images:
        anns = [a for a in per_image.get(im["id"], []) if a["bbox"][2] > 0 and a["bbox"][3] > 0]
        if not keep_empty and not any(not a.get("iscrowd", 0) for a in anns):
            continue
        xywh = np.asarray([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        records.append(DetectionRecord(
            image_dir / im["file_name"], boxes,
            np.asarray([index[a["category_id"]] for a in anns], np.int64),
            np.asarray([bool(a.get("iscrowd", 0)) for a in anns], bool), image_id=im["id"]))
    return records, cats


def decode_record(record: DetectionRecord, size: int) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """(3, size, size) image in [0, 1], its boxes scaled to the resized image, and the size
    (x, y) of one original pixel in the resized image."""
    from PIL import Image

    with Image.open(record.image) as img:
        width, height = img.size
        img = img.convert("RGB").resize((size, size), Image.BILINEAR)
        pixels = np.asarray(img, dtype=np.float32) / 255.0
    pixel = np.array([size / width, size / height], np.float32)
    image = torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
    return image, record.boxes * np.tile(pixel, 2), pixel


TARGET_COLUMNS = 8  # label, x1, y1, x2, y2, ignore, one original pixel (x, y)


def target_rows(boxes: np.ndarray, labels: np.ndarray, ignore: np.ndarray,
                pixel: np.ndarray) -> Tensor:
    """Rows (label, x1, y1, x2, y2, ignore, pixel x, pixel y) of one image's objects."""
    return torch.from_numpy(np.concatenate(
        [labels[:, None].astype(np.float32), boxes.astype(np.float32),
         ignore[:, None].astype(np.float32),
         np.broadcast_to(pixel.astype(np.float32), (len(labels), 2))],
        axis=1).reshape(-1, TARGET_COLUMNS))


class DetectionRecords(Dataset):
    """Lazy detection set: (image (3, S, S), target rows (G, 8)) decoded on access."""

    def __init__(self, records: list[DetectionRecord], image_size: int) -> None:
        self.records, self.image_size = records, image_size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        r = self.records[i]
        image, boxes, pixel = decode_record(r, self.image_size)
        return image, target_rows(boxes, r.labels, r.ignore, pixel)


def decode_all(records: list[DetectionRecord], image_size: int) -> tuple[Tensor, Tensor]:
    """Images (N, 3, S, S) and padded targets (N, G, 8) of `records`; padding rows carry the
    image's pixel size too, so an image without objects still has it."""
    from bibench.models.detection.common import PADDING_LABEL

    items = []
    for r in records:
        image, boxes, pixel = decode_record(r, image_size)
        items.append((image, target_rows(boxes, r.labels, r.ignore, pixel), pixel))
    width = max([len(t) for _, t, _ in items] + [1])
    targets = torch.full((len(items), width, TARGET_COLUMNS), float(PADDING_LABEL))
    for i, (_, t, pixel) in enumerate(items):
        targets[i, : len(t)] = t
        targets[i, :, 6:8] = torch.from_numpy(pixel)
    images = torch.stack([im for im, _, _ in items]) if items else torch.zeros(0, 3, image_size,
                                                                               image_size)
    return images, targets


def _task(name: str, train: list, test: list, num_classes: int, metric: str, size: int,
          stands_in_for: str, source: str, class_ids: tuple[int, ...] | None = None
          ) -> TaskData:
    x_train, y_train = decode_all(train, size)
    x_test, y_test = decode_all(test, size)
    return TaskData(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                    num_classes=num_classes, metric=metric, embedded=False,
                    stands_in_for=stands_in_for, source=source, task_type="detection",
                    test_ids=tuple(r.image_id for r in test), class_ids=class_ids)


def load_voc(root: str | Path, *, max_train: int | None = None, max_test: int | None = None,
             image_size: int = 300) -> TaskData:
    """VOC07+12 trainval for training, VOC07 test for testing, metric VOC07 mAP."""
    train, test = voc_records(root, VOC_TRAIN), voc_records(root, VOC_TEST)
    train = [r for r in train if (~r.ignore).any()]  # as mmdetection: images with objects
    train, test = train[: take(max_train, len(train))], test[: take(max_test, len(test))]
    return _task("voc07", train, test, len(VOC_CLASSES), "voc07_map", image_size, "VOC07",
                 f"{Path(root)} (VOCdevkit 2007 + 2012)")


def load_coco(root: str | Path, *, max_train: int | None = None, max_test: int | None = None,
              image_size: int = 300, year: str = "2017") -> TaskData:
    """COCO train<year> for training, val<year> for testing, metric COCO mAP@[.5:.95]."""
    if year not in ("2014", "2017"):
        raise ValueError(f"COCO year must be '2014' or '2017', got {year!r}")
    train, cats = coco_records(root, "train", year, keep_empty=False)
    test, _ = coco_records(root, "val", year, keep_empty=True)
    train, test = train[: take(max_train, len(train))], test[: take(max_test, len(test))]
    return _task(f"coco{year[2:]}", train, test, len(cats), "coco_map", image_size,
                 f"COCO{year[2:]}", f"{Path(root)} (COCO {year} instances)",
                 class_ids=tuple(c["id"] for c in cats))


# The registry (bibench.data): names and keywords literal, the workflow reads them unimported.
register_dataset("voc07", "PASCAL VOC: train VOC07+12 trainval, test VOC07 test",
                 official=True, image=True)(load_voc)
register_dataset("coco17", "COCO 2017 (train2017 / val2017)", official=True,
                 image=True)(load_coco)
register_dataset("coco14", "COCO 2014 (train2014 / val2014)", official=True,
                 image=True)(partial(load_coco, year="2014"))
