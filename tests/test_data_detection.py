"""Detection data: VOC and COCO loaders on fixture files written in the released formats, the
missing-dataset messages, the download entries, and the embedded MNIST-scenes task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bibench.data.downloads import DOWNLOADS, GROUPS
from bibench.data.official import DatasetNotFoundError, load_official
from bibench.data.official.detection import VOC_CLASSES, load_coco, load_voc
from bibench.models.detection.ops import box_iou


def jpeg(path: Path, width: int, height: int, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (value, value, value)).save(path)


def voc_xml(path: Path, objects: list[tuple[str, tuple[int, ...], int]]) -> None:
    body = "".join(
        f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>"
        f"<difficult>{hard}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b, hard in objects)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><folder>VOC2007</folder><filename>x.jpg</filename><size>"
                    f"<width>200</width><height>100</height><depth>3</depth></size>{body}"
                    "</annotation>")


def voc_set(base: Path, split: str, images: dict[str, list]) -> None:
    main = base / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in images))
    for i, objects in images.items():
        voc_xml(base / "Annotations" / f"{i}.xml", objects)
        jpeg(base / "JPEGImages" / f"{i}.jpg", 200, 100)


@pytest.fixture
def voc_root(tmp_path):
    devkit = tmp_path / "VOCdevkit"
    voc_set(devkit / "VOC2007", "trainval", {
        "000005": [("chair", (20, 10, 100, 60), 0), ("dog", (120, 40, 180, 90), 1)],
        "000007": [("car", (1, 1, 200, 100), 1)],  # only a difficult object: not trained on
    })
    voc_set(devkit / "VOC2007", "test", {"000001": [("person", (40, 20, 80, 100), 0)]})
    voc_set(devkit / "VOC2012", "trainval", {"2008_000002": [("tvmonitor", (10, 10, 50, 50), 0)]})
    return tmp_path


def test_voc_loader_reads_07_12_trainval_and_07_test(voc_root):
    data = load_official("voc07", voc_root, image_size=50)
    assert data.task_type == "detection" and data.metric == "voc07_map"
    assert data.num_classes == 20 and not data.embedded
    assert data.x_train.shape == (2, 3, 50, 50) and data.x_test.shape == (1, 3, 50, 50)
    assert data.x_train.max().item() == pytest.approx(128 / 255, abs=1 / 255)
    first = data.y_train[0]
    # 200x100 -> 50x50: x * 0.25, y * 0.5
    # every row, padding included, ends with one original pixel in the resized image
    assert first[0].tolist() == [VOC_CLASSES.index("chair"), 5, 5, 25, 30, 0, 0.25, 0.5]
    assert first[1].tolist() == [VOC_CLASSES.index("dog"), 30, 20, 45, 45, 1, 0.25, 0.5]
    assert data.y_train[1, 0, :6].tolist() == [VOC_CLASSES.index("tvmonitor"), 2.5, 5, 12.5, 25,
                                                0]
    assert data.y_train[1, 1].tolist() == [-1, -1, -1, -1, -1, -1, 0.25, 0.5]  # padding
    assert data.y_test[0, 0, :6].tolist() == [VOC_CLASSES.index("person"), 10, 10, 20, 50, 0]
    assert load_voc(voc_root, max_train=1, max_test=0, image_size=50).x_train.shape[0] == 1


def test_voc_loader_finds_fetch_layout_and_reports_missing_parts(voc_root, tmp_path):
    moved = tmp_path / "voc2007_test" / "VOCdevkit"
    moved.mkdir(parents=True)
    test_ids = (voc_root / "VOCdevkit/VOC2007/ImageSets/Main/test.txt")
    test_ids.rename(tmp_path / "test.txt")
    with pytest.raises(DatasetNotFoundError, match="VOC2007 test not found.*ImageSets/Main/"
                       "test.txt.*host.robots.ox.ac.uk"):
        load_voc(voc_root)
    voc_set(moved / "VOC2007", "test", {"000001": [("person", (40, 20, 80, 100), 0)]})
    assert load_voc(voc_root, image_size=20).x_test.shape == (1, 3, 20, 20)
    (voc_root / "VOCdevkit/VOC2012/JPEGImages/2008_000002.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="missing .*2008_000002.jpg"):
        load_voc(voc_root)


def test_voc_loader_rejects_unknown_class(voc_root):
    voc_xml(voc_root / "VOCdevkit/VOC2007/Annotations/000005.xml", [("unicorn", (1, 1, 5, 5), 0)])
    with pytest.raises(ValueError, match="unknown VOC class 'unicorn'"):
        load_voc(voc_root)


VOC_000005 = "VOCdevkit/VOC2007/Annotations/000005.xml"

def _dog(xmin="1", ymin="1", xmax="5", ymax="5", end="</annotation>"):
    corners = {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}
    box = "".join(f"<{k}>{v}</{k}>" for k, v in corners.items() if v is not None)
    return f"<annotation><object><name>dog</name><bndbox>{box}</bndbox></object>{end}"


@pytest.mark.parametrize(("xml", "problem"), [
    (_dog(xmax=None), "object 'dog': <bndbox> has no <xmax>"),
    (_dog(ymin="one"), "object 'dog': <ymin> is 'one', not a number"),
    (_dog(xmin="nan"), "object 'dog': <xmin> is 'nan', not a number"),
    (_dog(end="<obj"), "malformed XML"),
], ids=["no-xmax", "text-coordinate", "nan-coordinate", "truncated"])
def test_malformed_voc_annotation_is_named_with_what_is_wrong(voc_root, xml, problem):
    path = voc_root / VOC_000005
    path.write_text(xml)
    with pytest.raises(ValueError) as err:
        load_voc(voc_root)
    assert str(path) in str(err.value) and problem in str(err.value)


def test_detection_hints_point_at_the_download_entries(voc_root, coco_root, tmp_path):
    """A missing file's hint names the download entries (voc07, coco17), not 'see docs'."""
    (voc_root / "VOCdevkit/VOC2007/JPEGImages/000005.jpg").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        load_voc(voc_root)
    assert "voc07" in str(err.value)
    assert all(DOWNLOADS[part]["url"] in str(err.value) for part in GROUPS["voc07"])
    (coco_root / "coco" / "train2017" / "a.jpg").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        load_coco(coco_root)
    assert all(DOWNLOADS[part]["url"] in str(err.value) for part in GROUPS["coco17"])
    for split in ("train", "val"):  # COCO 2014 has no entry: its own zips, by hand
        (coco_root / "coco" / "annotations" / f"instances_{split}2014.json").write_text("{}")
        (coco_root / "coco" / f"{split}2014").mkdir()
    coco_json(coco_root / "coco" / "annotations" / "instances_train2014.json",
              [(10, "a.jpg", 100, 50)], [])
    with pytest.raises(DatasetNotFoundError, match="missing .*a.jpg.*train2014.zip"):
        load_coco(coco_root, year="2014")


def coco_json(path: Path, images: list[tuple[int, str, int, int]], anns: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h in images],
        "annotations": [{"id": k + 1, "image_id": i, "category_id": c, "bbox": list(b),
                         "iscrowd": crowd, "area": b[2] * b[3]}
                        for k, (i, c, b, crowd) in enumerate(anns)],
        "categories": [{"id": 7, "name": "train"}, {"id": 1, "name": "person"},
                       {"id": 3, "name": "car"}],
    }))


@pytest.fixture
def coco_root(tmp_path):
    coco = tmp_path / "coco"
    for split in ("train", "val"):
        jpeg(coco / f"{split}2017" / "a.jpg", 100, 50)
        jpeg(coco / f"{split}2017" / "b.jpg", 40, 40)
        jpeg(coco / f"{split}2017" / "c.jpg", 40, 40)
        coco_json(coco / "annotations" / f"instances_{split}2017.json",
                  [(10, "a.jpg", 100, 50), (11, "b.jpg", 40, 40), (12, "c.jpg", 40, 40)],
                  [(10, 7, (10, 5, 20, 10), 0), (10, 1, (50, 0, 50, 50), 1),
                   (11, 3, (0, 0, 10, 10), 1)])  # image 11: crowd only; image 12: nothing
    return tmp_path


def test_coco_loader_maps_categories_boxes_and_crowds(coco_root):
    data = load_coco(coco_root, image_size=20)
    assert data.metric == "coco_map" and data.num_classes == 3 and data.name == "coco17"
    # training keeps only images with a non-crowd object; testing keeps every image
    assert data.x_train.shape == (1, 3, 20, 20) and data.x_test.shape == (3, 3, 20, 20)
    # category ids 1, 3, 7 -> 0, 1, 2; xywh -> xyxy; 100x50 -> 20x20: x * 0.2, y * 0.4
    assert data.y_train[0, 0].tolist() == pytest.approx([2, 2, 2, 6, 6, 0, 0.2, 0.4])
    assert data.y_train[0, 1].tolist() == pytest.approx([0, 10, 0, 20, 20, 1, 0.2, 0.4])
    assert data.y_test[1, 0].tolist() == pytest.approx([1, 0, 0, 5, 5, 1, 0.5, 0.5])
    assert (data.y_test[2, :, 0] == -1).all()
    assert data.y_test[2, 0, 6:].tolist() == [0.5, 0.5]  # an image without objects has it too
    # the release's ids, for an official results file (coco_results)
    assert data.class_ids == (1, 3, 7) and data.test_ids == (10, 11, 12)


def test_coco_loader_missing_and_years(coco_root, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="instances_train2014.json.*images.cocodataset"):
        load_official("coco14", coco_root)
    with pytest.raises(ValueError, match="year"):
        load_coco(coco_root, year="2019")
    with pytest.raises(DatasetNotFoundError, match="coco"):
        load_coco(tmp_path / "nowhere")


def _drop(key, field=None, index=0):
    def edit(data):
        if field is None:
            del data[key]
        else:
            del data[key][index][field]
    return edit


def _set(key, field, value, index=0):
    def edit(data):
        data[key][index][field] = value
    return edit


@pytest.mark.parametrize(("edit", "problem"), [
    (_drop("categories"), "no 'categories' list"),
    (_drop("annotations"), "no 'annotations' list"),
    (_drop("images"), "no 'images' list"),
    (_drop("annotations", "bbox", 1), "annotations[1] (id 2) has no 'bbox'"),
    (_drop("images", "file_name", 2), "images[2] (id 12) has no 'file_name'"),
    (_set("annotations", "category_id", 99, 2), "annotations[2] (id 3): unknown category_id 99"),
    (_set("annotations", "image_id", 13), "annotations[0] (id 1): unknown image_id 13"),
    (_set("annotations", "bbox", [1, 2, 3]), "annotations[0] (id 1): bbox [1, 2, 3] is not 4 "
                                              "numbers"),
    (_set("annotations", "bbox", [1, 2, "3", 4]), "bbox [1, 2, '3', 4] is not 4 numbers"),
    (_set("categories", "id", "7"), "categories[0]: id '7' is not an integer"),
], ids=["no-categories", "no-annotations", "no-images", "no-bbox", "no-file-name",
        "unknown-category", "unknown-image", "short-bbox", "text-bbox", "text-category-id"])
def test_malformed_coco_json_is_named_with_what_is_wrong(coco_root, edit, problem):
    path = coco_root / "coco" / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as err:
        load_coco(coco_root)
    assert str(path) in str(err.value) and problem in str(err.value)


@pytest.mark.parametrize("text", ['{"images": [', "[]", "\xff\xfe"],
                         ids=["truncated", "not-an-object", "not-utf8"])
def test_unreadable_coco_json_is_named(coco_root, text):
    path = coco_root / "coco" / "annotations" / "instances_val2017.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match="not a COCO instances file") as err:
        load_coco(coco_root)
    assert str(path) in str(err.value)


def test_download_entries_for_voc_and_coco():
    assert DOWNLOADS["voc2007_test"]["md5"] == "b6e924de25625d8de591ea690078ad9f"
    assert DOWNLOADS["voc2012_trainval"]["url"].endswith("VOCtrainval_11-May-2012.tar")
    assert DOWNLOADS["coco2017_val"]["url"] == "http://images.cocodataset.org/zips/val2017.zip"
    assert all(part in DOWNLOADS for group in GROUPS.values() for part in group)
    # the fetch layouts are what the loaders search
    assert DOWNLOADS["voc2007_test"]["provides"] == "voc2007_test/VOCdevkit/VOC2007"
    assert DOWNLOADS["coco2017_annotations_trainval"]["provides"] == "coco/annotations"


@pytest.fixture(scope="module")
def scenes():
    from bibench.data.embedded.detection import mnist_detection_embedded

    return mnist_detection_embedded(n_train=24, n_test=8)


def test_embedded_scenes_have_tight_boxes_around_all_ink(scenes):
    assert scenes.embedded and scenes.stands_in_for == "VOC07"
    assert scenes.x_train.shape == (24, 1, 96, 96) and scenes.y_train.shape == (24, 3, 6)
    for image, rows in zip(scenes.x_train, scenes.y_train, strict=True):
        rows = rows[rows[:, 0] >= 0]
        assert 1 <= len(rows) <= 3
        assert set(rows[:, 0].long().tolist()) <= set(range(10))
        ink = image[0] > 0.2
        covered = torch.zeros_like(ink)
        for _, x1, y1, x2, y2, _ in rows.long().tolist():
            covered[y1:y2, x1:x2] = True
            box = ink[y1:y2, x1:x2]
            # tight: ink on every edge of the box
            assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any()
            assert 14 <= max(x2 - x1, y2 - y1) <= 44
        assert not (ink & ~covered).any()
        iou = box_iou(rows[:, 1:5], rows[:, 1:5]) - torch.eye(len(rows))
        assert (iou <= 0.1).all()


def test_embedded_scenes_are_fixed_and_splits_differ(scenes):
    from bibench.data.embedded.detection import mnist_detection_embedded

    again = mnist_detection_embedded(n_train=24, n_test=8)
    assert torch.equal(again.x_train, scenes.x_train)
    assert not np.isclose(scenes.x_test[:8].sum().item(), scenes.x_train[:8].sum().item())
