"""The speech stand-in (JapaneseVowels): shapes, official split, standardisation, the .ts
parser."""

from __future__ import annotations

import pytest
import torch
from fixtures_embedded import load

from bibench.data.embedded import speech

pytestmark = pytest.mark.usefixtures("no_network")


def test_speech():
    d = load("speech_embedded")
    assert d.stands_in_for == "Speech Commands" and "JapaneseVowels" in d.source
    assert d.x_train.shape == (270, 29, 12) and d.x_test.shape == (370, 29, 12)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.num_classes == 9 and d.metric == "accuracy" and d.task_type == "classification"
    assert d.y_train.bincount().tolist() == [30] * 9  # the official training set: 30 each
    assert d.y_test.unique().tolist() == list(range(9))
    # standardised with training statistics over real (non-padded) frames
    real = d.x_train.reshape(-1, 12)[d.x_train.reshape(-1, 12).abs().sum(1) > 0]
    assert real.mean(0).abs().max() < 1e-4
    assert (real.std(0) - 1).abs().max() < 1e-2
    # utterances have 7-29 frames; the shortest one is padded with zeros at the end
    lengths = (torch.cat([d.x_train, d.x_test]).abs().sum(2) > 0).sum(1)
    assert lengths.min() >= 7 and lengths.max() == 29


def test_speech_ts_parser(tmp_path):
    ts = tmp_path / "toy.ts"
    ts.write_text("#comment\n@problemName toy\n@data\n1,2,3:4,5,6:b\n7,8:9,10:a\n")
    series, labels = speech.parse_ts(ts)
    assert labels == ["b", "a"]
    assert series[0].tolist() == [[1, 4], [2, 5], [3, 6]]
    assert series[1].shape == (2, 2)
