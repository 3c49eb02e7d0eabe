"""Where the freely downloadable datasets come from, and a verified, atomic `fetch`.

`DOWNLOADS[name]` describes one dataset: `url`, `sha256` (None where we do not know it for
sure: the first download then records the hash it got in `<archive>.sha256` next to the
archive, and later downloads must match it), optionally `md5` (published by the dataset or by
torchvision/torchaudio; checked too), `archive` (the file name to save; None for a plain file),
`extract_to` (folder under the destination root that receives the archive's contents),
`provides` (the dataset folder that results, which the loaders look for) and `flat` (the
archive has no top-level folder, so it is extracted into `extract_to` as a whole). An entry
with several files lists them under `files`.

Usage: `fetch("cifar10", "/data")` or `python -m bibench.data.downloads cifar10 /data`.
ImageNet is not freely downloadable: see `MANUAL`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_GLUE = "https://dl.fbaipublicfiles.com/glue/data"
_SENTEVAL = "https://dl.fbaipublicfiles.com/senteval/senteval_data"


def _glue(zip_name: str, folder: str) -> dict[str, Any]:
    # URLs of the GLUE download script (download_glue_data.py, TASK2PATH); each zip holds the
    # task folder. sha256 unknown: recorded on the first download.
    return {"url": f"{_GLUE}/{zip_name}", "sha256": None, "archive": zip_name,
            "extract_to": "glue_data", "provides": f"glue_data/{folder}"}


DOWNLOADS: dict[str, dict[str, Any]] = {
    "cifar10": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "sha256": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        "md5": "c58f30108f718f92721af3b95e74349a",  # published on the CIFAR page
        "archive": "cifar-10-python.tar.gz", "extract_to": ".",
        "provides": "cifar-10-batches-py",
    },
    "cifar10c": {
        "url": "https://zenodo.org/records/2535967/files/CIFAR-10-C.tar",
        "sha256": None,  # Zenodo publishes the md5 only; sha256 recorded on first download
        "md5": "56bf5dcef84df0e2308c6dcbcbbd8499",
        "archive": "CIFAR-10-C.tar", "extract_to": ".", "provides": "CIFAR-10-C",
    },
    "modelnet40": {
        # PointNet's release; the Stanford host is often unreachable: any mirror of the same
        # zip works (put it in <root>/.downloads/ and fetch() verifies and extracts it).
        "url": "https://shapenet.cs.stanford.edu/media/modelnet40_ply_hdf5_2048.zip",
        "sha256": None,  # recorded on first download
        "archive": "modelnet40_ply_hdf5_2048.zip", "extract_to": ".",
        "provides": "modelnet40_ply_hdf5_2048",
    },
    "shapenet_part": {
        "url": "https://shapenet.cs.stanford.edu/media/shapenet_part_seg_hdf5_data.zip",
        "sha256": None,  # recorded on first download
        "archive": "shapenet_part_seg_hdf5_data.zip", "extract_to": ".",
        "provides": "hdf5_data",
    },
    "speech_commands": {
        "url": "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz",
        # as in torchaudio's SPEECHCOMMANDS checksums
        "sha256": "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d",
        "md5": "3cd23799cb2bbdec517f1cc028f8d43c",
        "archive": "speech_commands_v0.01.tar.gz", "extract_to": "speech_commands_v0.01",
        "provides": "speech_commands_v0.01", "flat": True,
    },
    "glue_cola": _glue("CoLA.zip", "CoLA"),
    "glue_sst2": _glue("SST-2.zip", "SST-2"),
    "glue_qqp": _glue("QQP-clean.zip", "QQP"),
    "glue_stsb": _glue("STS-B.zip", "STS-B"),
    "glue_mnli": _glue("MNLI.zip", "MNLI"),
    "glue_qnli": _glue("QNLIv2.zip", "QNLI"),
    "glue_rte": _glue("RTE.zip", "RTE"),
    "glue_wnli": _glue("WNLI.zip", "WNLI"),
    "glue_mrpc": {
        # MRPC is not hosted by GLUE: the script used SentEval's copies of Microsoft's files
        # plus GLUE's list of dev pairs; the loader builds train/dev from them.
        "extract_to": "glue_data/MRPC", "provides": "glue_data/MRPC",
        "files": [
            {"url": f"{_SENTEVAL}/msr_paraphrase_train.txt", "sha256": None, "archive": None,
             "name": "msr_paraphrase_train.txt"},
            {"url": f"{_SENTEVAL}/msr_paraphrase_test.txt", "sha256": None, "archive": None,
             "name": "msr_paraphrase_test.txt"},
            {"url": f"{_GLUE}/mrpc_dev_ids.tsv", "sha256": None, "archive": None,
             "name": "dev_ids.tsv"},
        ],
    },
    # PASCAL VOC: md5s as published in torchvision's VOC dataset table. Each tar
    # holds VOCdevkit/VOC<year>/; they go to separate folders (their top levels clash), which
    # the VOC loader also searches.
    "voc2007_trainval": {
        "url": "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar",
        "sha256": None, "md5": "c52e279531787c972589f7e41ab4ae64",
        "archive": "VOCtrainval_06-Nov-2007.tar", "extract_to": "voc2007_trainval",
        "provides": "voc2007_trainval/VOCdevkit/VOC2007",
    },
    "voc2007_test": {
        "url": "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar",
        "sha256": None, "md5": "b6e924de25625d8de591ea690078ad9f",
        "archive": "VOCtest_06-Nov-2007.tar", "extract_to": "voc2007_test",
        "provides": "voc2007_test/VOCdevkit/VOC2007",
    },
    "voc2012_trainval": {
        "url": "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
        "sha256": None, "md5": "6cd6e144f989b92b3379bac3b3de84fd",
        "archive": "VOCtrainval_11-May-2012.tar", "extract_to": "voc2012_trainval",
        "provides": "voc2012_trainval/VOCdevkit/VOC2012",
    },
    # COCO 2017: no published hashes; recorded on the first download.
    **{f"coco2017_{part}": {
        "url": f"http://images.cocodataset.org/{folder}/{part}2017.zip", "sha256": None,
        "archive": f"{part}2017.zip", "extract_to": "coco", "provides": f"coco/{provides}"}
       for part, folder, provides in (("train", "zips", "train2017"), ("val", "zips", "val2017"),
                                      ("annotations_trainval", "annotations", "annotations"))},
}

# Datasets that come as several downloads: fetch(name) fetches every part.
GROUPS: dict[str, tuple[str, ...]] = {
    "voc07": ("voc2007_trainval", "voc2007_test", "voc2012_trainval"),
    "coco17": ("coco2017_annotations_trainval", "coco2017_train", "coco2017_val"),
}

MANUAL: dict[str, str] = {
    "imagenet": (
        "ImageNet (ILSVRC-2012) is not freely downloadable: request access at "
        "https://image-net.org/download.php, extract ILSVRC2012_img_train.tar (one tar per "
        "class) into train/<wnid>/ and ILSVRC2012_img_val.tar into val/<wnid>/ (e.g. with the "
        "common valprep.sh), then point the config's data root at the folder holding train/ "
        "and val/ (see docs/datasets.md)"
    ),
    # No download entry (the workflow's grids use COCO 2017): the same site, by hand.
    "coco14": (
        "COCO 2014 has no download entry: download "
        "http://images.cocodataset.org/zips/train2014.zip, "
        "http://images.cocodataset.org/zips/val2014.zip and "
        "http://images.cocodataset.org/annotations/annotations_trainval2014.zip and extract "
        "them into <root>/coco (see docs/datasets.md)"
    ),
}


class ChecksumError(ValueError):
    """A downloaded file does not have the expected hash."""


def file_hash(path: str | Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: str | Path, sha256: str | None, md5: str | None = None) -> str:
    """Check `path` against the known hashes; returns its sha256.

    With no known sha256, the hash is recorded in `<path>.sha256` on first use and later
    calls must match that record (so a changed file on the server is noticed).
    """
    path = Path(path)
    digest = file_hash(path)
    record = path.with_name(path.name + ".sha256")
    expected = sha256
    if expected is None and record.exists():
        expected = record.read_text().split()[0]
    if expected is not None and digest != expected.lower():
        raise ChecksumError(f"{path}: sha256 {digest} != expected {expected}")
    if md5 is not None and file_hash(path, "md5") != md5.lower():
        raise ChecksumError(f"{path}: md5 does not match {md5}")
    if sha256 is None and not record.exists():
        record.write_text(f"{digest}  {path.name}\n")
    return digest


def _safe_members_zip(zf: zipfile.ZipFile, dest: Path) -> None:
    root = dest.resolve()
    for name in zf.namelist():
        target = (dest / name).resolve()
        if target != root and root not in target.parents:
            raise ValueError(f"unsafe path in archive: {name}")


def _extract(archive: Path, into: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            _safe_members_zip(zf, into)
            zf.extractall(into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(into, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                for member in tf.getmembers():
                    target = (into / member.name).resolve()
                    if into.resolve() not in target.parents:
                        raise ValueError(f"unsafe path in archive: {member.name}")
                tf.extractall(into)
    else:
        raise ValueError(f"{archive}: neither a zip nor a tar archive")


def install(downloaded: str | Path, part: dict[str, Any], dest_dir: str | Path,
            extract_to: str = ".", flat: bool = False) -> Path:
    """Verify a downloaded file and put its contents under `dest_dir/extract_to` atomically.

    The archive is extracted into a temporary folder inside `dest_dir` (same file system);
    then each top-level entry (or, for a `flat` archive, the whole folder) is renamed into
    place, so a crash never leaves a half-extracted dataset where loaders look for it.
    Existing targets are left alone (FileExistsError). Returns the target folder.
    """
    downloaded, dest_dir = Path(downloaded), Path(dest_dir)
    verify(downloaded, part.get("sha256"), part.get("md5"))
    target = dest_dir / extract_to
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest_dir))
    try:
        if part.get("archive") is None:
            shutil.copy2(downloaded, tmp / part.get("name", downloaded.name))
        else:
            _extract(downloaded, tmp)
        if flat:
            if target.exists():
                raise FileExistsError(f"{target} exists; remove it to extract again")
            os.rename(tmp, target)
            return target
        target.mkdir(parents=True, exist_ok=True)
        entries = sorted(tmp.iterdir())
        clashes = [str(target / e.name) for e in entries if (target / e.name).exists()]
        if clashes:
            raise FileExistsError(f"already present: {', '.join(clashes)}; remove to replace")
        for entry in entries:
            os.rename(entry, target / entry.name)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download(url: str, path: str | Path, timeout: float = 60.0) -> Path:
    """Download `url` to `path` via a temporary name renamed on success (kept if present)."""
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out, 1 << 20)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def fetch(name: str, dest_dir: str | Path, *, keep_archive: bool = True) -> Path:
    """Download (if needed), verify and extract dataset `name` under `dest_dir`.

    Archives go to `dest_dir/.downloads/`; returns the dataset folder (`provides`). Does
    nothing when that folder already exists.
    """
    if name in MANUAL:
        raise ValueError(MANUAL[name])
    if name in GROUPS:
        for part in GROUPS[name]:
            fetch(part, dest_dir, keep_archive=keep_archive)
        return Path(dest_dir).expanduser()
    try:
        entry = DOWNLOADS[name]
    except KeyError:
        raise KeyError(f"no download for {name!r}; known: {', '.join(DOWNLOADS)}") from None
    dest_dir = Path(dest_dir).expanduser()
    provided = dest_dir / entry["provides"]
    if provided.exists():
        return provided
    cache = dest_dir / ".downloads"
    parts = entry.get("files", [entry])
    paths = [download(p["url"], cache / (p["archive"] or p["name"])) for p in parts]
    if "files" in entry:  # several plain files: gather them, then move the folder in at once
        staging = Path(tempfile.mkdtemp(prefix=".stage-", dir=dest_dir))
        try:
            for part, path in zip(parts, paths, strict=True):
                install(path, part, staging)
            provided.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, provided)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    else:
        install(paths[0], entry, dest_dir, entry["extract_to"], entry.get("flat", False))
    if not keep_archive:
        for path in paths:
            path.unlink(missing_ok=True)
    return provided


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(f"usage: python -m bibench.data.downloads NAME DEST_DIR\nNAME: "
              f"{', '.join([*DOWNLOADS, *GROUPS])}", file=sys.stderr)
        return 2
    print(fetch(args[0], args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def fetch_with_manifest(name: str, manifest: str | Path) -> Path:
    """Fetch an official dataset beside its manifest and write the manifest (what, where): the
    file the workflow's download rule makes."""
    import json

    from bibench.io import atomic_write

    folder = fetch(name, Path(manifest).parent)
    entries = [DOWNLOADS[part] for part in GROUPS.get(name, (name,))]
    record = {"name": name, "folder": str(folder),
              "urls": [p["url"] for entry in entries for p in entry.get("files", [entry])]}
    log.info("%s ready in %s", name, folder)
    atomic_write(manifest, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))
    return folder
