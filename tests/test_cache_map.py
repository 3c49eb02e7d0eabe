"""The code map behind the fingerprints matches the registries, and needs no torch."""

from __future__ import annotations

import functools
import inspect
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bibench.cache import (
    ARCHITECTURE_MODULES,
    DATASET_MODULES,
    PACKAGE,
    code_fingerprint,
    job_sources,
)


def _source(fn) -> Path:
    fn = fn.func if isinstance(fn, functools.partial) else fn
    return Path(inspect.getsourcefile(fn)).resolve()


def test_every_architecture_maps_to_the_module_that_defines_it():
    from bibench.models import _ARCHITECTURES, _load

    _load()
    assert set(ARCHITECTURE_MODULES) == set(_ARCHITECTURES)
    for name, arch in _ARCHITECTURES.items():
        modules = ARCHITECTURE_MODULES[name]
        modules = (modules,) if isinstance(modules, str) else modules
        assert _source(arch.build) in {PACKAGE / m for m in modules}, name


def test_every_dataset_maps_to_its_loader_module():
    import bibench.data.embedded  # noqa: F401
    from bibench.data import _DATASETS
    from bibench.data.official import OFFICIAL_LOADERS

    loaders = {**{n: d.loader for n, d in _DATASETS.items()}, **OFFICIAL_LOADERS}
    assert set(loaders) - {"cifar10c"} <= set(DATASET_MODULES)
    for name, loader in loaders.items():
        if name != "cifar10c":  # read by the evaluate job, not a task's dataset
            files = {PACKAGE / f for f in DATASET_MODULES[name]}
            assert _source(loader) in files, name


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
