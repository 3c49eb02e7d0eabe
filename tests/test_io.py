from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bibench.config import config_hash
from bibench.io import (
    SCHEMAS,
    DamagedFileError,
    DiskFullError,
    atomic_write,
    read_table,
    stale_temporaries,
    write_table,
)


def _eval_row(**over):
    row = {"task": "t", "arch": "a", "algorithm": "bnn", "seed": 0, "condition": "clean",
           "severity": 0, "metric": "accuracy", "value": 0.5, "n_samples": 10,
           "chance_value": 0.1, "embedded": True,
           "stands_in_for": "CIFAR-10", "status": "ok", "predictions": [1.0, 0.0],
           "targets": [1.0, 1.0], "cell_config_hash": "h",
           "code_fingerprint": "c",
           "bibench_version": "v", "torch_version": "t", "device": "cpu", "device_model": "m",
           "precision": "fp32", "threads": 1}
    row.update(over)
    return row


def test_write_then_read_round_trips_with_schema(tmp_path):
    path = tmp_path / "sub" / "eval.parquet"
    write_table([_eval_row(), _eval_row(condition="gaussian_noise", severity=3)], path, "eval")
    frame = read_table(path, "eval")
    assert list(frame.columns) == SCHEMAS["eval"].names
    assert frame["severity"].tolist() == [0, 3]


def test_missing_or_extra_columns_are_rejected_and_nothing_is_written(tmp_path):
    path = tmp_path / "eval.parquet"
    row = _eval_row()
    del row["value"]
    with pytest.raises(ValueError, match="missing columns \\['value'\\]"):
        write_table([row], path, "eval")
    with pytest.raises(ValueError, match="unexpected columns \\['oops'\\]"):
        write_table([_eval_row(oops=1)], path, "eval")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "eval.parquet"
    write_table([_eval_row(value=0.25)], path, "eval")

    def explode(tmp):
        open(tmp, "w").write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, explode)
    assert read_table(path, "eval")["value"].tolist() == [0.25]
    assert [p.name for p in tmp_path.iterdir()] == ["eval.parquet"]


def test_read_table_rejects_another_schema(tmp_path):
    path = tmp_path / "x.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(path)
    with pytest.raises(ValueError, match="its columns are not those of table .eval."):
        read_table(path, "eval")


def test_config_hash_is_stable_and_order_independent():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


@pytest.mark.parametrize(("damage", "problem"), [
    (lambda data: data[: len(data) // 2], "truncated Parquet file"),
    (lambda data: b"name,value\nx,1\n", "not a Parquet file"),
    (lambda data: b"", "not a Parquet file (0 bytes"),
])
def test_a_damaged_table_names_the_file_the_problem_and_the_command(tmp_path, damage, problem):
    path = tmp_path / "eval.parquet"
    write_table([_eval_row()], path, "eval")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DamagedFileError) as info:
        read_table(path, "eval")
    message = str(info.value)
    assert message.startswith(f"damaged result {path}: {problem}")
    assert message.endswith(f"with: snakemake --cores all --forcerun {path}")


def test_a_table_with_the_wrong_columns_says_which(tmp_path):
    path = tmp_path / "eval.parquet"
    write_table([_eval_row()], path, "eval")
    frame = read_table(path, "eval").drop(columns=["value"]).assign(severity="3")
    frame.to_parquet(path)
    with pytest.raises(DamagedFileError, match=r"missing \['value'\]; severity: string "
                                               r"instead of int64"):
        read_table(path, "eval")


# --- a full disk: said in words, with the file's name -------------------------------------------

def _no_free_space(monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: real(p)._replace(free=0))


@pytest.mark.parametrize("raised", [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
])
def test_a_write_that_meets_enospc_says_the_disk_is_full_and_names_the_file(tmp_path, raised):
    path = tmp_path / "model.pt"
    path.write_text("previous")

    def fill(tmp):
        open(tmp, "w").write("partial")
        raise raised

    with pytest.raises(DiskFullError) as info:
        atomic_write(path, fill)
    what = "disk quota exceeded" if raised.errno == errno.EDQUOT else "no space left on device"
    assert str(info.value).startswith(f"{what} writing {path} (")
    assert "free some space" in str(info.value).lower()
    assert info.value.errno == raised.errno and info.value.__cause__ is raised
    assert isinstance(info.value, OSError)  # what callers catching OSError still catch
    assert path.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_torchs_iostream_error_on_a_full_disk_says_the_disk_is_full(tmp_path, monkeypatch):
    """torch.save on a full disk raises `basic_ios::clear: iostream error` (or `unexpected
    pos`), no errno: a failed write with no free space left is taken for a full disk."""
    import torch

    from bibench.training.checkpoint import save_checkpoint

    def save(obj, f):
        f.write(b"partial")
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(torch, "save", save)
    _no_free_space(monkeypatch)
    path = tmp_path / "cell" / "model.pt"
    meta = {"arch": "a", "algorithm": "fp32", "input_shape": [3], "num_classes": 2}
    with pytest.raises(DiskFullError, match=rf"^no space left on device writing {path} "
                                            r"\(0 bytes free there; the writer said: "
                                            r"basic_ios::clear: iostream error\)"):
        save_checkpoint(torch.nn.Linear(3, 2), path, meta)
    assert list(path.parent.iterdir()) == []


def test_the_same_error_with_free_space_left_is_passed_on_unchanged(tmp_path):
    def fail(tmp):
        raise RuntimeError("basic_ios::clear: iostream error")

    with pytest.raises(RuntimeError, match="iostream") as info:
        atomic_write(tmp_path / "model.pt", fail)
    assert not isinstance(info.value, DiskFullError)


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A real 1 MiB tmpfs at tmp_path/small (needs root and a mount that is allowed)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
    try:
        yield folder
    finally:
        # lazily: a failed test's traceback may still hold a file open there
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_checkpoint_on_a_really_full_filesystem_says_so(tiny_filesystem):
    import torch

    from bibench.training.checkpoint import save_checkpoint

    path = tiny_filesystem / "model.pt"
    meta = {"arch": "a", "algorithm": "fp32", "input_shape": [1000], "num_classes": 1000}
    with pytest.raises(DiskFullError, match=f"^no space left on device writing {path} "):
        save_checkpoint(torch.nn.Linear(1000, 1000), path, meta)  # 4 MB of weights
    assert list(tiny_filesystem.iterdir()) == []
    save_checkpoint(torch.nn.Linear(3, 2), path, {**meta, "input_shape": [3], "num_classes": 2})
    assert [p.name for p in tiny_filesystem.iterdir()] == ["model.pt"]


# --- temporary files of killed writers -----------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _temp_name(path: Path, pid: int, host: str | None = None) -> str:
    from bibench import io

    return f".{path.name}.{pid}@{host or io._HOST}.k3x9q2ab.tmp"


def test_the_next_write_removes_temporaries_of_dead_writers_only(tmp_path):
    path = tmp_path / "model.pt"
    dead, live = tmp_path / _temp_name(path, _dead_pid()), tmp_path / _temp_name(path, os.getpid())
    dead_sibling = dead.with_suffix(".bin")  # what a writer may put beside its temporary
    elsewhere = tmp_path / _temp_name(path, _dead_pid(), host="another-host-1")
    other = tmp_path / _temp_name(tmp_path / "fp.pt", _dead_pid())  # another destination's
    old, fresh = tmp_path / f".{path.name}.a1b2c3d4.tmp", tmp_path / f".{path.name}.e5f6g7h8.tmp"
    for f in (dead, dead_sibling, live, elsewhere, other, old, fresh):
        f.write_text("partial")
    os.utime(old, (time.time() - 2 * 24 * 3600,) * 2)  # unnamed writer, two days old
    assert stale_temporaries(path) == sorted([dead, dead_sibling, old])
    atomic_write(path, lambda tmp: Path(tmp).write_text("whole"))
    assert path.read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (path, live, elsewhere, other, fresh))


def test_a_writer_killed_mid_write_leaves_a_temporary_the_next_write_removes(tmp_path):
    path = tmp_path / "model.pt"
    script = ("import sys, time; from bibench.io import atomic_write\n"
              "def write(tmp):\n"
              "    open(tmp, 'w').write('half'); print('writing', flush=True); time.sleep(60)\n"
              "atomic_write(sys.argv[1], write)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline() == "writing\n"
        (temporary,) = tmp_path.iterdir()
        assert f".{proc.pid}@" in temporary.name
        atomic_write(tmp_path / "other.pt", lambda tmp: Path(tmp).write_text("x"))
        assert stale_temporaries(path) == []  # its writer is alive: never touched
        assert temporary.exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
        proc.stdout.close()
    assert stale_temporaries(path) == [temporary]
    atomic_write(path, lambda tmp: Path(tmp).write_text("whole"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "other.pt"]


def test_a_failed_write_removes_what_it_put_beside_its_temporary(tmp_path):
    def write(tmp):
        Path(tmp).with_suffix(".bin").write_text("weights")
        Path(tmp).with_suffix(".xml").write_text("graph")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError, match="conversion failed"):
        atomic_write(tmp_path / "model.xml", write)
    assert list(tmp_path.iterdir()) == []



# --------------------------------------------------------------------------- damaged results


def test_the_command_a_damaged_file_gives_is_the_runs_own(tmp_path, monkeypatch):
    # the workflow's main process puts its arguments in RUN_ARGS_ENV (common.smk): pasted after
    # a custom grid's run, the command must force the file in that grid, not the default one
    from bibench.io import RUN_ARGS_ENV

    path = "results/cells/a b/eval.parquet"
    runs = {
        '["--cores", "2", "results/report.html", "--configfile", "my grid.yaml"]':
            "snakemake --cores 2 results/report.html --configfile 'my grid.yaml' "
            "--forcerun 'results/cells/a b/eval.parquet'",
        '["--profile", "profiles/slurm", "--configfile", "paper.yaml", "--", "results/x"]':
            "snakemake --profile profiles/slurm --configfile paper.yaml "
            "--forcerun 'results/cells/a b/eval.parquet' -- results/x",
    }
    for args, command in runs.items():
        monkeypatch.setenv(RUN_ARGS_ENV, args)
        message = str(DamagedFileError(path, "truncated Parquet file"))
        assert message == (f"damaged result {path}: truncated Parquet file. Recompute it (and "
                           f"what was computed from it) with: {command}")
    monkeypatch.delenv(RUN_ARGS_ENV)  # outside a run: the default, and what to add to it
    message = str(DamagedFileError(path, "truncated Parquet file"))
    assert "add your run's --configfile and targets" in message
    assert message.endswith(
        "with: snakemake --cores all --forcerun 'results/cells/a b/eval.parquet'")


def test_the_damaged_file_check_reads_footers_and_archives_without_torch(tmp_path):
    # bibench.cache.damage: what the workflow forces before any job and `bibench status` calls
    # damaged; parse time imports no torch (the checkpoint here is written by torch in a child)
    from bibench.cache import CHECKPOINT, damage, damaged

    table = tmp_path / "eval.parquet"
    write_table([_eval_row()], table, "eval")
    data = table.read_bytes()
    assert damage(table, "eval") is None
    assert damage(table, "complexity").startswith("its columns are not those of table")
    for bad, problem in [(data[: len(data) // 2], "truncated Parquet file"),
                         (b"", "not a Parquet file (0 bytes"),
                         (b"name,value\nx,1\n", "not a Parquet file")]:
        table.write_bytes(bad)
        assert damage(table, "eval").startswith(problem)

    model = tmp_path / "model.pt"
    subprocess.run([sys.executable, "-c", "import sys, torch; torch.save({'meta': {}, "
                    "'state_dict': {'w': torch.ones(3000)}}, sys.argv[1])", str(model)],
                   check=True)
    data = model.read_bytes()
    assert damage(model, CHECKPOINT) is None
    cases = {"half": data[: len(data) // 2], "empty": b"", "garbage": b"not a result\n" * 10,
             "zeroed head": data[:40] + bytes(400) + data[440:]}
    for name, bad in cases.items():
        model.write_bytes(bad)
        problem = damage(model, CHECKPOINT)
        assert problem is not None and problem.startswith(
            "not a complete checkpoint archive"), (name, problem)
    assert damaged([(str(model), CHECKPOINT), (str(table), "eval"),
                    (str(tmp_path / "missing.parquet"), "eval")]) == [
        (str(model), damage(model, CHECKPOINT)), (str(table), damage(table, "eval"))]
    probe = ("import sys; import bibench.cache as c; c.damage(sys.argv[1], c.CHECKPOINT); "
             "c.damage(sys.argv[2], 'eval'); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", probe, str(model), str(table)], check=True)
