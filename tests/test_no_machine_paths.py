"""Committed files name no folder of one machine.

The rule (`machine_paths`), for every file git tracks that is text:

- Nowhere: a path in a home folder (`/home`, `/root`, `/Users`, or a Windows `C:\\Users`), in
  a workplace or mounted disk (`/work`, `/scratch`, `/mnt`, `/media`), or in macOS's private
  and per-user temporary folders (`/private`, `/var/folders`). These exist on one machine only.
- In recorded results (`bench/results/`, `docs/measurements.md`) not even a temporary folder
  (`/tmp`, `/var/tmp`, `/dev/shm`): those are one run's scratch folders, which
  bench/measurements.py writes as `$TMPDIR/...` (and paths in the checkout relative to it).

A path is one that starts a word: `/...` right after the start of a line, a space, a quote, a
bracket or `=`, so URLs (`https://host/home/x`), relative paths (`docs/work/x`) and `~/x`
do not count; and it must go on below the folder (`/home/<user>` or a bare `/tmp` do not
count). Legitimate machine-independent paths stay allowed: shebangs (`/usr/bin/env`), system
files (`/dev/null`, `/proc/...`, `/etc/...`), a script's own default scratch folder under
`/tmp` (the Slurm CI state, a remote device's work folder), placeholders (`/data/imagenet`,
`/path/to/x`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
START = r"(?<![\w.~/$-])/"  # a path starts a word (not in a URL, a relative path, or ~/...)
ONE_MACHINE = re.compile(
    START + r"(?:home|root|Users|work|scratch|mnt|media|private|var/folders)/[\w.$~@+-]"
    r"|(?<![\w])[A-Za-z]:\\Users\\[\w.$~@+-]")
SCRATCH = re.compile(START + r"(?:tmp|var/tmp|dev/shm)/[\w.$~@+-]")
RECORDED = re.compile(r"bench/results/.*|docs/measurements\.md")


def machine_paths(name: str, text: str) -> list[str]:
    """`name:line: path` for each path of one machine in the file `name` (relative to the
    checkout) holding `text`."""
    patterns = [ONE_MACHINE, SCRATCH] if RECORDED.fullmatch(name) else [ONE_MACHINE]
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for pattern in patterns:
            found += [f"{name}:{number}: {line[m.start():].split()[0][:80]}"
                      for m in pattern.finditer(line)]
    return found


def _tracked() -> list[str]:
    try:
        proc = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                              check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no list of committed files")
    return [n for n in proc.stdout.decode().split("\0") if n]


def test_no_committed_file_names_a_folder_of_one_machine():
    found = []
    for name in _tracked():
        path = REPO / name
        if not path.is_file():  # deleted in the work tree, or a submodule
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        found += machine_paths(name, data.decode("utf-8", errors="replace"))
    assert not found, "absolute paths of one machine in committed files:\n" + "\n".join(found)


R = "/"  # (built up so that this file names no such path itself)


@pytest.mark.parametrize(("name", "line"), [
    ("tests/t.py", f'PAPER = Path("{R}work/shared/paper/bibench-paper.md")'),
    ("bibench/x.yaml", f"# the paper's text: {R}home/ana/paper.md"),
    ("docs/x.md", f"run `cd {R}root/bibench && snakemake`"),
    ("README.md", f"(see {R}Users/ana/x)"),
    ("bench/results/x.json", f'"command": "python bench/default_run.py --run {R}tmp/dr5"'),
    ("docs/measurements.md", f"| fp32 | {R}tmp/det/frcnn_fp32.pt |"),
])
def test_the_rule_catches_paths_of_one_machine(name, line):
    assert len(machine_paths(name, f"first line\n{line}\n")) == 1


@pytest.mark.parametrize(("name", "line"), [
    ("bench/x.sh", f"#!{R}usr/bin/env bash"),
    ("bench/x.sh", f"cmd > {R}dev/null 2>&1; cat {R}proc/cpuinfo {R}etc/os-release"),
    ("bench/x.sh", f"export PYTHONPATH={R}tmp/site  # the device's own scratch folder"),
    ("docs/x.md", "see https://example.org/home/work/x and docs/work/x and ~/work/x"),
    ("docs/x.md", f"`root` is the folder (e.g. `{R}data/cifar-10-batches-py`), `{R}home/<user>`"),
    ("bench/results/x.json", '"command": "python bench/default_run.py --run $TMPDIR/dr5"'),
])
def test_the_rule_lets_machine_independent_paths_be(name, line):
    assert machine_paths(name, line) == []


def test_recorded_results_name_the_checkout_relative_and_scratch_as_tmpdir(tmp_path,
                                                                          monkeypatch):
    """bench/measurements.py keeps what a benchmark printed and its command without this
    machine's folders (the checkout, home, temporary folders)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import measurements
    finally:
        sys.path.remove(str(REPO / "bench"))
    home = tmp_path / "ana"  # (a home inside the temporary folder: the home is named first)
    monkeypatch.setenv("HOME", str(home))
    scratch = tempfile.gettempdir()
    printer = ("import json, sys; print(json.dumps({'loaded_from': sys.argv[1], "
               "'config': sys.argv[2], 'url': 'https://example.org/tmp/x'}))")
    command = [sys.executable, "-c", printer, f"{scratch}/det/fp32.pt", f"{home}/paper.yaml",
               "--script", f"{REPO}/bench/dry_run.py", "--cwd", str(REPO)]
    entry = json.loads(measurements.record("toy", command, results=tmp_path).read_text())
    assert entry["result"] == {"loaded_from": "$TMPDIR/det/fp32.pt", "config": "~/paper.yaml",
                               "url": "https://example.org/tmp/x"}
    assert entry["command"].endswith(" $TMPDIR/det/fp32.pt ~/paper.yaml --script "
                                     "bench/dry_run.py --cwd .")
    assert machine_paths("bench/results/toy.json", json.dumps(entry["result"])) == []
