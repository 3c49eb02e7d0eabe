"""A cell whose training failed, diverged or was skipped (its FP32 start did not train) is not
evaluated, exported or timed: the jobs downstream write rows that say so, the aggregate and the
report are built for every other cell and name it, and `bibench status` says `failed
(training: <reason>)` or `diverged` (issue 27).

The workflow tests run a plugin algorithm whose forward always raises (installed with pip into
a temporary folder, as in test_algorithms_plugin.py) on a grid of a few cells, with and without
`--keep-going`; the second grid also has an FP32 model that diverges, so that the binarized
cell it starts is skipped.
"""

from __future__ import annotations

import copy
import html
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import Workflow, install_package

from bibench.io import read_table
from bibench.training.checkpoint import build_cell_model, save_checkpoint

PLUGIN = "boom"
ERROR = "boom: this plugin's forward always raises"
MODULE = f'''
"""A plugin algorithm whose binarized layers raise on every forward pass."""

from bibench.algorithms import Algorithm, DeploymentFacts


class Boom(Algorithm):
    name = "{PLUGIN}"
    title = "Boom"
    reference = "a test plugin that raises"
    deployment = DeploymentFacts(
        weight_scale="none", weight_scale_form="none", bn_foldable=True,
        activation_rescaling=False, activation_mean_shift=False,
    )

    def binarize_weight(self, layer, weight):
        raise RuntimeError("{ERROR}")
'''

TASK = {"dataset": "digits_embedded", "max_train": 128, "max_test": 64,
        "architectures": ["resnet20"],
        "pretrain": {"epochs": 1, "batch_size": 64, "optimizer": "adam", "lr": 0.003},
        "finetune": {"epochs": 1, "batch_size": 64, "optimizer": "adam", "lr": 0.001},
        "corruptions": {"gaussian_noise": [1]}}
# sgd at this rate makes the loss non-finite at the second batch: the FP32 model diverges
DIVERGING = {**TASK, "pretrain": {"epochs": 1, "batch_size": 64, "optimizer": "sgd",
                                  "lr": 1.0e30}}
BASE = {"description": "failed cells", "device": "cpu", "seeds": [0],
        "export": {"max_samples": 64, "min_argmax_agreement": 0.9},
        "latency": {"threads": [1], "warmup": 2, "repeats": 50}}


def _cell(wf: Workflow, task: str, algo: str) -> Path:
    return wf.root / "results" / "cells" / task / "resnet20" / algo / "seed0"


# --------------------------------------------------------------------------- the jobs


@pytest.mark.parametrize(("algorithm", "status"), [
    ("fp32", "failed: RuntimeError: kernel exploded"),
    ("fp32", "diverged"),
    ("bnn", "skipped: full-precision model diverged"),
])
def test_a_cell_that_did_not_train_is_not_run_exported_or_timed(
        tmp_path, trained_fp32, digits, monkeypatch, algorithm, status):
    """The evaluate job never runs the model (its forward raises here) and writes every table
    and file it declares, saying why; the latency job reads those rows and times nothing (the
    FP32 model's file it is given does not even exist)."""
    import bibench.training.checkpoint as checkpoint_module
    from bibench.config import load_config
    from bibench.jobs import evaluate, latency

    def boom(*args, **kwargs):
        raise RuntimeError("the model was run")

    model = build_cell_model("resnet20", algorithm, digits.input_shape, digits.num_classes,
                             copy.deepcopy(trained_fp32[0]))
    meta = {"arch": "resnet20", "algorithm": algorithm, "input_shape": list(digits.input_shape),
            "num_classes": digits.num_classes, "train_status": status}
    save_checkpoint(model, tmp_path / "m.pt", meta)
    real_load = checkpoint_module.load_checkpoint

    def loaded_then_never_run(path):  # building a binarized model traces it: that may run
        net, got = real_load(path)
        monkeypatch.setattr(type(net), "forward", boom)
        return net, got

    monkeypatch.setattr(checkpoint_module, "load_checkpoint", loaded_then_never_run)
    config = load_config("config/config.yaml")
    out = {"eval_table": tmp_path / "eval.parquet", "export_table": tmp_path / "export.parquet",
           "complexity": tmp_path / "complexity.parquet", "onnx": tmp_path / "m.onnx",
           "qonnx": tmp_path / "m.qonnx.onnx", "openvino": tmp_path / "openvino"}
    evaluate(task="digits", arch="resnet20", algorithm=algorithm, seed=0,
             dataset={"name": "digits_embedded", "max_train": 64, "max_test": 32},
             corruptions={"corruptions": {"gaussian_noise": [1, 3]}, "files": None},
             export_settings=config["export"], threads=1, checkpoint=str(tmp_path / "m.pt"),
             code="c", forms={k: str(out[k]) for k in ("onnx", "qonnx", "openvino")},
             **{k: str(v) for k, v in out.items() if k not in ("onnx", "qonnx", "openvino")})
    reason = f"training {status}"

    rows = read_table(out["eval_table"], "eval")
    assert len(rows) == 3 and rows["value"].isna().all()
    assert (rows["status"] == f"not evaluated: {reason}").all()
    assert (rows["n_samples"] == 32).all()
    export = read_table(out["export_table"], "export").set_index("form")
    forms = {"onnx", "qonnx"} | ({"openvino_binary"} if algorithm != "fp32" else set())
    assert set(export.index) == forms
    assert (export["status"] == f"not exported: {reason}").all()
    assert (export["file_bytes"] == 0).all() and export["argmax_agreement"].isna().all()
    for note in (out["onnx"], out["qonnx"], out["openvino"] / "NOT_EXPORTED.txt"):
        assert note.read_text() == f"not exported: {reason}\n"
    complexity = read_table(out["complexity"], "complexity")
    assert len(complexity) == 1 and complexity["layer_type"].iloc[0] == "total"
    assert complexity["status"].iloc[0] == f"not measured: {reason}"
    assert complexity["params"].isna().all()

    table = tmp_path / "latency.parquet"
    latency(task="digits", arch="resnet20", algorithm=algorithm, seed=0,
            settings=config["latency"], threads=1,
            forms={"onnx": str(out["onnx"]), "openvino_binary": str(out["openvino"])},
            export_table=str(out["export_table"]),
            fp32_onnx=str(tmp_path / "absent.onnx"), table=str(table), code="c")
    timed = read_table(table, "latency")
    engines = {e for d in config["latency"]["devices"].values() for e in d["engines"]}
    if algorithm == "fp32":
        engines.discard("openvino_binary")
    assert set(timed["engine"]) == engines
    assert (timed["status"] == f"not timed: {reason}").all()
    assert timed["median_ms"].isna().all() and timed["fp32_median_ms"].isna().all()
    assert timed["speedup_vs_fp32"].isna().all() and timed["storage_saving"].isna().all()


# --------------------------------------------------------------------------- the workflow


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The raising plugin built and pip-installed into a temporary target folder."""
    return install_package(tmp_path_factory.mktemp("boom-plugin"), "bibench_boom_plugin",
                           {"boom.py": MODULE}, {PLUGIN: "boom:Boom"})


def _run(root: Path, site: Path, config: dict, *args: str) -> Workflow:
    """A workflow copy with the plugin on its path, run on `config` to the report."""
    wf = Workflow(root)
    wf.env["PYTHONPATH"] = f"{wf.root}:{site}"
    (wf.root / "grid.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    wf.snakemake("results/report.html", *args, config="grid.yaml")
    return wf


def _status(wf: Workflow) -> dict[str, dict]:
    proc = subprocess.run([sys.executable, "-m", "bibench.cli", "status", "--configfile",
                           "grid.yaml", "--json"], cwd=wf.root, env=wf.env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {s["cell"]: s for s in json.loads(proc.stdout)}


def _assert_not_measured(wf: Workflow, task: str, algo: str, reason: str) -> None:
    """Every table of the cell says why it was not evaluated, exported, measured or timed."""
    cell = _cell(wf, task, algo)
    evals = read_table(cell / "eval.parquet", "eval")
    assert (evals["status"] == f"not evaluated: {reason}").all() and evals["value"].isna().all()
    export = read_table(cell / "export.parquet", "export")
    assert (export["status"] == f"not exported: {reason}").all()
    assert (cell / "model.onnx").read_text() == f"not exported: {reason}\n"
    complexity = read_table(cell / "complexity.parquet", "complexity")
    assert (complexity["status"] == f"not measured: {reason}").all()
    timed = read_table(cell / "latency.parquet", "latency")
    assert len(timed) and (timed["status"] == f"not timed: {reason}").all()
    assert timed["median_ms"].isna().all()


def _assert_reported(wf: Workflow, cells: dict[str, str], trained: list[str]) -> None:
    """The aggregate and the report cover every cell; each of `cells` (name: train status) is
    left out of the tracks and named in the report; `trained` cells have their numbers."""
    results = wf.root / "results"
    metrics = read_table(results / "metrics.parquet", "metrics")
    metrics["cell"] = (metrics["task"] + "/" + metrics["arch"] + "/" + metrics["algorithm"]
                       + "/seed" + metrics["seed"].astype(str))
    assert set(metrics["cell"]) == set(cells) | set(trained)
    for name, status in cells.items():
        rows = metrics[metrics["cell"] == name]
        assert (rows["train_status"] == status).all() and rows["value"].isna().all()
    done = metrics[metrics["cell"].isin(trained)]
    assert (done["train_status"] == "ok").all() and done["value"].notna().all()
    assert done["params"].notna().all()
    tracks = read_table(results / "tracks.parquet", "tracks")
    excluded = {c for e in tracks["excluded"] for c in json.loads(e)}
    for name in cells:
        task, arch, algo, seed = name.split("/")
        if algo != "fp32":
            assert f"{task}/{arch}/{algo}/{seed[4:]}" in excluded
    report = html.unescape((results / "report.html").read_text())
    for name, status in cells.items():  # the overview's finding on failed cells
        assert f"{name} ({status})" in report, name


@pytest.mark.workflow
def test_a_raising_plugin_stops_only_its_own_cells(tmp_path, plugin_site):
    """Without --keep-going: the run completes, the plugin's cell says why at every step."""
    config = {**BASE, "algorithms": ["fp32", "bnn", PLUGIN], "tasks": {"digits": TASK}}
    wf = _run(tmp_path / "wf", plugin_site, config)
    failed = f"failed: RuntimeError: {ERROR}"
    train = read_table(_cell(wf, "digits", PLUGIN) / "train.parquet", "train")
    assert train["status"].tolist() == [failed]
    _assert_not_measured(wf, "digits", PLUGIN, f"training {failed}")
    bnn = _cell(wf, "digits", "bnn")
    assert (read_table(bnn / "eval.parquet", "eval")["status"] == "ok").all()
    assert (read_table(bnn / "latency.parquet", "latency")["median_ms"] > 0).any()
    _assert_reported(wf, {f"digits/resnet20/{PLUGIN}/seed0": failed},
                     ["digits/resnet20/fp32/seed0", "digits/resnet20/bnn/seed0"])

    name = f"digits/resnet20/{PLUGIN}/seed0"
    status = _status(wf)
    assert status[name]["state"] == "failed"
    assert status[name]["why"] == [f"training: RuntimeError: {ERROR}"]
    assert status["digits/resnet20/bnn/seed0"]["state"] not in ("failed", "stale")
    # rerunning cannot change a failed training: missing rows downstream leave it failed
    (_cell(wf, "digits", PLUGIN) / "eval.parquet").unlink()
    status = _status(wf)[name]
    assert status["state"] == "failed" and status["why"][0] == f"training: RuntimeError: {ERROR}"
    assert any(w.startswith("missing file") for w in status["why"][1:])


@pytest.mark.workflow
def test_failed_diverged_and_skipped_cells_with_keep_going(tmp_path, plugin_site):
    """With --keep-going: a plugin that raises, an FP32 model that diverges and the binarized
    cell it would start; nothing fails, the report is built and names all three."""
    config = {**BASE, "algorithms": ["fp32", PLUGIN],
              "tasks": {"digits": TASK, "unstable": DIVERGING}}
    wf = _run(tmp_path / "wf", plugin_site, config, "--keep-going")
    failed = f"failed: RuntimeError: {ERROR}"
    skipped = "skipped: full-precision model diverged"
    _assert_not_measured(wf, "digits", PLUGIN, f"training {failed}")
    _assert_not_measured(wf, "unstable", "fp32", "training diverged")
    _assert_not_measured(wf, "unstable", PLUGIN, f"training {skipped}")
    _assert_reported(wf, {f"digits/resnet20/{PLUGIN}/seed0": failed,
                          "unstable/resnet20/fp32/seed0": "diverged",
                          f"unstable/resnet20/{PLUGIN}/seed0": skipped},
                     ["digits/resnet20/fp32/seed0"])

    status = _status(wf)
    assert status[f"digits/resnet20/{PLUGIN}/seed0"]["why"] == [f"training: RuntimeError: {ERROR}"]
    assert status["unstable/resnet20/fp32/seed0"]["state"] == "diverged"
    assert status[f"unstable/resnet20/{PLUGIN}/seed0"]["state"] == "failed"
    assert status[f"unstable/resnet20/{PLUGIN}/seed0"]["why"] == [f"training: {skipped}"]
    assert not math.isnan(read_table(wf.root / "results" / "metrics.parquet", "metrics")
                          .query("task == 'digits' and algorithm == 'fp32'")["value"].iloc[0])
