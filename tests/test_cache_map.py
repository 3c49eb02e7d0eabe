"""The code map behind the fingerprints matches the registries, and needs no torch."""

from __future__ import annotations

import functools
import inspect
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bibench import sources
from bibench.cache import PACKAGE, code_fingerprint, job_sources


def _source(fn) -> Path:
    fn = fn.func if isinstance(fn, functools.partial) else fn
    return Path(inspect.getsourcefile(fn)).resolve()


def test_the_scanned_registrations_are_the_registries():
    """bibench.sources reads the registrations from the files; importing them builds the same
    registries, each name in the file the scan found (so the code map follows a new
    architecture or dataset with no list to keep)."""
    from bibench.data import registered_datasets
    from bibench.models import _ARCHITECTURES, _load

    _load()
    assert set(sources.architectures()) == set(_ARCHITECTURES)
    for name, arch in _ARCHITECTURES.items():
        path, facts = sources.architectures()[name]
        assert _source(arch.build) == path, name
        assert facts["family"] == arch.family, name
        assert PACKAGE / "models/__init__.py" in {PACKAGE / f for f in
                                                   sources.architecture_files(name)}
    datasets = registered_datasets()
    assert set(sources.datasets()) == set(datasets)
    for name, info in datasets.items():
        path, facts = sources.datasets()[name]
        assert _source(info.loader) == path, name
        assert facts.get("official", False) == info.official, name
        assert facts.get("image", False) == info.image, name


def test_a_registration_that_hides_its_name_is_refused(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "loop.py").write_text(
        "for n in ('a', 'b'):\n    register_architecture(Architecture(name=n, family='cnn'))\n")
    monkeypatch.setattr(sources, "PACKAGE", tmp_path)
    sources.registrations.cache_clear()
    try:
        with pytest.raises(ValueError, match="loop.py:2: register_architecture.*literally"):
            sources.registrations("register_architecture", "models")
    finally:
        sources.registrations.cache_clear()


def test_a_models_code_is_its_module_and_what_it_imports():
    # a detector's model is built from the shared detection code and a ResNet backbone
    files = set(sources.architecture_files("faster_rcnn_r18"))
    assert {"models/__init__.py", "models/detection/__init__.py", "models/detection/common.py",
            "models/detection/faster_rcnn.py", "models/resnet.py"} <= files
    assert "models/detection/ssd.py" not in files and "models/vgg.py" not in files
    # a package's __init__ is part of each module under it; what it imports to register is not
    assert set(sources.dataset_files("mnist_embedded")) == {
        "data/__init__.py", "data/embedded/__init__.py", "data/embedded/images.py"}


def test_fingerprints_separate_what_they_should():
    base = ("evaluate", "mnist_embedded", "resnet20")
    assert code_fingerprint(*base, "bnn") != code_fingerprint(*base, "xnor")
    assert code_fingerprint(*base, "bnn") != code_fingerprint(*base, "fp32")
    assert code_fingerprint("evaluate", "text_embedded", "resnet20", "bnn") != \
        code_fingerprint(*base, "bnn")
    assert code_fingerprint(*base, "bnn") == code_fingerprint(*base, "bnn")
    fp32 = {p.relative_to(PACKAGE).as_posix() for p in job_sources(*base, "fp32")}
    assert "algorithms/base.py" not in fp32 and "binarize.py" not in fp32
    assert "models/resnet.py" in fp32 and "data/embedded/images.py" in fp32
    assert "data/embedded/speech.py" not in fp32 and "models/vgg.py" not in fp32
    report = {p.relative_to(PACKAGE).as_posix() for p in job_sources("report")}
    assert "report/templates/report.html.j2" in report and "training/loop.py" not in report
    assert not any("__pycache__" in p for p in report)
    grid = {p.relative_to(PACKAGE).as_posix()
            for p in job_sources("aggregate", grid=(("resnet20",), ("fp32", "bnn")))}
    assert {"models/resnet.py", "algorithms/bnn.py", "metrics/tracks.py"} <= grid
    assert "models/vgg.py" not in grid and "algorithms/xnor.py" not in grid


def test_the_workflow_modules_import_no_torch():
    code = ("import sys, bibench.cache, bibench.config, bibench.status; "
            "bibench.cache.code_fingerprint('evaluate', 'mnist_embedded', 'resnet20', 'bnn'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_status_outcomes_of_up_to_date_cells(tmp_path):
    from bibench.status import _marked_cells, _outcome

    def train(status):
        return {"train": pd.DataFrame({"status": ["ok", status]})}

    assert _outcome(train("ok")) == ("up to date", [])
    assert _outcome(train("diverged"))[0] == "diverged"
    assert _outcome(train("failed: RuntimeError: x")) == ("failed", ["training: RuntimeError: x"])
    export = pd.DataFrame({"form": ["onnx", "qonnx"], "status": ["ok", "failed: disagrees"]})
    assert _outcome({**train("ok"), "export": export}) == ("failed", ["qonnx: failed: disagrees"])
    (tmp_path / "results").mkdir()
    pd.DataFrame({"task": ["t", "t", "t"], "arch": ["a", "a", "a"],
                  "algorithm": ["bnn", "bnn", "fda"], "seed": [0, 0, 0],
                  "condition": ["clean", "noise", "clean"], "at_chance": [True, False, False],
                  "eval_gap": [False, False, True], "eval_train_accuracy": [0.9, 0.9, 0.5],
                  "last_epoch_train_accuracy": [0.9, 0.9, 0.85]}
                 ).to_parquet(tmp_path / "results" / "metrics.parquet")
    marks = _marked_cells(tmp_path)
    assert marks["t/a/bnn/seed0"] == [("at chance", "clean metric at chance (metrics.parquet)")]
    assert marks["t/a/fda/seed0"][0][0] == "eval gap"
    assert "50.0% against 85.0% in its last epoch" in marks["t/a/fda/seed0"][0][1]
