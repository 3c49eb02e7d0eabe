"""The engine registry (bibench.latency.engines): every map of engines derives from it, and an
engine installed by another package is timed by the workflow like a built-in one, rerunning
only the latency jobs and what summarises them."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import yaml
from conftest import Workflow, install_package

from bibench.latency.engines import BUILT_IN, binary_engines, engines, get_engine

ENGINE_MODULE = '''
from bibench.latency.engines import Engine
from bibench.latency.timing import time_onnxruntime


def time_it(paths, example, *, threads, warmup, repeats):
    return time_onnxruntime(paths, example, threads=threads, warmup=warmup,
                            repeats=repeats), -1


ENGINE = Engine("onnxruntime_plugin", "onnxruntime from a plugin (float kernels)", "onnx",
                "fp32", "onnxruntime", "bibench_engine_plugin.engine:time_it")
'''


def test_the_built_in_engines_and_what_derives_from_them():
    assert list(engines())[:3] == ["onnxruntime", "openvino_fp32", "openvino_binary"]
    assert binary_engines() == ("openvino_binary",)
    binary = get_engine("openvino_binary")
    assert binary.form == "openvino_binary" and binary.precision == "binary"
    assert str(binary.model_file("cell/openvino")) == os.path.join("cell", "openvino",
                                                                  "model.xml")
    assert {e.board_engine for e in BUILT_IN} == {"onnxruntime", "openvino"}
    with pytest.raises(KeyError, match="unknown engine 'tensorrt'; known: onnxruntime"):
        get_engine("tensorrt")


def test_an_installed_engine_is_timed_and_only_latency_reruns(tiny_run, tmp_path):
    site = install_package(tmp_path / "plugin", "bibench_engine_plugin",
                           {"engine.py": ENGINE_MODULE}, {},
                           {"onnxruntime_plugin": "engine:ENGINE"})
    wf = Workflow.clone(tiny_run, tmp_path / "wf")
    config = yaml.safe_load((wf.root / "tiny.yaml").read_text())
    config["latency"]["devices"] = {"local-cpu": {"kind": "local", "engines": [
        "onnxruntime", "openvino_fp32", "openvino_binary", "onnxruntime_plugin"]}}
    (wf.root / "engine.yaml").write_text(yaml.safe_dump(config))

    refused = wf.snakemake("-n", config="engine.yaml", check=False)  # not installed yet
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "latency.devices.local-cpu.engines.3" in said and "onnxruntime_plugin" in said

    wf.env["PYTHONPATH"] = os.pathsep.join([str(wf.root), str(site)])
    planned = wf.planned_jobs(config="engine.yaml")
    planned.pop("all", None)  # the target rule
    cells = len(list((wf.root / "results" / "cells").rglob("latency.parquet")))
    assert planned == {"latency": cells, "aggregate": 1, "report": 1}, planned
    wf.snakemake("results/report.html", config="engine.yaml")
    latency = pd.read_parquet(wf.root / "results" / "latency.parquet")
    plugin = latency[latency["engine"] == "onnxruntime_plugin"]
    assert len(plugin) == cells and (plugin["status"] == "ok").all()
    assert plugin["engine_version"].str.startswith("onnxruntime ").all()
    assert "onnxruntime from a plugin" in (wf.root / "results" / "report.html").read_text()
