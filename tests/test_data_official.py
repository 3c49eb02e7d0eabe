"""Official-format loaders on tiny fixtures written in each release's exact on-disk layout."""

from __future__ import annotations

import hashlib
import io
import math
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_official import (
    IMAGENET_WNIDS,
    SPEECH_WORDS,
    write_cifar10,
    write_cifar10c,
    write_glue,
    write_imagenet,
    write_modelnet40,
    write_mrpc_raw,
    write_shapenet_part,
    write_speech_commands,
    write_vocab,
    write_wav,
)

from bibench.data import features as F
from bibench.data import official as O
from bibench.data.downloads import DOWNLOADS, MANUAL, ChecksumError, fetch, install, verify
from bibench.data.official import images as official_images
from bibench.data.official import speech as official_speech

# ---------------------------------------------------------------------------------------------
# CIFAR-10


def test_cifar10_layout_and_labels(tmp_path):
    raw = write_cifar10(tmp_path, n_per_batch=4)
    data = O.load_official("cifar10", tmp_path)
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (4, 3, 32, 32)
    assert data.x_train.dtype == torch.float32 and 0 <= data.x_train.min() <= 1
    # row = 1024 R, 1024 G, 1024 B, each plane row-major: pixel (c, h, w) at c*1024 + h*32 + w
    row = raw["data_batch_2"][1]
    x = data.x_train[4 + 1]
    for c, h, w in [(0, 0, 0), (1, 5, 7), (2, 31, 30), (0, 31, 0)]:
        assert x[c, h, w].item() == pytest.approx(row[c * 1024 + h * 32 + w] / 255.0)
    labels = np.concatenate([raw[f"data_batch_{i}_labels"] for i in range(1, 6)])
    assert data.y_train.tolist() == labels.tolist()
    assert data.y_test.tolist() == raw["test_batch_labels"].tolist()
    assert data.num_classes == 10 and data.metric == "accuracy" and not data.embedded
    assert O.cifar10_class_names(tmp_path)[0] == "airplane"
    # the dataset folder itself is accepted as root too
    assert O.load_cifar10(tmp_path / "cifar-10-batches-py").x_test.shape[0] == 4


def test_cifar10_max_train_reads_only_needed_batches(tmp_path, monkeypatch):
    write_cifar10(tmp_path, n_per_batch=4)
    read = []
    original = official_images._read_cifar_batch
    monkeypatch.setattr(official_images, "_read_cifar_batch",
                        lambda p: read.append(p.name) or original(p))
    data = O.load_official("cifar10", tmp_path, max_train=6, max_test=3)
    assert data.x_train.shape[0] == 6 and data.x_test.shape[0] == 3
    assert read == ["data_batch_1", "data_batch_2", "test_batch"]


def test_cifar10_missing_says_where_and_how(tmp_path):
    with pytest.raises(O.DatasetNotFoundError) as err:
        O.load_official("cifar10", tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg
    write_cifar10(tmp_path, n_per_batch=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(O.DatasetNotFoundError, match="data_batch_3"):
        O.load_official("cifar10", tmp_path)


class _Opens:
    """Unpickled by an unrestricted unpickler, creates the file `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_cifar10_files_are_unpickled_restricted_to_arrays_and_dicts(tmp_path):
    import pickle

    write_cifar10(tmp_path, n_per_batch=2)
    base = tmp_path / "cifar-10-batches-py"
    # the release was pickled by Python 2 with numpy 1: numpy.core.multiarray._reconstruct
    batch = (base / "test_batch").read_bytes()
    assert b"numpy._core.multiarray\n_reconstruct" in batch
    (base / "test_batch").write_bytes(
        batch.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    assert O.load_official("cifar10", tmp_path).x_test.shape == (2, 3, 32, 32)
    marker = tmp_path / "created-by-unpickling"
    meta = pickle.loads((base / "batches.meta").read_bytes())
    (base / "batches.meta").write_bytes(pickle.dumps({**meta, b"x": _Opens(marker)}, 2))
    with pytest.raises(ValueError, match="batches.meta: not a CIFAR-10 python file: refers to "
                                         r"(builtins|io)\.open"):
        O.cifar10_class_names(tmp_path)
    assert not marker.exists()
    (base / "data_batch_1").write_bytes(batch[: len(batch) // 2])
    with pytest.raises(ValueError, match="data_batch_1: not a CIFAR-10 python file"):
        O.load_official("cifar10", tmp_path)


# ---------------------------------------------------------------------------------------------
# CIFAR-10-C


def test_cifar10c_severity_slices(tmp_path):
    raw = write_cifar10c(tmp_path, n=6)
    for severity in (1, 3, 5):
        x, y = O.load_cifar10c(tmp_path, "fog", severity)
        ref = raw["fog"][(severity - 1) * 6:severity * 6]
        assert x.shape == (6, 3, 32, 32) and x.dtype == torch.float32
        assert torch.equal(x, torch.from_numpy(ref.transpose(0, 3, 1, 2) / 255.0).float())
        assert y.tolist() == raw["labels"][(severity - 1) * 6:severity * 6].tolist()
    x, _ = O.load_cifar10c(tmp_path, "gaussian_noise", 2, max_test=4)
    assert x.shape[0] == 4
    assert len(O.CIFAR10C_CORRUPTIONS) == 15 and len(O.CIFAR10C_EXTRA) == 4
    assert len(set(O.CIFAR10C_ALL)) == 19
    with pytest.raises(ValueError, match="severity"):
        O.load_cifar10c(tmp_path, "fog", 6)
    with pytest.raises(KeyError, match="unknown CIFAR-10-C corruption"):
        O.load_cifar10c(tmp_path, "rain", 1)
    with pytest.raises(O.DatasetNotFoundError, match="motion_blur.npy"):
        O.load_cifar10c(tmp_path, "motion_blur", 1)


def test_cifar10c_task_and_missing(tmp_path):
    write_cifar10c(tmp_path / "c", n=4)
    write_cifar10(tmp_path / "clean", n_per_batch=2)
    task = O.load_official("cifar10c", tmp_path / "c", corruption="fog", severity=2,
                           cifar10_root=tmp_path / "clean")
    assert task.x_train.shape == (10, 3, 32, 32) and task.x_test.shape == (4, 3, 32, 32)
    assert task.stands_in_for == "CIFAR-10-C"
    empty = O.load_official("cifar10c", tmp_path / "c", corruption="fog")
    assert empty.x_train.shape == (0, 3, 32, 32)
    with pytest.raises(O.DatasetNotFoundError, match="zenodo.org/records/2535967"):
        O.load_official("cifar10c", tmp_path / "nothing")


# ---------------------------------------------------------------------------------------------
# ImageNet


def test_imagenet_lazy_dataset_and_transform(tmp_path):
    from PIL import Image

    write_imagenet(tmp_path, n_train=2, n_val=1)
    train, val = O.imagenet_datasets(tmp_path)
    assert train.classes == list(IMAGENET_WNIDS) and len(train) == 6 and len(val) == 3
    x, y = train[0]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and y == 0
    # reference: shorter side 256 (bilinear), central 224 crop
    path = train.samples[0][0]
    with Image.open(path) as im:
        w, h = im.size
        nw, nh = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
        im = im.convert("RGB").resize((nw, nh), Image.Resampling.BILINEAR)
        left, top = round((nw - 224) / 2), round((nh - 224) / 2)
        ref = np.asarray(im.crop((left, top, left + 224, top + 224))) / 255.0
    assert torch.allclose(x, torch.from_numpy(ref.transpose(2, 0, 1)).float(), atol=1e-6)
    small = O.ImageFolderDataset(tmp_path / "imagenet" / "val", resize=40, crop=32)
    assert small[0][0].shape == (3, 32, 32)


def test_imagenet_decodes_only_what_is_asked(tmp_path, monkeypatch):
    write_imagenet(tmp_path, n_train=3, n_val=2)
    calls = []
    original = O.ImageFolderDataset.__getitem__
    monkeypatch.setattr(O.ImageFolderDataset, "__getitem__",
                        lambda self, i: calls.append(i) or original(self, i))
    data = O.load_official("imagenet", tmp_path, max_train=3, max_test=2, resize=36, crop=32)
    assert len(calls) == 5
    assert data.x_train.shape == (3, 3, 32, 32) and data.num_classes == 3
    assert sorted(data.y_train.tolist()) == [0, 1, 2]  # class-balanced prefix
    with pytest.raises(MemoryError, match="max_train"):
        O.load_official("imagenet", tmp_path, max_bytes=1000)


def test_imagenet_missing_explains_manual_download(tmp_path):
    with pytest.raises(O.DatasetNotFoundError, match="not freely downloadable"):
        O.load_official("imagenet", tmp_path)


# ---------------------------------------------------------------------------------------------
# ModelNet40 / ShapeNet part


def test_modelnet40(tmp_path):
    raw = write_modelnet40(tmp_path, n_per_file=3)
    data = O.load_official("modelnet40", tmp_path)
    assert data.x_train.shape == (15, 3, 1024) and data.x_test.shape == (6, 3, 1024)
    assert torch.equal(data.x_train, torch.from_numpy(
        raw["train_data"][:, :1024].transpose(0, 2, 1).copy()))
    assert data.y_train.tolist() == raw["train_label"].ravel().tolist()
    assert data.y_train.dtype == torch.int64 and data.num_classes == 40
    few = O.load_official("modelnet40", tmp_path, num_points=2048, max_train=4, max_test=0)
    assert few.x_train.shape == (4, 3, 2048) and few.x_test.shape == (0, 3, 2048)
    with pytest.raises(O.DatasetNotFoundError, match="modelnet40_ply_hdf5_2048.zip"):
        O.load_official("modelnet40", tmp_path / "missing")
    (tmp_path / "modelnet40_ply_hdf5_2048" / "ply_data_test1.h5").unlink()
    with pytest.raises(O.DatasetNotFoundError, match="ply_data_test1.h5"):
        O.load_official("modelnet40", tmp_path)


def test_shapenet_part(tmp_path):
    raw = write_shapenet_part(tmp_path, n_per_file=3)
    data = O.load_official("shapenet_part", tmp_path)
    assert data.task_type == "segmentation" and data.metric == "miou_shapenet"
    assert data.num_classes == 50 == O.SHAPENET_NUM_PARTS
    assert data.x_train.shape == (9, 3, 2048) and data.y_train.shape == (9, 2048)
    assert data.x_test.shape == (3, 3, 2048)
    assert data.y_test.tolist() == raw["test_pid"].astype(np.int64).tolist()
    # categories recoverable from the part ids, consistent with the file's label
    assert O.PART_TO_CATEGORY[data.y_test[:, 0]].tolist() == raw["test_label"].tolist()
    assert sum(len(v) for v in O.SHAPENET_PART_SEG_CLASSES.values()) == 50
    no_val = O.load_official("shapenet_part", tmp_path, include_val=False, num_points=512,
                             category_onehot=True)
    assert no_val.x_train.shape == (6, 3 + 16, 512) and no_val.y_train.shape == (6, 512)
    onehot = no_val.x_train[:, 3:, 0]
    assert onehot.argmax(1).tolist() == raw["train_label"].tolist()
    c_tr, c_te = O.shapenet_part_categories(tmp_path)
    assert len(c_tr) == 9 and c_te.tolist() == raw["test_label"].tolist()


def test_part_miou():
    y = torch.tensor([[0, 0, 1, 1], [4, 5, 5, 5]])  # an airplane, a bag
    assert O.part_miou(y.clone(), y) == (1.0, 1.0)
    pred = torch.tensor([[0, 0, 0, 1], [4, 5, 5, 5]])
    # airplane: part0 IoU 2/3, part1 1/2, parts 2,3 absent -> 1 each: (2/3+1/2+2)/4
    inst, cls = O.part_miou(pred, y)
    plane = (2 / 3 + 1 / 2 + 2) / 4
    assert inst == pytest.approx((plane + 1) / 2) and cls == pytest.approx((plane + 1) / 2)
    logits = torch.zeros(2, 50, 4)
    logits[:, 49] = 10.0  # a table part is best overall but not allowed for these shapes
    logits[0, 0], logits[1, 4] = 1.0, 1.0
    inst, _ = O.part_miou(logits, y)
    assert 0 < inst < 1


# ---------------------------------------------------------------------------------------------
# WordPiece tokenizer


TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "un", "##aff", "##able", "run",
              "##ning", ",", "!", "cafe", "want", "##ed", "a"]


def test_wordpiece_hand_computed():
    vocab = {t: i for i, t in enumerate(TINY_VOCAB)}
    tok = O.bert_tokenizer(vocab, max_length=16)

    def pieces(text: str) -> list[str]:
        return [t for t in tok.encode(text, add_special_tokens=False).tokens if t != "[PAD]"]

    assert pieces("The UNaffable Café, running!") == [
        "the", "un", "##aff", "##able", "cafe", ",", "run", "##ning", "!"]
    assert pieces("unaffablex wanted") == ["[UNK]", "want", "##ed"]
    ids = O.encode(tok, ["The UNaffable Café, running!"], ["wanted xyz"])
    assert ids.dtype == torch.int64
    assert ids.tolist() == [[2, 4, 5, 6, 7, 12, 10, 8, 9, 11, 3, 13, 14, 1, 3, 0]]
    # longest-first truncation: a (9 tokens) shrinks to 4 before b (3 tokens) is touched
    short = O.bert_tokenizer(vocab, max_length=10)
    assert O.encode(short, ["The UNaffable Café, running!"], ["wanted xyz"]).tolist() == [
        [2, 4, 5, 6, 7, 3, 13, 14, 1, 3]]
    assert O.encode(O.bert_tokenizer(vocab, max_length=4), ["the the the"]).tolist() == [
        [2, 4, 4, 3]]
    with pytest.raises(ValueError, match="special tokens"):
        O.bert_tokenizer({"the": 0, "[UNK]": 1}, max_length=8)


# ---------------------------------------------------------------------------------------------
# GLUE


@pytest.fixture
def glue_root(tmp_path):
    write_glue(tmp_path)
    words = ["the", "a", "is", "man", "plane", "taking", "off", ".", "sailor", "left", "\"",
             "he", "said", "stated"]
    write_vocab(tmp_path / "vocab.txt", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])
    return tmp_path


@pytest.mark.parametrize("task,n_train,n_test,metric,num_classes", [
    ("cola", 3, 2, "mcc", 2), ("sst2", 3, 1, "accuracy", 2), ("mrpc", 2, 1, "f1", 2),
    ("stsb", 2, 1, "pearson_spearman", 1), ("qqp", 2, 1, "f1", 2),
    ("mnli", 3, 1, "accuracy", 3), ("qnli", 2, 1, "accuracy", 2),
    ("rte", 2, 1, "accuracy", 2), ("wnli", 2, 1, "accuracy", 2)])
def test_glue_tasks(glue_root, task, n_train, n_test, metric, num_classes):
    data = O.load_official(f"glue_{task}", glue_root, max_length=24)
    assert data.x_train.shape == (n_train, 24) and data.x_test.shape == (n_test, 24)
    assert data.x_train.dtype == torch.int64 and data.x_train[:, 0].eq(2).all()
    assert data.metric == metric and data.num_classes == num_classes
    sep_counts = (data.x_train == 3).sum(1)
    pair = O.GLUE_TASKS[task].b is not None
    assert sep_counts.eq(2 if pair else 1).all()
    if task == "stsb":
        assert data.task_type == "regression" and data.y_train.dtype == torch.float32
        assert data.y_train.tolist() == pytest.approx([5.0, 3.8])
    else:
        assert data.task_type == "classification" and data.y_train.dtype == torch.int64
    assert set(O.GLUE_TASKS["mrpc"].metrics) == {"f1", "accuracy"}


def test_glue_labels_and_text(glue_root):
    cola = O.load_glue(glue_root, "CoLA", max_length=32)
    assert cola.y_train.tolist() == [1, 0, 1] and cola.y_test.tolist() == [0, 1]
    # the quote char survives (no CSV quoting): [CLS] the " [UNK] " sailor left . [SEP]
    quote = cola.x_train[2].tolist()
    assert quote[:9] == [2, 5, 15, 1, 15, 13, 14, 12, 3]
    mnli = O.load_glue(glue_root, "mnli")
    assert mnli.y_train.tolist() == [2, 1, 0]  # neutral, entailment, contradiction
    assert mnli.y_test.tolist() == [2]
    mism = O.load_glue(glue_root, "mnli", test_file="dev_mismatched.tsv")
    assert mism.y_test.tolist() == [0]
    assert O.load_glue(glue_root, "rte").y_train.tolist() == [1, 0]
    sts = O.load_glue(glue_root, "stsb", max_length=16)
    # [CLS] a plane is taking off . [SEP] [UNK] [UNK] plane is taking off . [SEP]
    assert sts.x_train[0, :16].tolist() == [2, 6, 9, 7, 10, 11, 12, 3, 1, 1, 9, 7, 10, 11, 12, 3]


def test_glue_mrpc_from_microsoft_files(tmp_path):
    write_mrpc_raw(tmp_path)
    write_vocab(tmp_path / "vocab.txt", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "he"])
    data = O.load_official("glue_mrpc", tmp_path)
    assert data.y_train.tolist() == [1, 1] and data.y_test.tolist() == [0]
    (tmp_path / "MRPC" / "dev_ids.tsv").unlink()
    data = O.load_official("glue_mrpc", tmp_path)
    assert data.y_train.tolist() == [1, 0, 1] and data.y_test.tolist() == [1]


def test_glue_missing(tmp_path):
    with pytest.raises(O.DatasetNotFoundError, match="dl.fbaipublicfiles.com/glue/data/RTE.zip"):
        O.load_official("glue_rte", tmp_path)
    write_glue(tmp_path)
    with pytest.raises(O.DatasetNotFoundError, match="vocab"):
        O.load_glue(tmp_path, "rte", vocab=tmp_path / "nope.txt")


# ---------------------------------------------------------------------------------------------
# Speech features


def _np_mel_filterbank(n_mels, n_fft, sr, f_min, f_max):
    """Reference written from the HTK formula, loop by loop."""
    def mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    m_lo, m_hi = mel(f_min), mel(f_max)
    pts = [hz(m_lo + (m_hi - m_lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    fb = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        lo, c, hi = pts[m], pts[m + 1], pts[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            if lo < f <= c:
                fb[m, k] = (f - lo) / (c - lo)
            elif c < f < hi:
                fb[m, k] = (hi - f) / (hi - c)
    return fb


def test_mel_filterbank_matches_numpy_reference():
    for n_mels, f_min, f_max in [(40, 20.0, 4000.0), (26, 0.0, 8000.0)]:
        fb = F.mel_filterbank(n_mels, 512, 16000, f_min, f_max)
        ref = _np_mel_filterbank(n_mels, 512, 16000, f_min, f_max)
        assert fb.shape == (n_mels, 257)
        np.testing.assert_allclose(fb.numpy(), ref, atol=1e-6)
    assert float(F.hz_to_mel(1000.0)) == pytest.approx(999.99, abs=0.01)  # HTK: 1 kHz ~ 1000
    assert float(F.mel_to_hz(F.hz_to_mel(3210.0))) == pytest.approx(3210.0)


def test_mel_filterbank_properties():
    fb = F.mel_filterbank(40, 512, 16000, 20.0, 4000.0)
    assert (fb >= 0).all() and fb.max() <= 1.0
    freqs = torch.arange(257) * 16000 / 512
    assert fb[:, freqs > 4000].abs().sum() == 0 and fb[:, freqs < 20].abs().sum() == 0
    assert (fb.sum(1) > 0).all()  # no empty filter at this resolution
    peaks = fb.argmax(1)
    assert (peaks[1:] >= peaks[:-1]).all()  # centres increase with the band index


def test_dct_and_mfcc():
    d = F.dct_matrix(40, 40).double()
    assert torch.allclose(d @ d.T, torch.eye(40, dtype=torch.float64), atol=1e-5)
    x = np.random.default_rng(0).normal(size=40)
    n = np.arange(40)
    ref = np.array([np.sum(x * np.cos(np.pi * k * (2 * n + 1) / 80)) for k in range(13)])
    ref *= np.sqrt(2 / 40)
    ref[0] /= np.sqrt(2)
    np.testing.assert_allclose(F.dct_matrix(13, 40).double().numpy() @ x, ref, atol=1e-5)
    const = F.dct_matrix(13, 40) @ torch.full((40,), 2.0)
    assert const[0] == pytest.approx(2.0 * math.sqrt(40)) and const[1:].abs().max() < 1e-4
    wave = torch.randn(2, 16000)
    m = F.mfcc(wave, n_mfcc=13)
    assert m.shape == (2, 98, 13)
    assert torch.allclose(m, F.log_mel(wave) @ F.dct_matrix(13, 40).T, atol=1e-4)


def test_log_mel_spectrogram():
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * math.pi * 1000 * t)
    spec = F.power_spectrogram(tone)
    assert spec.shape == (98, 257) and F.num_frames(16000) == 98
    frame = tone[160 * 5:160 * 5 + 480].numpy() * np.hanning(481)[:480]  # periodic Hann
    ref = np.abs(np.fft.rfft(frame, 512)) ** 2
    np.testing.assert_allclose(spec[5].numpy(), ref, rtol=1e-3, atol=1e-3)
    lm = F.log_mel(tone)
    assert lm.shape == (98, 40)
    centres = F.mel_to_hz(torch.linspace(float(F.hz_to_mel(20.0)), float(F.hz_to_mel(4000.0)),
                                         42))[1:-1]
    best = int(lm.mean(0).argmax())
    assert abs(float(centres[best]) - 1000) < 80  # the band around 1 kHz lights up
    assert torch.allclose(F.log_mel(torch.zeros(16000)), torch.full((98, 40), math.log(1e-6)))


# ---------------------------------------------------------------------------------------------
# Speech Commands


def test_read_wav_and_fix_length(tmp_path):
    write_wav(tmp_path / "a.wav", np.array([0, 16384, -32768, 32767], dtype=np.int16))
    s = official_speech.read_wav(tmp_path / "a.wav")
    assert s.tolist() == pytest.approx([0.0, 0.5, -1.0, 32767 / 32768])
    assert official_speech.fix_length(s, 6).tolist()[4:] == [0.0, 0.0]
    assert len(official_speech.fix_length(np.ones(20000), 16000)) == 16000
    write_wav(tmp_path / "b.wav", np.zeros(10, dtype=np.int16), rate=8000)
    with pytest.raises(ValueError, match="16000 Hz"):
        official_speech.read_wav(tmp_path / "b.wav")


def test_speech_commands(tmp_path):
    files = write_speech_commands(tmp_path, clips_per_word=4)
    data = O.load_official("speech_commands", tmp_path)
    # train: clips 2, 3 of the 10 words (20) + ceil(10%)=2 unknown + 2 silence
    assert data.x_train.shape == (24, 98, 40) and data.x_train.dtype == torch.float32
    # test: clip 0 of each word (10) + 1 unknown + 1 silence
    assert data.x_test.shape == (12, 98, 40)
    assert data.num_classes == 12 and O.KWS_LABELS[:2] == ("_silence_", "_unknown_")
    counts = torch.bincount(data.y_train, minlength=12).tolist()
    assert counts == [2, 2] + [2] * 10
    assert torch.bincount(data.y_test, minlength=12).tolist() == [1, 1] + [1] * 10
    # a "yes" test clip: features equal the log-mel of the padded wav
    _, index = official_speech.speech_commands_index(tmp_path)
    k = next(i for i, (rel, _) in enumerate(index["test"]) if rel == files["test"][0])
    wav = official_speech.fix_length(official_speech.read_wav(
        tmp_path / "speech_commands_v0.01" / files["test"][0]))
    assert torch.allclose(data.x_test[k], F.log_mel(torch.from_numpy(wav)), atol=1e-5)
    assert O.KWS_LABELS[int(data.y_test[k])] == "yes" == SPEECH_WORDS[0]
    again = O.load_official("speech_commands", tmp_path)
    assert torch.equal(again.x_train, data.x_train)  # silence draws are seeded


def test_speech_commands_options_and_missing(tmp_path, monkeypatch):
    write_speech_commands(tmp_path, clips_per_word=3)
    reads = []
    original = official_speech.read_wav
    monkeypatch.setattr(official_speech, "read_wav", lambda p: reads.append(p) or original(p))
    data = O.load_official("speech_commands", tmp_path, feature="mfcc", n_mfcc=13,
                           max_train=5, max_test=3, test_split="validation")
    assert data.x_train.shape == (5, 98, 13) and data.x_test.shape == (3, 98, 13)
    assert len([p for p in reads if "_background_noise_" not in str(p)]) <= 8
    with pytest.raises(O.DatasetNotFoundError, match="speech_commands_v0.01.tar.gz"):
        O.load_official("speech_commands", tmp_path / "none")


# ---------------------------------------------------------------------------------------------
# Downloads


def test_download_table():
    expected = {
        "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "modelnet40": "https://shapenet.cs.stanford.edu/media/modelnet40_ply_hdf5_2048.zip",
        "shapenet_part": "https://shapenet.cs.stanford.edu/media/shapenet_part_seg_hdf5_data.zip",
        "speech_commands": "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz",
        "glue_rte": "https://dl.fbaipublicfiles.com/glue/data/RTE.zip",
    }
    for name, url in expected.items():
        assert DOWNLOADS[name]["url"] == url
    assert "2535967" in DOWNLOADS["cifar10c"]["url"]
    for name, entry in DOWNLOADS.items():
        for part in entry.get("files", [entry]):
            assert set(part) >= {"url", "sha256", "archive"}, name
            assert part["sha256"] is None or len(part["sha256"]) == 64
        assert "extract_to" in entry and "provides" in entry
    assert {f"glue_{t}" for t in O.GLUE_TASKS} <= set(DOWNLOADS)
    assert "imagenet" in MANUAL and "imagenet" not in DOWNLOADS


def _tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    return path


def test_install_verifies_and_extracts(tmp_path):
    archive = _tar_gz(tmp_path / "ds.tar.gz", {"ds/a.txt": b"hello", "ds/sub/b.txt": b"x"})
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    dest = tmp_path / "root"
    dest.mkdir()
    with pytest.raises(ChecksumError):
        install(archive, {"sha256": "0" * 64, "archive": "ds.tar.gz"}, dest)
    assert list(dest.iterdir()) == []  # nothing extracted, no temp left
    install(archive, {"sha256": digest, "archive": "ds.tar.gz"}, dest)
    assert (dest / "ds" / "sub" / "b.txt").read_bytes() == b"x"
    assert sorted(p.name for p in dest.iterdir()) == ["ds"]
    with pytest.raises(FileExistsError):
        install(archive, {"sha256": digest, "archive": "ds.tar.gz"}, dest)
    # flat archive (Speech Commands has no top folder): extracted into extract_to as a whole
    flat = _tar_gz(tmp_path / "flat.tar.gz", {"yes/1.wav": b"1", "testing_list.txt": b"t"})
    install(flat, {"sha256": None, "archive": "flat.tar.gz"}, dest, "sc", flat=True)
    assert (dest / "sc" / "yes" / "1.wav").exists()


def test_verify_records_unknown_hash_and_md5(tmp_path):
    f = tmp_path / "x.zip"
    f.write_bytes(b"first")
    digest = verify(f, None)
    assert (tmp_path / "x.zip.sha256").read_text().split()[0] == digest
    f.write_bytes(b"changed")
    with pytest.raises(ChecksumError):
        verify(f, None)
    g = tmp_path / "y.bin"
    g.write_bytes(b"abc")
    verify(g, hashlib.sha256(b"abc").hexdigest(), hashlib.md5(b"abc").hexdigest())
    with pytest.raises(ChecksumError, match="md5"):
        verify(g, None, "0" * 32)


def test_zip_rejects_unsafe_paths(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil.txt", "x")
    (tmp_path / "root").mkdir()
    with pytest.raises(ValueError, match="unsafe"):
        install(archive, {"sha256": None, "archive": "evil.zip"}, tmp_path / "root")
    assert not (tmp_path / "evil.txt").exists()


def test_fetch_offline_with_cached_archive(tmp_path, monkeypatch):
    """fetch() with the archive already in <root>/.downloads: verify + extract, no network."""
    root = tmp_path / "root"
    (root / ".downloads").mkdir(parents=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n")
    (root / ".downloads" / "RTE.zip").write_bytes(buf.getvalue())
    entry = {**DOWNLOADS["glue_rte"], "sha256": hashlib.sha256(buf.getvalue()).hexdigest()}
    monkeypatch.setitem(DOWNLOADS, "glue_rte", entry)

    def no_network(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    out = fetch("glue_rte", root)
    assert out == root / "glue_data" / "RTE" and (out / "train.tsv").exists()
    assert fetch("glue_rte", root) == out  # already there: nothing to do
    with pytest.raises(ValueError, match="not freely downloadable"):
        fetch("imagenet", root)
