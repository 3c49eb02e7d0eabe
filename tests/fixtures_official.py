"""Writers of tiny datasets in exactly the byte-level layout of the official releases.

Each writer returns what it wrote (arrays, rows) so tests can check the loaders against it.
"""

from __future__ import annotations

import pickle
import wave
from pathlib import Path

import numpy as np

CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
               b"ship", b"truck"]


# ---------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-10-C


def write_cifar10(root: Path, n_per_batch: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """cifar-10-batches-py as in cifar-10-python.tar.gz: pickled dicts with bytes keys."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    out: dict[str, np.ndarray] = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n_per_batch)]
        label = b"testing batch 1 of 1" if name == "test_batch" else (
            f"training batch {k + 1} of 5".encode())
        batch = {b"batch_label": label, b"labels": labels, b"data": data,
                 b"filenames": [f"img_{k}_{i}.png".encode() for i in range(n_per_batch)]}
        with open(base / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        out[name] = data
        out[name + "_labels"] = np.array(labels)
    meta = {b"num_cases_per_batch": 10000, b"label_names": CIFAR_NAMES, b"num_vis": 3072}
    with open(base / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    (base / "readme.html").write_text("<meta HTTP-EQUIV=\"REFRESH\" content=\"0; URL=...\">")
    return out


def write_cifar10c(root: Path, n: int = 6, corruptions=("gaussian_noise", "fog"),
                   seed: int = 0) -> dict[str, np.ndarray]:
    """CIFAR-10-C/<corruption>.npy uint8 (5n, 32, 32, 3) + labels.npy uint8 (5n,)."""
    rng = np.random.default_rng(seed)
    base = root / "CIFAR-10-C"
    base.mkdir(parents=True)
    labels = np.tile(rng.integers(0, 10, size=n, dtype=np.uint8), 5)
    np.save(base / "labels.npy", labels)
    out = {"labels": labels}
    for c in corruptions:
        images = rng.integers(0, 256, size=(5 * n, 32, 32, 3), dtype=np.uint8)
        np.save(base / f"{c}.npy", images)
        out[c] = images
    return out


# ---------------------------------------------------------------------------------------------
# ImageNet


IMAGENET_WNIDS = ("n01440764", "n01443537", "n01484850")


def write_imagenet(root: Path, n_train: int = 3, n_val: int = 2) -> Path:
    """train/<wnid>/<wnid>_<k>.JPEG and val/<wnid>/ILSVRC2012_val_<k>.JPEG, mixed sizes."""
    from PIL import Image

    base = root / "imagenet"
    sizes = [(300, 260), (260, 400), (500, 375)]
    k = 0
    for c, wnid in enumerate(IMAGENET_WNIDS):
        for split, count in (("train", n_train), ("val", n_val)):
            folder = base / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                k += 1
                w, h = sizes[(c + i) % len(sizes)]
                yy, xx = np.mgrid[0:h, 0:w]
                img = np.stack([(xx * 255 // w), (yy * 255 // h),
                                np.full_like(xx, 60 * c)], axis=-1).astype(np.uint8)
                name = f"{wnid}_{i}.JPEG" if split == "train" else (
                    f"ILSVRC2012_val_{k:08d}.JPEG")
                Image.fromarray(img).save(folder / name, format="JPEG", quality=95)
    return base


# ---------------------------------------------------------------------------------------------
# ModelNet40 / ShapeNet part (PointNet HDF5 releases)


MODELNET40_SHAPES = [
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair",
    "cone", "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar",
    "keyboard", "lamp", "laptop", "mantel", "monitor", "night_stand", "person", "piano",
    "plant", "radio", "range_hood", "sink", "sofa", "stairs", "stool", "table", "tent",
    "toilet", "tv_stand", "vase", "wardrobe", "xbox",
]


def write_modelnet40(root: Path, n_per_file: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """modelnet40_ply_hdf5_2048/: ply_data_{train0..4,test0..1}.h5 (data, faceId, label,
    normal), train_files.txt / test_files.txt with PointNet's `data/...` paths, shape_names."""
    import h5py

    rng = np.random.default_rng(seed)
    base = root / "modelnet40_ply_hdf5_2048"
    base.mkdir(parents=True)
    out: dict[str, list] = {"train_data": [], "train_label": [], "test_data": [],
                            "test_label": []}
    for split, count in (("train", 5), ("test", 2)):
        lines = []
        for i in range(count):
            name = f"ply_data_{split}{i}.h5"
            data = rng.normal(size=(n_per_file, 2048, 3)).astype(np.float32)
            label = rng.integers(0, 40, size=(n_per_file, 1)).astype(np.uint8)
            with h5py.File(base / name, "w") as f:
                f.create_dataset("data", data=data)
                f.create_dataset("faceId", data=rng.integers(0, 1000, size=(n_per_file, 2048))
                                 .astype(np.int32))
                f.create_dataset("label", data=label)
                f.create_dataset("normal", data=rng.normal(size=(n_per_file, 2048, 3))
                                 .astype(np.float32))
            out[f"{split}_data"].append(data)
            out[f"{split}_label"].append(label)
            lines.append(f"data/modelnet40_ply_hdf5_2048/{name}")
        (base / f"{split}_files.txt").write_text("\n".join(lines) + "\n")
    (base / "shape_names.txt").write_text("\n".join(MODELNET40_SHAPES) + "\n")
    return {k: np.concatenate(v) for k, v in out.items()}


SHAPENET_CATEGORY_IDS = [
    ("Airplane", "02691156"), ("Bag", "02773838"), ("Cap", "02954340"), ("Car", "02958343"),
    ("Chair", "03001627"), ("Earphone", "03261776"), ("Guitar", "03467517"),
    ("Knife", "03624134"), ("Lamp", "03636649"), ("Laptop", "03642806"),
    ("Motorbike", "03790512"), ("Mug", "03797390"), ("Pistol", "03948459"),
    ("Rocket", "04099429"), ("Skateboard", "04225987"), ("Table", "04379243"),
]
_PART_OFFSETS = [0, 4, 6, 8, 12, 16, 19, 22, 24, 28, 30, 36, 38, 41, 44, 47, 50]


def write_shapenet_part(root: Path, n_per_file: int = 3, seed: int = 0
                        ) -> dict[str, np.ndarray]:
    """hdf5_data/ as in shapenet_part_seg_hdf5_data.zip: ply_data_{train0,train1,val0,test0}.h5
    (data, label, pid), {train,val,test}_hdf5_file_list.txt, all_object_categories.txt."""
    import h5py

    rng = np.random.default_rng(seed)
    base = root / "hdf5_data"
    base.mkdir(parents=True)
    out: dict[str, list] = {}
    for split, count in (("train", 2), ("val", 1), ("test", 1)):
        names = []
        for i in range(count):
            name = f"ply_data_{split}{i}.h5"
            data = rng.normal(size=(n_per_file, 2048, 3)).astype(np.float32)
            cat = rng.integers(0, 16, size=n_per_file)
            lo, hi = np.array(_PART_OFFSETS)[cat], np.array(_PART_OFFSETS)[cat + 1]
            pid = (lo[:, None] + rng.integers(0, 1 << 16, size=(n_per_file, 2048))
                   % (hi - lo)[:, None]).astype(np.uint8)
            with h5py.File(base / name, "w") as f:
                f.create_dataset("data", data=data)
                f.create_dataset("label", data=cat.astype(np.uint8)[:, None])
                f.create_dataset("pid", data=pid)
            out.setdefault(f"{split}_data", []).append(data)
            out.setdefault(f"{split}_label", []).append(cat)
            out.setdefault(f"{split}_pid", []).append(pid)
            names.append(name)
        (base / f"{split}_hdf5_file_list.txt").write_text("\n".join(names) + "\n")
    (base / "all_object_categories.txt").write_text(
        "".join(f"{n}\t{i}\n" for n, i in SHAPENET_CATEGORY_IDS))
    return {k: np.concatenate(v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# GLUE


def _tsv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")


def write_glue(root: Path) -> Path:
    """glue_data/<TASK>/ train and dev TSVs with each task's header/columns as released."""
    g = root / "glue_data"
    _tsv(g / "CoLA" / "train.tsv", [
        ["gj04", "1", "", "Our friends won't buy this analysis, let alone the next one."],
        ["gj04", "0", "*", "They drank the pub."],
        ["bc01", "1", "", "The \"quoted\" sailor left."],
    ])
    _tsv(g / "CoLA" / "dev.tsv", [["gj04", "0", "*", "Fred watered plants flat."],
                                  ["gj04", "1", "", "The sailor left."]])
    _tsv(g / "SST-2" / "train.tsv", [["sentence", "label"],
                                     ["hide new secretions from the parental units ", "0"],
                                     ["the greatest musicians ", "1"],
                                     ["it 's \"fun\" ", "1"]])
    _tsv(g / "SST-2" / "dev.tsv", [["sentence", "label"], ["it 's a charming journey . ", "1"]])
    mrpc_header = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    _tsv(g / "MRPC" / "train.tsv", [mrpc_header,
                                    ["1", "702876", "702977", "Amrozi accused his brother .",
                                     "Referring to him , Amrozi accused his brother ."],
                                    ["0", "2108705", "2108831", "Yucaipa owned Dominick 's .",
                                     "Yucaipa bought Dominick 's in 1995 ."]])
    _tsv(g / "MRPC" / "dev.tsv", [mrpc_header, ["1", "1355540", "1355592", "He said .",
                                                "He stated ."]])
    sts_header = ["index", "genre", "filename", "year", "old_index", "source1", "source2",
                  "sentence1", "sentence2", "score"]
    _tsv(g / "STS-B" / "train.tsv", [
        sts_header,
        ["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none",
         "A plane is taking off.", "An air plane is taking off.", "5.000"],
        ["1", "main-captions", "MSRvid", "2012test", "0004", "none", "none",
         "A man is playing a flute.", "A man is playing a bamboo flute.", "3.800"]])
    _tsv(g / "STS-B" / "dev.tsv", [
        sts_header, ["0", "main-captions", "MSRvid", "2012test", "0000", "none", "none",
                     "A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.",
                     "5.000"]])
    qqp_header = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    _tsv(g / "QQP" / "train.tsv", [qqp_header,
                                   ["133273", "213221", "213222", "How is the life of a math "
                                    "student?", "Which level of prepration is enough?", "0"],
                                   ["402555", "536040", "536041", "How do I control my horny "
                                    "emotions?", "How do you control your horniness?", "1"],
                                   ["1", "2", "3", "a malformed row"]])
    _tsv(g / "QQP" / "dev.tsv", [qqp_header, ["201359", "303345", "303346", "Why are African-"
                                              "Americans so beautiful?", "Why are hispanics so "
                                              "beautiful?", "0"]])
    mnli_train = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
                  "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
                  "sentence2", "label1", "gold_label"]
    _tsv(g / "MNLI" / "train.tsv", [
        mnli_train,
        ["0", "31193", "31193n", "government", "( ( Conceptually ...", "( ...", "(ROOT ...",
         "(ROOT ...", "Conceptually cream skimming has two basic dimensions.",
         "Product and geography are what make cream skimming work.", "neutral", "neutral"],
        ["1", "101457", "101457e", "telephone", "( you ...", "( ...", "(ROOT ...", "(ROOT ...",
         "you know during the season i guess", "You lose the things.", "entailment",
         "entailment"],
        ["2", "134793", "134793c", "fiction", "( ...", "( ...", "(ROOT ...", "(ROOT ...",
         "One of our number will carry out your instructions.", "We have no one free.",
         "contradiction", "contradiction"]])
    mnli_dev = mnli_train[:10] + ["label1", "label2", "label3", "label4", "label5", "gold_label"]
    _tsv(g / "MNLI" / "dev_matched.tsv", [
        mnli_dev, ["0", "63735", "63735n", "slate", "( ...", "( ...", "(ROOT ...", "(ROOT ...",
                   "The new rights are nice enough", "Everyone really likes the newest benefits",
                   "neutral", "entailment", "neutral", "neutral", "neutral", "neutral"]])
    _tsv(g / "MNLI" / "dev_mismatched.tsv", [
        mnli_dev, ["0", "75290", "75290c", "letters", "( ...", "( ...", "(ROOT ...", "(ROOT ...",
                   "Your contribution helped.", "Your contributions were of no help.",
                   "contradiction", "contradiction", "contradiction", "contradiction",
                   "contradiction", "contradiction"]])
    _tsv(g / "QNLI" / "train.tsv", [["index", "question", "sentence", "label"],
                                    ["0", "When did the third Digimon series begin?",
                                     "Unlike the two seasons before it ...", "not_entailment"],
                                    ["1", "Which missile batteries often have individual "
                                     "launchers?", "When MANPADS is operated ...", "entailment"]])
    _tsv(g / "QNLI" / "dev.tsv", [["index", "question", "sentence", "label"],
                                  ["0", "What came into force after the new constitution?",
                                   "As of that day, the new constitution ...", "entailment"]])
    for task in ("RTE", "WNLI"):
        yes, no = ("entailment", "not_entailment") if task == "RTE" else ("1", "0")
        _tsv(g / task / "train.tsv", [["index", "sentence1", "sentence2", "label"],
                                      ["0", "No Weapons of Mass Destruction Found in Iraq Yet.",
                                       "Weapons of Mass Destruction Found in Iraq.", no],
                                      ["1", "A place of sorrow, after Pope John Paul II died.",
                                       "Pope Benedict XVI is the new leader.", yes]])
        _tsv(g / task / "dev.tsv", [["index", "sentence1", "sentence2", "label"],
                                    ["0", "Dana Reeve died.", "Christopher Reeve had died.",
                                     no]])
    return g


def write_mrpc_raw(root: Path) -> Path:
    """Microsoft's msr_paraphrase_{train,test}.txt (BOM, CRLF stripped) + GLUE dev_ids.tsv."""
    base = root / "MRPC"
    base.mkdir(parents=True)
    header = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    rows = ["1\t702876\t702977\tAmrozi accused his brother .\tReferring to him .\n",
            "0\t2108705\t2108831\tYucaipa owned Dominick 's .\tYucaipa bought it .\n",
            "1\t1330381\t1330521\tThey had published .\tThey published .\n"]
    (base / "msr_paraphrase_train.txt").write_text(header + "".join(rows), encoding="utf-8")
    (base / "msr_paraphrase_test.txt").write_text(
        header + "1\t1089874\t1089925\tPCCW 's chief .\tThe chief .\n", encoding="utf-8")
    (base / "dev_ids.tsv").write_text("2108705\t2108831\n")
    return base


# ---------------------------------------------------------------------------------------------
# Speech Commands v0.01


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000, width: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())


SPEECH_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


def write_speech_commands(root: Path, clips_per_word: int = 3, unknown_words=("bed", "cat"),
                          seed: int = 0) -> dict[str, list[str]]:
    """speech_commands_v0.01/ as extracted from the tarball (no top folder in the archive):
    <word>/<hash>_nohash_<n>.wav, validation_list.txt, testing_list.txt, _background_noise_/
    (wavs + README.md), LICENSE, README.md. Clip n=0 of each word is in the test list, n=1 in
    the validation list, the rest train. Some clips are shorter than 1 s."""
    rng = np.random.default_rng(seed)
    base = root / "speech_commands_v0.01"
    files: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    for w, word in enumerate((*SPEECH_WORDS, *unknown_words)):
        for n in range(clips_per_word):
            rel = f"{word}/{w:04x}beef_nohash_{n}.wav"
            length = 16000 if n % 2 == 0 else 11000
            t = np.arange(length) / 16000
            tone = 8000 * np.sin(2 * np.pi * (200 + 50 * w) * t)
            write_wav(base / rel, tone.astype(np.int16))
            split = "test" if n == 0 else "validation" if n == 1 else "train"
            files[split].append(rel)
    (base / "testing_list.txt").write_text("\n".join(files["test"]) + "\n")
    (base / "validation_list.txt").write_text("\n".join(files["validation"]) + "\n")
    noise = base / "_background_noise_"
    write_wav(noise / "white_noise.wav", rng.integers(-3000, 3000, size=16000 * 3))
    write_wav(noise / "running_tap.wav", rng.integers(-1000, 1000, size=int(16000 * 1.5)))
    (noise / "README.md").write_text("background noise clips\n")
    (base / "LICENSE").write_text("CC BY 4.0\n")
    (base / "README.md").write_text("Speech Commands v0.01\n")
    return files


def write_vocab(path: Path, tokens: list[str]) -> Path:
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return path
