"""Shared fixtures: a private copy of the workflow, and one end-to-end run of the tiny grid."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"
_COPIED = ["Snakefile", "workflow", "bibench", "config", "profiles"]


class Workflow:
    """A copy of the workflow in a temporary directory, run with its own bibench package.

    Editing files of the copy (e.g. touching an algorithm's source) never touches the checkout.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        for name in _COPIED:
            src = REPO / name
            if src.is_dir():
                shutil.copytree(src, root / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(src, root / name)
        shutil.copy2(TINY_CONFIG, root / "tiny.yaml")
        self.env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
        bindir = str(Path(sys.executable).parent)
        self.env["PATH"] = bindir + os.pathsep + self.env.get("PATH", "")

    @classmethod
    def clone(cls, other: Workflow, root: Path) -> Workflow:
        """A copy of another run (results, logs and Snakemake's metadata, mtimes kept)."""
        shutil.copytree(other.root, root, symlinks=True)
        wf = cls.__new__(cls)
        wf.root, wf.env = root, {**other.env, "PYTHONPATH": str(root)}
        return wf

    def snakemake(self, *args: str, config: str | None = "tiny.yaml", check: bool = True,
                  timeout: int = 900) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
        if config:  # last: --configfile takes several values
            cmd += ["--configfile", config]
        proc = subprocess.run(cmd, cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"snakemake {args} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def planned_jobs(self, *args: str, config: str | None = "tiny.yaml") -> dict[str, int]:
        """Job counts per rule that a dry run plans (empty when there is nothing to do)."""
        proc = self.snakemake("-n", "--quiet", "rules", *args, config=config)
        return parse_job_stats(proc.stdout + proc.stderr)

    def planned_outputs(self, *args: str, config: str | None = "tiny.yaml") -> list[str]:
        """Output files of every job a dry run plans."""
        proc = self.snakemake("-n", *args, config=config)
        return re.findall(r"^\s+output: (.+)$", proc.stdout + proc.stderr, flags=re.M)


def install_package(root: Path, package: str, modules: dict[str, str],
                    algorithms: dict[str, str], engines: dict[str, str] | None = None) -> Path:
    """Build the plugin package `package` (its `modules`: file name -> source) in `root`,
    registering `algorithms` (name -> "module:Class") as bibench.algorithms entry points and
    `engines` (name -> "module:OBJECT") as bibench.engines ones, and pip-install it, offline,
    into a target folder, returned: put it on PYTHONPATH to use it."""
    import subprocess
    import sys

    src = root / "src"
    (src / package).mkdir(parents=True)
    (src / package / "__init__.py").write_text("")
    for name, source in modules.items():
        (src / package / name).write_text(source)
    groups = ""
    for group, targets in (("bibench.algorithms", algorithms), ("bibench.engines", engines)):
        if targets:
            entries = "\n".join(f'{name} = "{package}.{target}"'
                                for name, target in targets.items())
            groups += f'\n[project.entry-points."{group}"]\n{entries}\n'
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        f'\n[project]\nname = "{package.replace("_", "-")}"\nversion = "0.0.1"\n'
        f'{groups}\n[tool.setuptools]\npackages = ["{package}"]\n')
    site = root / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", "--target", str(site), str(src)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return site


def parse_job_stats(text: str) -> dict[str, int]:
    if "Nothing to be done" in text:
        return {}
    stats = {}
    in_table = False
    for line in text.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] == "total":
                    break
                stats[parts[0]] = int(parts[1])
    if not stats:
        raise AssertionError(f"no job stats in snakemake output:\n{text}")
    return stats


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and OpenMP threads that spin-wait collapse (10x
    slower) when another process shares the two cores: such test modules run on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits():
    """A small real image task (scikit-learn's digits) for the training, export, latency and
    job tests."""
    from bibench.data import load_dataset

    return load_dataset("digits_embedded", max_train=384, max_test=200)


@pytest.fixture(scope="session")
def trained_fp32(digits):
    """A ResNet-20 trained 4 epochs on `digits`, with its per-epoch records (read-only)."""
    import torch

    from bibench.models import build_model
    from bibench.training.loop import TrainSettings, train

    torch.manual_seed(0)
    model = build_model("resnet20", digits.input_shape, digits.num_classes)
    records = train(model, digits.x_train, digits.y_train,
                    TrainSettings(epochs=4, batch_size=32, optimizer="adam", lr=2e-3),
                    seed=0, device=torch.device("cpu"))
    return model, records


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test (embedded data loads offline)."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network access attempted while loading embedded data")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def workflow_copy(tmp_path: Path) -> Workflow:
    return Workflow(tmp_path / "wf")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Workflow:
    """The whole chain run once on the tiny grid; tests only read or dry-run it."""
    wf = Workflow(tmp_path_factory.mktemp("tiny") / "wf")
    # two seeds: 38 jobs; on a shared, loaded 2-core host the run took 14-15 min, near the
    # default 900 s meant to catch hangs
    wf.snakemake("results/report.html", timeout=1800)
    return wf


@pytest.fixture(scope="session", autouse=True)
def private_timing_registry(tmp_path_factory: pytest.TempPathFactory):
    """The suite's latency timings register in a folder of their own (bibench.latency.windows):
    a bibench run timing on the same machine meanwhile (or another checkout's suite) would
    otherwise mark the tests' rows `contended`. Workflow copies inherit it."""
    from bibench.latency.windows import REGISTRY_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(REGISTRY_ENV, str(tmp_path_factory.mktemp("timing-registry")))
        yield
