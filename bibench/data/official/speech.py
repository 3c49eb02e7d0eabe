"""Google Speech Commands v0.01 (Warden, 2018) in its release layout, as 12-class KWS.

Layout: `<word>/<speaker>_nohash_<n>.wav` (16 kHz, 16-bit mono PCM), `validation_list.txt`,
`testing_list.txt` (relative paths), `_background_noise_/*.wav`. Classes follow TensorFlow's
speech_commands example: 0 `_silence_`, 1 `_unknown_`, then yes no up down left right on off
stop go. Per split, `_unknown_` gets `unknown_percentage`% (of the ten words' clip count) clips
drawn from the other 20 words, and `_silence_` gets `silence_percentage`% clips cut from the
background-noise recordings (random 1 s window, random volume in [0, 1]; train and test use
different draws). Clips are padded with zeros / trimmed to 1 s, then turned into log-mel or
MFCC features (`bibench.data.features`): x (N, T, F) float32, T = 98 for the defaults.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bibench.data import TaskData, register_dataset
from bibench.data import features as F
from bibench.data.official.common import require_files, resolve_dir, take

SPEECH_COMMANDS_DIR = "speech_commands_v0.01"
KWS_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE, UNKNOWN = "_silence_", "_unknown_"
KWS_LABELS = (SILENCE, UNKNOWN, *KWS_WORDS)
BACKGROUND_DIR = "_background_noise_"
CLIP_SAMPLES = F.SAMPLE_RATE  # 1 s


def read_wav(path: str | Path, sample_rate: int = F.SAMPLE_RATE) -> np.ndarray:
    """Mono PCM wav -> float32 samples in [-1, 1] (python's `wave` module)."""
    with wave.open(str(path), "rb") as w:
        channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        raw = w.readframes(w.getnframes())
    if channels != 1 or rate != sample_rate:
        raise ValueError(f"{path}: expected mono {sample_rate} Hz, got {channels} channel(s) "
                         f"at {rate} Hz")
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if width == 4:
        return (np.frombuffer(raw, dtype="<i4") / 2147483648.0).astype(np.float32)
    if width == 1:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    raise ValueError(f"{path}: unsupported sample width {width} bytes")


def fix_length(samples: np.ndarray, length: int = CLIP_SAMPLES) -> np.ndarray:
    """Zero-pad at the end or trim to `length` samples."""
    if len(samples) >= length:
        return samples[:length]
    return np.pad(samples, (0, length - len(samples)))


def _read_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def speech_commands_index(root: str | Path, *, silence_percentage: float = 10.0,
                          unknown_percentage: float = 10.0, seed: int = 0
                          ) -> tuple[Path, dict[str, list[tuple[str | None, int]]]]:
    """The dataset folder and, per split ("train", "validation", "test"), the shuffled list of
    (relative wav path, label) items; silence items have path None. Nothing is decoded."""
    base = resolve_dir(root, SPEECH_COMMANDS_DIR, ["validation_list.txt", "testing_list.txt"],
                       "speech_commands")
    require_files(base, [BACKGROUND_DIR, *KWS_WORDS], "speech_commands")
    validation = _read_list(base / "validation_list.txt")
    testing = _read_list(base / "testing_list.txt")
    known: dict[str, list[tuple[str, int]]] = {"train": [], "validation": [], "test": []}
    unknown: dict[str, list[tuple[str, int]]] = {"train": [], "validation": [], "test": []}
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("_")):
        label = KWS_LABELS.index(folder.name) if folder.name in KWS_WORDS else 1
        for wav in sorted(folder.glob("*.wav")):
            rel = f"{folder.name}/{wav.name}"
            split = "validation" if rel in validation else "test" if rel in testing else "train"
            (known if label != 1 else unknown)[split].append((rel, label))
    rng = np.random.default_rng(seed)
    index: dict[str, list[tuple[str | None, int]]] = {}
    for split in ("train", "validation", "test"):
        items: list[tuple[str | None, int]] = list(known[split])
        n_unknown = min(math.ceil(len(items) * unknown_percentage / 100), len(unknown[split]))
        pick = rng.permutation(len(unknown[split]))[:n_unknown]
        items += [unknown[split][i] for i in sorted(pick)]
        items += [(None, 0)] * math.ceil(len(known[split]) * silence_percentage / 100)
        index[split] = [items[i] for i in rng.permutation(len(items))]
    return base, index


class _Noise:
    """Background-noise recordings, read on first use; 1 s windows at seeded positions."""

    def __init__(self, folder: Path, seed: int) -> None:
        self.folder, self.rng, self.clips = folder, np.random.default_rng(seed), None

    def clip(self) -> np.ndarray:
        if self.clips is None:
            self.clips = [read_wav(p) for p in sorted(self.folder.glob("*.wav"))]
            self.clips = [c for c in self.clips if len(c) >= CLIP_SAMPLES]
            if not self.clips:
                raise ValueError(f"{self.folder}: no background-noise wav of at least 1 s")
        noise = self.clips[int(self.rng.integers(len(self.clips)))]
        start = int(self.rng.integers(len(noise) - CLIP_SAMPLES + 1))
        return noise[start:start + CLIP_SAMPLES] * float(self.rng.uniform(0.0, 1.0))


def _features(waves: Tensor, feature: str, n_mels: int, n_mfcc: int) -> Tensor:
    if feature == "logmel":
        return F.log_mel(waves, n_mels=n_mels)
    if feature == "mfcc":
        return F.mfcc(waves, n_mfcc=n_mfcc, n_mels=n_mels)
    if feature == "waveform":
        return waves[..., None]
    raise ValueError(f"unknown speech feature {feature!r}; known: logmel, mfcc, waveform")


def _load_split(base: Path, items: list[tuple[str | None, int]], noise: _Noise, feature: str,
                n_mels: int, n_mfcc: int, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    outs = []
    for start in range(0, len(items), chunk):
        part = items[start:start + chunk]
        waves = np.stack([fix_length(read_wav(base / rel)) if rel is not None else noise.clip()
                          for rel, _ in part])
        outs.append(_features(torch.from_numpy(waves.astype(np.float32)), feature, n_mels,
                              n_mfcc))
    if not outs:  # an empty split still has the feature shape
        outs.append(_features(torch.zeros(1, CLIP_SAMPLES), feature, n_mels, n_mfcc)[:0])
    y = torch.tensor([label for _, label in items], dtype=torch.int64)
    return torch.cat(outs), y


def load_speech_commands(root: str | Path, *, feature: str = "logmel", n_mels: int = 40,
                         n_mfcc: int = 40, silence_percentage: float = 10.0,
                         unknown_percentage: float = 10.0, test_split: str = "test",
                         seed: int = 0, max_train: int | None = None,
                         max_test: int | None = None) -> TaskData:
    """Speech Commands v0.01 as 12-class keyword spotting; only the clips asked for are read.

    Train = clips in neither list; test = `testing_list.txt` (`test_split="validation"`:
    `validation_list.txt`). Features: "logmel" (N, 98, n_mels), "mfcc" (N, 98, n_mfcc) or
    "waveform" (N, 16000, 1).
    """
    if test_split not in ("test", "validation"):
        raise ValueError(f"test_split must be 'test' or 'validation', got {test_split!r}")
    base, index = speech_commands_index(root, silence_percentage=silence_percentage,
                                        unknown_percentage=unknown_percentage, seed=seed)
    train = index["train"][:take(max_train, len(index["train"]))]
    test = index[test_split][:take(max_test, len(index[test_split]))]
    x_train, y_train = _load_split(base, train, _Noise(base / BACKGROUND_DIR, seed), feature,
                                   n_mels, n_mfcc)
    x_test, y_test = _load_split(base, test, _Noise(base / BACKGROUND_DIR, seed + 1), feature,
                                 n_mels, n_mfcc)
    return TaskData(
        name="speech_commands", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        num_classes=len(KWS_LABELS), metric="accuracy", embedded=False,
        stands_in_for="Speech Commands", source=f"{base} (Speech Commands v0.01, {feature})",
    )


# The registry (bibench.data): names and keywords literal, the workflow reads them unimported.
register_dataset("speech_commands", "Speech Commands v0.02, 12-class keyword spotting",
                 official=True)(load_speech_commands)
