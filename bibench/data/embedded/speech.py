"""Offline stand-in for Speech Commands: real speech features (JapaneseVowels, read from the .ts
files that ship in the `sktime` wheel, parsed here without importing sktime).

The split is the data set's official one, shuffled once (seed 0); parsed arrays are cached in
memory and each load builds fresh tensors, so callers may modify what they get.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from bibench.data import TaskData, register_dataset
from bibench.data.embedded.common import SEED, make_task, package_dir

# JapaneseVowels (UCI), 9 speakers, 12 LPC cepstrum coefficients per frame
SPEECH_FRAMES = 29


def parse_ts(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """Read a sktime/aeon `.ts` file: a list of (T_i, D) series and their class labels."""
    series, labels = [], []
    in_data = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                in_data = line.lower().startswith("@data")
                continue
            *dims, label = line.split(":")
            values = [np.array(d.split(","), dtype=np.float64) for d in dims]
            series.append(np.stack(values, axis=1))  # (T, D)
            labels.append(label.strip())
    return series, labels


def japanese_vowels_dir() -> Path:
    return package_dir("sktime") / "datasets" / "data" / "JapaneseVowels"


@functools.lru_cache(maxsize=2)
def _speech_arrays(frames: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    folder = japanese_vowels_dir()
    tr_series, tr_labels = parse_ts(folder / "JapaneseVowels_TRAIN.ts")
    te_series, te_labels = parse_ts(folder / "JapaneseVowels_TEST.ts")
    # standardise each coefficient with the statistics of the real (unpadded) training frames
    train_frames = np.concatenate(tr_series)
    mean, std = train_frames.mean(0), train_frames.std(0)

    def fixed(series: list[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(series), frames, series[0].shape[1]), dtype=np.float32)
        for i, s in enumerate(series):
            s = ((s - mean) / std)[:frames]
            out[i, : len(s)] = s  # zero padding at the end == the training mean
        return out

    x = np.concatenate([fixed(tr_series), fixed(te_series)])
    y = np.array([int(v) - 1 for v in tr_labels + te_labels], dtype=np.int64)
    return x, y, len(tr_series), len(te_series)


@register_dataset(
    "speech_embedded",
    "JapaneseVowels (UCI, sktime wheel): 640 real utterances of 9 speakers, 29 frames x 12 LPC "
    "cepstrum coefficients; stands in for Speech Commands",
)
def speech_embedded(frames: int = SPEECH_FRAMES) -> TaskData:
    """Official split (270 train / 370 test); order shuffled once (seed 0) within each split."""
    x, y, n_train, n_test = _speech_arrays(frames)
    rng = np.random.default_rng(SEED)
    train_idx = rng.permutation(n_train)
    test_idx = n_train + rng.permutation(n_test)
    return make_task(
        "speech_embedded", x, y, train_idx, test_idx, num_classes=9, metric="accuracy",
        stands_in_for="Speech Commands",
        source="JapaneseVowels (UCI; Kudo et al. 1999), .ts files of the sktime wheel: 9 "
               "speakers, 12 LPC cepstrum coefficients per frame, lengths 7-29 zero-padded to "
               f"{frames}, standardised with training statistics; official 270/370 split",
    )

