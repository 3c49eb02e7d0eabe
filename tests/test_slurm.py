"""profiles/slurm on a real (single-node) SLURM: every job through sbatch, grouped submissions,
results equal to the local run, and a job cancelled mid-run resubmitted without loss.

The cluster is started by .ci/slurm/start.sh (SLURM and munge from the distribution's packages,
run as root; .ci/run installs them). Without those binaries the SLURM test is skipped, naming
what is missing; the checks of the profile's text run everywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, Workflow

SLURM_PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
K8S_PROFILE = REPO / "profiles" / "kubernetes" / "config.yaml"
START, STOP = REPO / ".ci" / "slurm" / "start.sh", REPO / ".ci" / "slurm" / "stop.sh"
PARTITION = "debug"  # the test cluster's one partition (start.sh)
TRAINING_RULES = ("pretrain", "binarize_finetune", "sensitivity")
CELL_POST_COMPONENTS = 2

_NEEDED = ["sbatch", "squeue", "scancel", "sinfo", "scontrol", "slurmctld", "slurmd", "munged"]
_MISSING = [tool for tool in _NEEDED
            if not shutil.which(tool) and not Path("/usr/sbin", tool).exists()]
needs_slurm = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"SLURM/munge binaries missing ({', '.join(_MISSING)}): "
           "apt-get install -y slurm-wlm munge (.ci/run does)")
needs_root = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() != 0,
    reason=".ci/slurm/start.sh runs slurmd, which starts jobs, as root")


def _is_timing(column: str) -> bool:
    """Wall-clock measurements, which differ between any two runs (bibench/io.py SCHEMAS), and
    the load average around a latency row's timing."""
    return ("_seconds" in column or column.endswith("_ms") or "speedup_vs_fp32" in column
            or column.startswith("load_avg_"))


# tracks computed from timings: training time per epoch, latency
_TIMING_TRACK_METRICS = {("training_consumption", "time_ratio"),
                         ("training_consumption", "OM_train"),
                         ("hardware_inference", "speedup"),
                         ("hardware_inference", "OM_infer")}


def _profile(path: Path = SLURM_PROFILE) -> dict:
    return yaml.safe_load(path.read_text())


# --------------------------------------------------------------------------- the profiles' text


@pytest.mark.parametrize("path", [SLURM_PROFILE, K8S_PROFILE], ids=["slurm", "kubernetes"])
def test_every_profile_key_is_commented(path):
    lines = path.read_text().splitlines()
    keys = [i for i, line in enumerate(lines) if re.match(r"^[a-z][\w-]*:", line)]
    assert keys, path
    for i in keys:
        block = lines[max(0, i - 12):i]
        # the key's own comment: the lines right above it (up to a blank line) or the same line
        above = []
        for line in reversed(block):
            if not line.strip():
                break
            above.append(line)
        assert "#" in lines[i] or any(a.lstrip().startswith("#") for a in above), \
            f"{path.name}: key without a comment: {lines[i]!r}"


def test_slurm_profile_names_only_rules_of_the_workflow(workflow_copy):
    proc = workflow_copy.snakemake("--list-rules", config="tiny.yaml")
    rules = set(proc.stdout.split())
    profile = _profile()
    named = (set(profile["set-threads"]) | set(profile["set-resources"])
             | set(profile["groups"]))
    assert named <= rules, f"profile names rules the workflow lacks: {named - rules}"
    assert set(TRAINING_RULES) <= set(profile["set-threads"])
    groups = set(profile["groups"].values())
    assert set(profile["group-components"]) <= groups
    # a group's jobs share one submission, hence one partition and one set of sbatch flags
    for group in groups:
        members = [r for r, g in profile["groups"].items() if g == group]
        for key in ("slurm_partition", "slurm_extra"):
            values = {str(profile["set-resources"].get(r, {}).get(key)) for r in members}
            assert len(values) == 1, (group, key, values)


# --------------------------------------------------------------------------- the test cluster


def _slurm_env(state: Path) -> dict[str, str]:
    return {**os.environ, "BIBENCH_SLURM_DIR": str(state),
            "BIBENCH_SLURM_PARTITION": PARTITION, "SLURM_CONF": str(state / "slurm.conf")}


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> dict[str, str]:
    """A single-node SLURM for this session; stopped at the end, also after a failure."""
    state = tmp_path_factory.mktemp("slurm")
    env = _slurm_env(state)
    try:
        proc = subprocess.run(["bash", str(START)], env=env, capture_output=True, text=True,
                              timeout=180)
        if proc.returncode != 0:
            pytest.fail(f".ci/slurm/start.sh failed:\n{proc.stdout}\n{proc.stderr}")
        yield env
    finally:
        stop = subprocess.run(["bash", str(STOP)], env=env, capture_output=True, text=True,
                              timeout=120)
        assert stop.returncode == 0, stop.stdout + stop.stderr


def _squeue(env: dict[str, str], *args: str) -> list[list[str]]:
    proc = subprocess.run(["squeue", "--noheader", *args], env=env, capture_output=True,
                          text=True, check=True)
    return [line.split("|") for line in proc.stdout.splitlines() if line.strip()]


def _with_partition(resources: dict) -> list[str]:
    """The profile's resources as NAME=VALUE, partition names replaced by the test cluster's."""
    return [f"{name}={PARTITION!r}" if name == "slurm_partition" else f"{name}={value}"
            for name, value in resources.items()]


def _local_threads(results: Path) -> dict[str, int]:
    """Thread count of each training rule in the local run, from its tables' `threads`."""
    def one(paths, where=None) -> int:
        frames = [pq.read_table(p).to_pandas() for p in paths]
        frame = pd.concat(frames)
        if where is not None:
            frame = frame[where(frame)]
        values = set(frame["threads"])
        assert len(values) == 1, values
        return int(values.pop())

    return {
        "pretrain": one((results / "pretrain").rglob("train.parquet")),
        "binarize_finetune": one((results / "cells").rglob("train.parquet"),
                                 lambda f: f["stage"] == "finetune"),
        "sensitivity": one((results / "sensitivity").rglob("*.parquet")),
    }


def _slurm_command(local_results: Path) -> list[str]:
    """profiles/slurm, with only what this one-node cluster needs given on the command line.

    A command-line option replaces the profile's whole key, so default-resources and
    set-resources are the profile's own, with its partition names replaced; set-threads are the
    local run's (for equal results), --cores 2 as in the local run."""
    profile = _profile()
    set_resources = [f"{rule}:{item}" for rule, res in profile["set-resources"].items()
                     for item in _with_partition(res)]
    threads = [f"{rule}={n}" for rule, n in _local_threads(local_results).items()]
    # two cells' evaluate jobs per submission instead of the profile's 8: the tiny grid's 8
    # such jobs make four submissions that run side by side, which shortens the longest step
    components = [f"{g}={CELL_POST_COMPONENTS if g == 'cell_post' else n}"
                  for g, n in profile["group-components"].items()]
    return [
        sys.executable, "-m", "snakemake", "--profile", "profiles/slurm",
        "--workflow-profile", "none", "--cores", "2",
        "--default-resources", *_with_partition(profile["default-resources"]),
        "--set-resources", *set_resources,
        "--set-threads", *threads,
        "--group-components", *components,
        # no accounting database here: squeue (MinJobAge is a day) and no account
        "--slurm-status-command", "squeue", "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks", "2",
        "--slurm-keep-successful-logs",  # the evidence of what ran inside SLURM
        "results/report.html", "--configfile", "tiny.yaml",
    ]


def _cancel_finetune_in_training(env: dict[str, str], proc: subprocess.Popen, root: Path,
                                 deadline: float) -> tuple[str, str] | None:
    """Wait until a binarize_finetune job is RUNNING and its job function has started (its
    log has a first line), then scancel it: (SLURM id, comment)."""
    while proc.poll() is None and time.monotonic() < deadline:
        for jobid, comment in _squeue(env, "--states=RUNNING", "--format=%i|%k"):
            if not comment.startswith("rule_binarize_finetune_wildcards_"):
                continue
            for log in (root / "logs" / "binarize_finetune").rglob("seed*.log"):
                task, arch, algo = log.parts[-4:-1]
                seed = log.stem.removeprefix("seed")
                if comment.endswith(f"_{task}_{arch}_{algo}_{seed}") and log.stat().st_size:
                    subprocess.run(["scancel", jobid], env=env, check=True)
                    return jobid, comment
        time.sleep(0.1)
    return None


def _outputs_in(lines: list[str] | str) -> set[str]:
    """Files that the `output:` lines of a Snakemake log name."""
    if isinstance(lines, str):
        lines = re.findall(r"^\s+output: (.+)$", lines, flags=re.M)
    return {f.strip() for line in lines for f in line.split(",")}


def _job_resources(text: str) -> list[dict[str, str]]:
    """Resources of each job a group submission ran, from its SLURM log: the job step executor
    announces each job as `rule NAME:` (the step it starts then shows it as `localrule`)."""
    jobs, in_job = [], False
    for line in text.splitlines():
        if re.match(r"^(local)?rule \w+:", line):
            in_job = line.startswith("rule ")
        elif in_job and line.startswith("    resources: "):
            jobs.append(dict(item.split("=", 1)
                             for item in line.removeprefix("    resources: ").split(", ")))
            in_job = False
    return jobs


def _minutes(limit: str) -> int:
    """squeue's time limit ([D-]HH:MM:SS) in minutes."""
    days, _, clock = limit.rpartition("-")
    hours, minutes, _ = ([0, 0] + [int(x) for x in clock.split(":")])[-3:]
    return int(days or 0) * 1440 + hours * 60 + minutes


def _comparable(path: Path) -> pd.DataFrame:
    frame = pq.read_table(path).to_pandas()
    frame = frame.drop(columns=[c for c in frame.columns if _is_timing(c)])
    if {"form", "file_bytes"} <= set(frame.columns):
        # the OpenVINO form's intermediate ONNX varies with Python's hash seed (the exporter
        # deduplicates equal constants in set order): its size differs between any two runs
        frame.loc[frame["form"] == "openvino_binary", "file_bytes"] = -1
    if {"track", "metric", "value"} <= set(frame.columns):
        timing = [(t, m) in _TIMING_TRACK_METRICS for t, m in zip(frame["track"],
                                                                   frame["metric"], strict=True)]
        frame.loc[timing, ["value", "seed_mean", "ci95_low", "ci95_high"]] = float("nan")
    if {"quantity", "mean"} <= set(frame.columns):  # summary.parquet: means over seeds
        frame.loc[frame["quantity"].map(_is_timing), ["mean", "ci95_low", "ci95_high"]] = (
            float("nan"))
    return frame


@needs_slurm
@needs_root
@pytest.mark.workflow
def test_slurm_profile_runs_everything_through_sbatch_and_survives_scancel(
        tiny_run, slurm_cluster, tmp_path):
    env = slurm_cluster
    wf = Workflow(tmp_path / "wf")
    wf.env["SLURM_CONF"] = env["SLURM_CONF"]
    local = tiny_run.root / "results"
    planned = _outputs_in(wf.planned_outputs())  # every output of the grid, from scratch
    log = tmp_path / "snakemake.log"
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(_slurm_command(local), cwd=wf.root, env=wf.env, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
        try:
            cancelled = _cancel_finetune_in_training(env, proc, wf.root, started + 300)
            proc.wait(timeout=max(1.0, started + 900 - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert proc.returncode == 0, text[-6000:]
    assert cancelled is not None, "no binarize_finetune job was seen RUNNING\n" + text[-3000:]
    elapsed = time.monotonic() - started

    run_id = re.search(r"SLURM run ID: (\S+)", text).group(1)
    jobs = _squeue(env, "--states=all", f"--name={run_id}", "--format=%i|%T|%k|%C|%m|%l")
    state = {jobid: s for jobid, s, *_ in jobs}
    by_comment: dict[str, list[str]] = {}
    for jobid, _, comment, *_ in jobs:
        by_comment.setdefault(comment, []).append(jobid)

    # (a) every job ran inside a SLURM job: the Snakemake logs of the completed SLURM jobs (kept
    # under .snakemake/slurm_logs, named by their SLURM id) name every output of the grid (only
    # the target rule `all`, which has no output and runs nothing, stays in the main process).
    ran_in_slurm: set[str] = set()
    for slurm_log in (wf.root / ".snakemake" / "slurm_logs").rglob("*.log"):
        assert slurm_log.stem in state, f"{slurm_log} is not a job of this run"
        if state[slurm_log.stem] == "COMPLETED":
            ran_in_slurm |= _outputs_in(slurm_log.read_text())
    assert planned and planned <= ran_in_slurm, sorted(planned - ran_in_slurm)
    # ... and every SLURM job of the run is one that Snakemake submitted, and vice versa
    submissions = re.findall(r"has been submitted with SLURM jobid (\d+)", text)
    assert sorted(submissions) == sorted(state), (submissions, state)

    # grouping: evaluate jobs (independent of each other: one group component each)
    # CELL_POST_COMPONENTS per submission, the latency jobs of all cells in one, aggregate
    # and report (connected: one component) in one. The plugin runs a group's jobs one after the
    # other, and the profile sizes each submission for that: its largest job's CPUs and memory,
    # the sum of its jobs' wall times.
    n_cells = 8  # tiny.yaml: 2 tasks x 1 architecture x (fp32, bnn) x 2 seeds
    members: dict[str, list[dict[str, str]]] = {}
    group_names = set(_profile()["groups"].values())
    for jobid, _, comment, cpus, mem, limit in jobs:
        if comment.startswith(tuple(f"rule_{r}" for r in TRAINING_RULES)):
            continue
        slurm_log = next((wf.root / ".snakemake" / "slurm_logs").rglob(f"{jobid}.log"))
        ran = _job_resources(slurm_log.read_text())
        group = next(g for g in group_names if comment.startswith(f"rule_{g}_"))
        assert len(ran) <= {"cell_post": CELL_POST_COMPONENTS}.get(group, n_cells), comment
        members.setdefault(group, []).extend(ran)
        assert mem == f"{max(int(m['mem_mb']) for m in ran)}M", (comment, mem)
        assert _minutes(limit) == sum(int(m["runtime"]) for m in ran), (comment, limit)
        widest = max(int(m["cpus_per_task"]) for m in ran)
        if group == "latency":  # --exclusive: the whole node
            assert int(cpus) >= widest, (comment, cpus)
        else:
            assert int(cpus) == widest, (comment, cpus)
    # latency: the first seed's cells only (the forms of every seed run the same kernels)
    assert {g: len(m) for g, m in members.items()} == {
        "cell_post": n_cells, "latency": n_cells // 2, "summary": 2}, members
    n_group_jobs = sum(1 for row in jobs if not row[2].startswith(
        tuple(f"rule_{r}" for r in TRAINING_RULES)))
    assert n_group_jobs == n_cells // CELL_POST_COMPONENTS + 1 + 1, jobs
    # training jobs: one submission each (2 pretrain: one FP32 model per task, shared by the
    # seeds; 4 binarize_finetune, 4 sensitivity runs)
    training = [c for c in by_comment if c.startswith(tuple(f"rule_{r}" for r in TRAINING_RULES))]
    assert len(training) == 2 + 4 + 4, training

    # (c) the cancelled job: CANCELLED in SLURM, resubmitted (retries) under the same rule and
    # wildcards, and that second submission completed
    jobid, comment = cancelled
    assert state[jobid] == "CANCELLED", state[jobid]
    resubmitted = [j for j in by_comment[comment] if int(j) > int(jobid)]
    assert [state[j] for j in resubmitted] == ["COMPLETED"], by_comment[comment]
    assert "Trying to restart job" in text
    assert all(s == "COMPLETED" for j, s in state.items() if j != jobid), state

    # (b) nothing lost, nothing left to do, and the same numbers as the local run with the same
    # seeds and thread counts, timings aside
    dry = wf.snakemake("-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    remote = wf.root / "results"
    tables = sorted(p.relative_to(local) for p in local.rglob("*.parquet"))
    assert tables and tables == sorted(p.relative_to(remote) for p in remote.rglob("*.parquet"))
    for rel in tables:
        pd.testing.assert_frame_equal(_comparable(remote / rel), _comparable(local / rel),
                                      check_exact=True, obj=str(rel))
    print(f"SLURM run: {len(jobs)} submissions, {elapsed:.0f} s")
