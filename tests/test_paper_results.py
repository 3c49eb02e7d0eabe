"""The paper's numbers file: every row checked against the paper's text (where present), values
spot-checked independently, and the matching to our tasks."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest

from bibench.report.paper import cell_row, paper_table, spearman, track_row

REPO = Path(__file__).resolve().parent.parent


def _paper_text() -> Path:
    """The paper's text in Markdown (not committed): $BIBENCH_PAPER, else
    shared/paper/bibench-paper.md in the checkout or beside it."""
    if os.environ.get("BIBENCH_PAPER"):
        return Path(os.environ["BIBENCH_PAPER"])
    places = [folder / "shared" / "paper" / "bibench-paper.md" for folder in (REPO, REPO.parent)]
    return next((p for p in places if p.exists()), places[0])


PAPER = _paper_text()


def _value(table: str, row: str, algorithm: str) -> float:
    t = paper_table()
    hit = t[(t["table"] == table) & (t["row"] == row) & (t["algorithm"] == algorithm)]
    assert len(hit) == 1, (table, row, algorithm)
    return float(hit["value"].iloc[0])


@pytest.mark.parametrize(("table", "row", "algorithm", "expected"), [
    ("Table 2", "CIFAR10", "recu", 96.72),
    ("Table 2", "OM_task", "reactnet", 81.81),
    ("Table 2", "OM_arch", "fda", 81.36),
    ("Table 2", "OM_corr", "dorefa", 81.43),
    ("Table 3", "Sensitivity", "xnor", 175.53),
    ("Table 3", "OM_comp", "bnn", 12.94),
    ("Table 3", "OM_infer", "reactnet", 11.51),
    ("Table 7", "CIFAR10 ResNet20", "fp32", 91.99),
    ("Table 7", "CIFAR10 ResNet20", "bnn", 85.31),
    ("Table 7", "ModelNet40 PointNet", "bnn", 9.08),
    ("Table 8", "ShapeNet PointNet Overall", "fda", 58.68),
    ("Table 9", "SST-2 BERT-Tiny6L", "xnorpp", 69.38),
    ("Table 9", "Speech Commands D-FSMN", "fda", 93.91),
    ("Table 9", "CoLA BERT-Base", "xnor", 0.0),
])
def test_spot_checked_values(table, row, algorithm, expected):
    assert _value(table, row, algorithm) == expected


def test_not_deployable_is_no_value():
    assert math.isnan(_value("Table 3", "OM_infer", "xnor"))
    assert math.isnan(_value("Table 3", "Speedup (hardware)", "xnorpp"))


def _numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", line)]


@pytest.mark.skipif(not PAPER.exists(), reason="the paper's text is not on this machine")
def test_every_row_of_tables_2_and_7_to_9_is_a_line_of_the_paper():
    """Each transcribed row's values appear, in order, at the end of one line of the paper
    (Table 3 packs three rows per line and is checked by the spot checks)."""
    lines = [_numbers(line) for line in PAPER.read_text().splitlines() if "|" in line]
    table = paper_table()
    for (name, row), part in table.groupby(["table", "row"], sort=False):
        if name == "Table 3":
            continue
        values = list(part["value"])
        assert any(len(nums) >= len(values) and nums[-len(values):] == values
                   for nums in lines), f"{name} {row}: {values} not found in the paper"


def test_tasks_meet_the_paper_row_they_stand_for():
    # the embedded text task (MiniLM-L6 for GLUE SST-2) meets the 6-layer TinyBERT row
    row = cell_row("GLUE (SST-2)", "minilm_l6").set_index("algorithm")
    assert set(row["row"]) == {"SST-2 BERT-Tiny6L"} and row.loc["fp32", "value"] == 90.25
    assert set(cell_row("CIFAR-10", "resnet20")["row"]) == {"CIFAR10 ResNet20"}
    assert cell_row("CIFAR-10", "no_such_arch").empty
    # detection cells meet Table 7's rows (the embedded scenes stand in for VOC07)
    assert set(cell_row("VOC07", "ssd300_vgg16_small")["row"]) == {"VOC07 SSD300"}
    assert set(cell_row("VOC07", "faster_rcnn_r18")["row"]) == {"VOC07 Faster-RCNN"}
    assert set(cell_row("COCO17", "faster_rcnn_r18")["row"]) == {"COCO14 Faster-RCNN"}
    assert set(track_row("learning_task", "relative:coco", stands_in_for="COCO17")["row"]) \
        == {"COCO17"}
    glue = track_row("learning_task", "relative:cola", stands_in_for="GLUE CoLA")
    assert set(glue["row"]) == {"GLUE"}
    assert set(track_row("hardware_inference", "OM_infer")["row"]) == {"OM_infer"}


def test_spearman_leaves_fp32_out_and_needs_three_algorithms():
    paper = {"fp32": 90.0, "bnn": 80.0, "xnor": 82.0, "dorefa": 84.0}
    assert spearman({"fp32": 1.0, "bnn": 0.5, "xnor": 0.6, "dorefa": 0.7}, paper) == (1.0, 3)
    rho, n = spearman({"bnn": 0.7, "xnor": 0.6, "dorefa": 0.5}, paper)
    assert (rho, n) == (-1.0, 3)
    rho, n = spearman({"fp32": 1.0, "bnn": 0.5}, paper)
    assert math.isnan(rho) and n == 1
