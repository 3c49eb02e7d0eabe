"""The results cache never serves a stale or missing cell (issue 13), on the tiny grid.

Every test works on its own copy of the finished tiny run and counts the jobs `snakemake -n`
plans: deleting a result or editing a source file must plan exactly that result (or the jobs
that read the file) and what depends on it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import TINY_CONFIG, Workflow

pytestmark = pytest.mark.workflow

BNN = "results/cells/mnist/resnet20/bnn/seed0/"
FP32 = "results/cells/mnist/resnet20/fp32/seed0/"
SUMMARY = {"aggregate": 1, "report": 1, "all": 1}


@pytest.fixture(scope="module")
def finished(tiny_run, tmp_path_factory) -> Workflow:
    """A copy of the finished tiny run that tests change and put back."""
    return Workflow.clone(tiny_run, tmp_path_factory.mktemp("cache") / "wf")


def _jobs(**counts: int) -> dict[str, int]:
    return {**counts, **SUMMARY}


# --------------------------------------------------------------------------- deleted results


DELETIONS = {
    # the pretrained model, shared by every seed: every mnist cell of every seed (each bnn
    # cell starts from it; the fp32 cell of each seed is that model) and the timed ones
    "pretrained model": ("results/pretrain/mnist/resnet20/seed0/model.pt",
                         _jobs(pretrain=1, binarize_finetune=2, evaluate=4, latency=2)),
    "finetuned model": (BNN + "model.pt", _jobs(binarize_finetune=1, evaluate=1, latency=1)),
    "training log": (BNN + "train.parquet", _jobs(binarize_finetune=1, evaluate=1, latency=1)),
    # evaluation and export are one job: any of its outputs reruns it, and so the latency job
    "eval": (BNN + "eval.parquet", _jobs(evaluate=1, latency=1)),
    "onnx export": (BNN + "model.onnx", _jobs(evaluate=1, latency=1)),
    "openvino export": (BNN + "openvino", _jobs(evaluate=1, latency=1)),
    "export table": (BNN + "export.parquet", _jobs(evaluate=1, latency=1)),
    "complexity": (BNN + "complexity.parquet", _jobs(evaluate=1, latency=1)),
    # the FP32 model is timed beside every cell of its group
    "fp32 onnx export": (FP32 + "model.onnx", _jobs(evaluate=1, latency=2)),
    "latency": (BNN + "latency.parquet", _jobs(latency=1)),
    # a later seed's forms are checked but not timed: only its evaluation reruns
    "seed-1 export": (BNN.replace("seed0", "seed1") + "model.onnx", _jobs(evaluate=1)),
    "seed-1 fp32 export": (FP32.replace("seed0", "seed1") + "model.onnx", _jobs(evaluate=1)),
    "sensitivity run": ("results/sensitivity/digits/resnet20/bnn/adam-fast/seed0.parquet",
                        _jobs(sensitivity=1)),
    "metrics table": ("results/metrics.parquet", _jobs()),
}


def _aside(wf: Workflow, rel: str) -> tuple[Path, Path]:
    path = wf.root / rel
    hidden = wf.root / "aside" / rel
    hidden.parent.mkdir(parents=True, exist_ok=True)
    os.rename(path, hidden)  # keeps the mtime, so putting it back restores the finished run
    return path, hidden


@pytest.mark.parametrize("kind", list(DELETIONS))
def test_deleting_a_result_recomputes_it_and_what_depends_on_it(finished, kind):
    rel, expected = DELETIONS[kind]
    path, hidden = _aside(finished, rel)
    try:
        assert finished.planned_jobs() == expected
    finally:
        os.rename(hidden, path)
    assert finished.planned_jobs() == {}


def test_deleting_a_cell_folder_replans_it_for_the_report_target(finished):
    # the first finding: `rm -rf` of a cell, then results/report.html as the target
    path, hidden = _aside(finished, BNN.rstrip("/"))
    try:
        jobs = finished.planned_jobs("--configfile", "tiny.yaml", "--", "results/report.html",
                                     config=None)
    finally:
        os.rename(hidden, path)
    assert jobs == {"binarize_finetune": 1, "evaluate": 1, "latency": 1,
                    "aggregate": 1, "report": 1}


# --------------------------------------------------------------------------- code edits

# The tiny grid: 2 tasks x 1 architecture x (fp32, bnn) x its seeds; the sensitivity grid:
# digits x 2 settings x (fp32, bnn) x 1 seed.
_SEEDS = len(yaml.safe_load(TINY_CONFIG.read_text())["seeds"])
_PRETRAINED = 2  # one FP32 model per task, shared by its seeds
_TRAINED = 2 * _SEEDS  # binarize_finetune jobs (one binarized algorithm)
_CELLS = 2 * _TRAINED  # cells, fp32 and bnn
_TIMED = 2 * 2  # latency jobs: the first seed's cells only
ALL_CELLS = _jobs(pretrain=_PRETRAINED, binarize_finetune=_TRAINED, sensitivity=4,
                  evaluate=_CELLS, latency=_TIMED)
BINARIZED = _jobs(binarize_finetune=_TRAINED, sensitivity=2, evaluate=_TRAINED,
                  latency=_TIMED // 2)
EDITS = {
    "algorithms/base.py": BINARIZED,
    "binarize.py": BINARIZED,
    "training/loop.py": ALL_CELLS,  # FP32 models are trained by the same loop
    "models/resnet.py": ALL_CELLS,  # the tiny grid's only architecture
    "models/vgg.py": {},  # an architecture the grid does not use
    "data/embedded/images.py": ALL_CELLS,  # MNIST and digits
    "data/embedded/speech.py": {},  # a modality the grid does not use
    "evaluation/corruptions.py": _jobs(evaluate=_CELLS, latency=_TIMED),
    "export/openvino.py": _jobs(evaluate=_CELLS, latency=_TIMED),
    "latency/devices.py": _jobs(latency=_TIMED),
    "metrics/tracks.py": _jobs(),
    "report/hardware.py": {"report": 1, "all": 1},
}


@pytest.mark.parametrize("source", list(EDITS))
def test_editing_a_source_file_makes_exactly_its_jobs_stale(finished, source):
    path = finished.root / "bibench" / source
    text, before = path.read_text(), path.stat()
    try:
        path.write_text(text + "\n# edited\n")
        jobs = finished.planned_jobs()
    finally:
        path.write_text(text)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert jobs == EDITS[source]
    assert finished.planned_jobs() == {}  # the edit undone, nothing is stale


def test_every_row_carries_the_code_fingerprint_its_job_ran_with(finished):
    from bibench.cache import code_fingerprint
    from bibench.io import read_table

    results = finished.root / "results"
    train = read_table(results / "cells/mnist/resnet20/bnn/seed0/train.parquet", "train")
    assert set(train["code_fingerprint"]) == {
        code_fingerprint("binarize_finetune", "mnist_embedded", "resnet20", "bnn")}
    evals = read_table(results / "cells/digits/resnet20/fp32/seed0/eval.parquet", "eval")
    assert set(evals["code_fingerprint"]) == {
        code_fingerprint("evaluate", "digits_embedded", "resnet20", "fp32")}
    for table in ("metrics", "tracks", "latency"):
        frame = read_table(results / f"{table}.parquet", table)
        assert frame["code_fingerprint"].str.fullmatch("[0-9a-f]{16}").all(), table
    metrics = read_table(results / "metrics.parquet", "metrics")
    # the first seed's rows carry its latency too, so its code: one fingerprint per cell kind
    metrics["timed"] = metrics["seed"] == metrics["seed"].min()
    assert metrics.groupby(["task", "algorithm", "timed"])["code_fingerprint"].nunique().eq(
        1).all()
    # MNIST and digits pass through the same loader code: one fingerprint per algorithm
    assert metrics.groupby(["algorithm", "timed"])["code_fingerprint"].nunique().eq(1).all()
    assert metrics["code_fingerprint"].nunique() == 4


# --------------------------------------------------------------------------- bibench status


def _status(wf: Workflow, *args: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "bibench.cli", "status", "--configfile",
                           "tiny.yaml", "--json", *args], cwd=wf.root, env=wf.env,
                          capture_output=True, text=True, check=True)
    return {s["cell"]: s for s in json.loads(proc.stdout)}


def test_status_says_why_each_cell_is_stale(finished):
    status = _status(finished)
    # cells (2 tasks x fp32, bnn x seeds), sensitivity runs, the aggregate and the report
    assert len(status) == 2 * 2 * _SEEDS + 4 + 2
    # nothing stale: every cell is up to date (the tiny grid's cells may also be at chance)
    assert {s["state"] for s in status.values()} <= {"up to date", "at chance"}, status

    path, hidden = _aside(finished, BNN + "eval.parquet")
    try:
        status = _status(finished)
    finally:
        os.rename(hidden, path)
    assert status["mnist/resnet20/bnn/seed0"]["state"] == "stale"
    assert status["mnist/resnet20/bnn/seed0"]["why"] == [
        f"missing file {BNN}eval.parquet",
        "input recomputed first (latency: export.parquet, model.onnx, model.qonnx.onnx, "
        "openvino)"]  # as snakemake -n: the latency rule takes every export form
    assert status["mnist/resnet20/fp32/seed0"]["state"] in ("up to date", "at chance")

    source = finished.root / "bibench" / "binarize.py"
    text, before = source.read_text(), source.stat()
    try:
        source.write_text(text + "\n# edited\n")
        status = _status(finished)
    finally:
        source.write_text(text)
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    stale = {name for name, s in status.items() if s["state"] == "stale"}
    assert stale == {name for name in status if "/bnn/" in name} | {"aggregate", "report"}
    assert "code changed (binarize_finetune)" in status["digits/resnet20/bnn/seed0"]["why"]

    config = yaml.safe_load((finished.root / "tiny.yaml").read_text())
    config["tasks"]["digits"]["finetune"]["lr"] = 5e-4
    (finished.root / "lr.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "bibench.cli", "status", "--configfile",
                           "lr.yaml"], cwd=finished.root, env=finished.env,
                          capture_output=True, text=True, check=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("digits/resnet20/bnn"))
    assert "stale" in line and "config changed (binarize_finetune)" in line
    assert all("stale" not in x for x in proc.stdout.splitlines()
               if x.startswith(("mnist/", "digits/resnet20/fp32")))


# --------------------------------------------------------------------------- damaged files


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else b"not a result\n" * 10)


def test_damaged_results_are_all_found_before_any_job_and_recomputed(tiny_run, tmp_path):
    # three damaged files: one run finds them all before any job (not three failed runs)
    # and recomputes them and what was computed from them, to the same numbers
    wf = Workflow.clone(tiny_run, tmp_path / "wf")
    model = "results/cells/digits/resnet20/bnn/seed1/model.pt"
    damaged = {BNN + "eval.parquet": "truncated Parquet file",
               model: "not a complete checkpoint archive",
               "results/metrics.parquet": "not a Parquet file (0 bytes"}
    _damage(wf.root / (BNN + "eval.parquet"), "truncated")
    _damage(wf.root / model, "garbage")
    (wf.root / "results/metrics.parquet").write_bytes(b"")
    assert wf.planned_jobs() == _jobs(binarize_finetune=1, evaluate=2, latency=1)
    proc = wf.snakemake("-n")  # a dry run too says what it found
    out = proc.stdout + proc.stderr
    assert out.count("bibench: recomputing 3 damaged result(s)") == 1, out
    for rel, problem in damaged.items():
        assert f"  {rel}: {problem}" in out, out
    proc = wf.snakemake("results/report.html")
    assert "Traceback" not in proc.stdout + proc.stderr
    assert wf.planned_jobs() == {}
    rel = BNN + "eval.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(wf.root / rel),
                                  pd.read_parquet(tiny_run.root / rel))
    metrics = pd.read_parquet(wf.root / "results/metrics.parquet")
    assert len(metrics) == len(pd.read_parquet(tiny_run.root / "results/metrics.parquet"))


def test_a_failed_report_keeps_the_last_good_one_and_says_how_to_recompute(tiny_run, tmp_path):
    # the report job stops on a damaged input: the message's command is this run's own (its
    # --configfile and target), the last good report stays beside a note that says so
    wf = Workflow.clone(tiny_run, tmp_path / "wf")
    results = wf.root / "results"
    good = (results / "report.html").read_bytes()
    assert (results / "report.last-good.html").read_bytes() == good
    module = wf.root / "bibench" / "report" / "__init__.py"
    source = module.read_text()
    module.write_text(source + "\n\ndef render_report(*args, **kwargs):\n"
                      "    from bibench.io import DamagedFileError\n\n"
                      "    raise DamagedFileError('results/metrics.parquet', 'injected')\n")
    proc = wf.snakemake("results/report.html", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in out
    assert not (results / "report.html").exists()  # Snakemake deletes a failed job's output
    assert (results / "report.last-good.html").read_bytes() == good
    note = (results / "report.FAILED.txt").read_text()
    assert note.startswith("REPORT NOT UPDATED: the report job started ")
    assert "failed: DamagedFileError: damaged result results/metrics.parquet: injected" in note
    assert "results/report.last-good.html" in note

    line = next(x for x in out.splitlines() if "damaged result results/metrics.parquet" in x)
    command = shlex.split(line[line.index("with: snakemake") + len("with: "):])
    assert command == ["snakemake", "--cores", "2", "results/report.html", "--configfile",
                       "tiny.yaml", "--forcerun", "results/metrics.parquet"]
    module.write_text(source)
    assert wf.planned_jobs(*command[1:], config=None) == {"aggregate": 1, "report": 1}
    status = _status(wf)
    assert status["report"]["state"] == "stale"
    assert any(w.startswith("the last report job failed") for w in status["report"]["why"])

    wf.snakemake(*command[1:], config=None)
    assert not (results / "report.FAILED.txt").exists()
    assert (results / "report.html").read_bytes() == (
        results / "report.last-good.html").read_bytes()
    assert _status(wf)["report"]["state"] == "up to date"


# --------------------------------------------------------------------------- kill -9


TIMING = {"epoch_seconds", "train_seconds", "train_wall_seconds", "train_seconds_per_epoch",
          "median_ms", "p10_ms", "p90_ms", "fp32_median_ms", "fp32_p10_ms", "fp32_p90_ms",
          "speedup_vs_fp32", "latency_median_ms", "latency_speedup_vs_fp32",
          "reference_median_ms", "reference_speedup_vs_fp32", "load_avg_start", "load_avg_end"}


def _tables(root: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for path in sorted((root / "results").rglob("*.parquet")):
        frame = pd.read_parquet(path)
        if path.name == "tracks.parquet":  # values from timings: the inference/training tracks
            frame = frame[~frame["track"].isin(["hardware_inference", "training_consumption"])]
            frame = frame.reset_index(drop=True)
        if path.name == "summary.parquet":  # seed means of timings
            frame = frame[~frame["quantity"].isin(TIMING)].reset_index(drop=True)
        if path.name == "export.parquet":  # the OpenVINO form's intermediate ONNX varies with
            # Python's hash seed (as in test_slurm.py): a few bytes between any two runs
            frame.loc[frame["form"] == "openvino_binary", "file_bytes"] = -1
        out[str(path.relative_to(root))] = frame.drop(columns=[c for c in frame.columns
                                                               if c in TIMING])
    return out


def test_a_run_killed_mid_training_reruns_to_the_same_tables(tiny_run, tmp_path):
    wf = Workflow.clone(tiny_run, tmp_path / "wf")
    # a quarter of the grid: mnist's seed 0 (its pretraining and the cells built on it)
    shutil.rmtree(wf.root / "results" / "pretrain" / "mnist" / "resnet20" / "seed0")
    log = wf.root / "logs/pretrain/mnist/resnet20/seed0.log"
    log.unlink()
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "tiny.yaml"]
    proc = subprocess.Popen(cmd, cwd=wf.root, env=wf.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for(lambda: log.exists() and "epoch 1/" in log.read_text(), proc)
    finally:
        os.killpg(proc.pid, 9)  # snakemake and the training job, mid-training
        proc.wait()
    trained = wf.root / "results/pretrain/mnist/resnet20/seed0"
    assert not (trained / "model.pt").exists() and not (trained / "train.parquet").exists()
    assert not list(trained.parent.rglob("*.tmp"))  # nothing half-written at any path
    wf.snakemake("--unlock")
    wf.snakemake()
    ours, reference = _tables(wf.root), _tables(tiny_run.root)
    assert ours.keys() == reference.keys()
    for name, frame in reference.items():
        pd.testing.assert_frame_equal(ours[name], frame, obj=name)


def _wait_for(ready, proc, timeout: float = 600) -> None:
    import time

    start = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            raise AssertionError("the run ended before training started")
        if time.monotonic() - start > timeout:
            raise AssertionError("training did not start")
        time.sleep(0.2)
