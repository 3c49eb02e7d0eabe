"""`bibench status` never contradicts `snakemake -n` (issue 27), on the tiny grid.

Each test puts its own copy of the finished tiny run into one state (as copied, code edited in
the copy, damaged files, times changed with the contents kept, deleted files), asks
`snakemake -n` which jobs it would run and `bibench status` which cells are stale or damaged,
and compares: a cell (or the aggregate tables, or the report) is stale or damaged exactly when
the dry run plans one of its jobs. Status runs as a user runs it in a copied checkout: the
installed package, not the copy's put first on the path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Workflow

pytestmark = pytest.mark.workflow

BNN = "results/cells/mnist/resnet20/bnn/seed0/"
RERUN = {"stale", "damaged"}


def _owner(path: str) -> str:
    """The line of `bibench status` a planned output belongs to."""
    if match := re.match(r"results/cells/([^/]+/[^/]+/[^/]+/seed\d+)/", path):
        return match.group(1)
    if match := re.match(r"results/pretrain/([^/]+)/([^/]+)/(seed\d+)/", path):
        return f"{match.group(1)}/{match.group(2)}/fp32/{match.group(3)}"
    if match := re.match(r"results/(sensitivity/.+)\.parquet$", path):
        return match.group(1)
    return {"results/report.html": "report"}.get(path, "aggregate")


def _planned(wf: Workflow) -> set[str]:
    return {_owner(f.strip()) for line in wf.planned_outputs() for f in line.split(",")}


def _status(wf: Workflow, installed: bool = True) -> dict[str, dict]:
    # the installed bibench (-P: not the copy in the working folder), as the `bibench`
    # command runs in a copied checkout; else the copy's
    env = {k: v for k, v in wf.env.items() if k != "PYTHONPATH" or not installed}
    proc = subprocess.run(
        [sys.executable, "-P", "-c", "import sys; from bibench.cli import main; sys.exit(main())",
         "status", "--configfile", "tiny.yaml", "--json"],
        cwd=wf.root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {s["cell"]: s for s in json.loads(proc.stdout)}


def _agree(wf: Workflow) -> dict[str, dict]:
    """Both verdicts on the copy's state; they must name the same cells."""
    planned = _planned(wf)
    status = _status(wf)
    rerun = {name for name, s in status.items() if s["state"] in RERUN}
    shown = {name: (s["state"], s["why"]) for name, s in status.items()
             if name in rerun ^ planned}
    assert rerun == planned, f"snakemake -n plans {sorted(planned)}; status: {shown}"
    return status


@pytest.fixture
def copy(tiny_run, tmp_path) -> Workflow:
    return Workflow.clone(tiny_run, tmp_path / "wf")


def test_a_copy_with_its_times_kept_is_up_to_date_for_both(copy):
    status = _agree(copy)
    assert {s["state"] for s in status.values()} <= {"up to date", "at chance"}, status
    assert {"aggregate", "report"} <= status.keys()


def test_code_edited_in_a_copied_checkout_is_the_code_status_fingerprints(copy):
    # the copy's Snakefile imports the copy's bibench: so must status, though the bibench
    # installed in the environment is the checkout the tests run from
    source = copy.root / "bibench" / "algorithms" / "bnn.py"
    source.write_text(source.read_text() + "\n# edited\n")
    status = _agree(copy)
    binarized = {name for name in status if "/bnn/" in name}
    assert binarized and all(status[n]["state"] == "stale" for n in binarized)
    assert "code changed (binarize_finetune)" in status["digits/resnet20/bnn/seed0"]["why"]
    assert status["mnist/resnet20/fp32/seed0"]["state"] in ("up to date", "at chance")


def test_damaged_files_are_damaged_for_status_and_recomputed_by_the_run(copy):
    damaged = {
        BNN + "eval.parquet": lambda data: data[: len(data) // 2],
        "results/cells/digits/resnet20/bnn/seed1/model.pt": lambda data: data[: len(data) // 2],
        "results/metrics.parquet": lambda data: b"",
    }
    for rel, damage in damaged.items():
        path = copy.root / rel
        path.write_bytes(damage(path.read_bytes()))
    proc = copy.snakemake("-n")
    out = proc.stdout + proc.stderr
    assert "recomputing 3 damaged result(s)" in out, out  # all of them, before any job
    assert all(rel in out for rel in damaged)
    status = _agree(copy)
    for name, rel in [("mnist/resnet20/bnn/seed0", BNN + "eval.parquet"),
                      ("digits/resnet20/bnn/seed1", "results/cells/digits/resnet20/bnn/seed1/"
                                                    "model.pt"),
                      ("aggregate", "results/metrics.parquet")]:
        assert status[name]["state"] == "damaged", status[name]
        assert any(w.startswith(f"damaged file {rel}: ") for w in status[name]["why"])
    # the empty metrics table hides the at-chance marks: status says so
    assert any("at-chance marks are unknown" in w for w in status["aggregate"]["why"])


def test_times_changed_with_the_contents_kept_change_nothing_for_either(copy):
    # a newer input of the same content (Snakemake compares its recorded checksum), and a
    # directory output whose own time is older than its input (Snakemake times it by its
    # .snakemake_timestamp): neither is stale
    export = copy.root / BNN / "export.parquet"
    os.utime(export, None)
    os.utime(copy.root / BNN / "openvino", (0, 0))
    status = _agree(copy)
    assert status["mnist/resnet20/bnn/seed0"]["state"] in ("up to date", "at chance")


def test_deleted_files_are_stale_for_both_with_what_depends_on_them(copy):
    (copy.root / "results/pretrain/mnist/resnet20/seed0/model.pt").unlink()
    (copy.root / "results/cells/digits/resnet20/fp32/seed1/eval.parquet").unlink()
    status = _agree(copy)
    # the binarized cells of every seed start from the deleted model: they are retrained
    for seed in (0, 1):
        assert status[f"mnist/resnet20/bnn/seed{seed}"]["why"][0] == (
            "input recomputed first (binarize_finetune: model.pt)"), status
    # the model is the FP32 cell of every seed (pretrain_seed: 0)
    assert status["mnist/resnet20/fp32/seed1"]["state"] == "stale"
    assert status["digits/resnet20/fp32/seed1"]["why"][0] == (
        "missing file results/cells/digits/resnet20/fp32/seed1/eval.parquet")
    assert status["digits/resnet20/fp32/seed0"]["state"] in ("up to date", "at chance")


def test_without_a_snakefile_status_judges_by_the_files_alone(copy):
    # results copied away from their workflow: no run to agree with, the files still say
    (copy.root / BNN / "eval.parquet").write_bytes(b"")
    (copy.root / "Snakefile").rename(copy.root / "Snakefile.away")
    status = _status(copy, installed=False)
    assert status["mnist/resnet20/bnn/seed0"]["state"] == "damaged"
    assert status["mnist/resnet20/fp32/seed0"]["state"] in ("up to date", "at chance")
    assert status["aggregate"]["why"] == [  # its input is newer than it
        f"input newer than output (aggregate: {BNN}eval.parquet)"]


def test_status_in_a_copy_hands_over_to_that_copys_package(workflow_copy, monkeypatch):
    # in-process: the CLI hands over to the copy's own bibench before it reads anything
    from bibench import cli

    calls = []
    monkeypatch.setattr(cli, "_status_with", lambda package, args: calls.append(package) or 0)
    copy = workflow_copy
    assert cli.main(["status", "-d", str(copy.root), "--configfile", "tiny.yaml"]) == 0
    assert calls == [(copy.root / "bibench").resolve()]
    assert Path(cli.__file__).resolve().parent != calls[0]
