"""Benchmark: where a finished run's time went (targets for the default config: at most 12 min
of workflow time on a 2-core laptop, training at least 60% of the summed job time, start-up
under 10% of it).

Run from the repository root after `snakemake --cores 2 results/report.html`:
    python bench/default_run.py [--run DIR] [--json]
Reads the run's newest complete Snakemake log (.snakemake/log/) for the workflow time and every
benchmarks/**/*.tsv (one per job: wall seconds `s`, `cpu_time`) for the job time per rule.
Training is pretrain + binarize_finetune. Start-up is what each job's log (logs/, the same
path as its benchmark file) says it spent before its first measured step (bibench.jobs.STARTUP:
interpreter, imports, data loading, model building). Per seed: the summed job time of the jobs
of that seed's cells (their paths end in seed<N>); the rest (the shared FP32 models, the
timing of the first seed's forms, aggregate, report) is `shared`. Wall times of jobs that ran
beside others on a busy machine are inflated; Snakemake samples cpu_time, so short jobs show
less than they used: both are reported.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import platform
import re
import subprocess
from collections import defaultdict
from pathlib import Path

TRAINING_RULES = ("pretrain", "binarize_finetune")
STARTUP = "start-up:"  # bibench.jobs.STARTUP (bench/ does not import the package)
_STARTUP = re.compile(re.escape(STARTUP) + r" ([0-9.]+) s before")
_SEED = re.compile(r"/seed(\d+)\.tsv$")
# the rules whose jobs belong to one seed's cells (pretrain and latency are shared)
SEEDED_RULES = ("binarize_finetune", "evaluate", "evaluate_without_export")
_ELAPSED = re.compile(r"^Elapsed time: (?:(\d+) days?, )?(\d+):(\d+):(\d+(?:\.\d+)?)", re.M)


def workflow_seconds(run: Path) -> tuple[float, str]:
    """Elapsed time of the newest Snakemake log that ran to completion, and its name."""
    logs = sorted((run / ".snakemake" / "log").glob("*.snakemake.log"), reverse=True)
    for log in logs:
        text = log.read_text(errors="replace")
        match = _ELAPSED.search(text)
        if match and "(100%) done" in text:
            days, h, m, s = match.groups()
            return int(days or 0) * 86400 + int(h) * 3600 + int(m) * 60 + float(s), log.name
    raise SystemExit(f"{run}: no complete Snakemake log in .snakemake/log/")


def _rule_of(path: Path, root: Path) -> str:
    """benchmarks/<rule>/... or benchmarks/<rule>.tsv."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else path.stem


def _task_of(path: Path, root: Path) -> str:
    """benchmarks/<rule>/<task>/...; "" for a job of the whole grid."""
    parts = path.relative_to(root).parts
    return parts[1] if len(parts) > 2 else ""


def startup_seconds(run: Path, benchmark: Path) -> float | None:
    """The start-up the job of `benchmark` logged last (its log: logs/ instead of benchmarks/,
    .log instead of .tsv); None when its log says none."""
    log = run / "logs" / benchmark.relative_to(run / "benchmarks").with_suffix(".log")
    try:
        found = _STARTUP.findall(log.read_text(errors="replace"))
    except OSError:
        return None
    return float(found[-1]) if found else None


def job_times(run: Path) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]],
                                  dict[str, float]]:
    """Per rule: jobs, summed wall seconds, CPU seconds and start-up seconds (and how many jobs
    logged one) of its benchmark files; per task, the summed wall seconds of each rule (which
    task the time goes to); per seed (and "shared"), the summed wall seconds."""
    root = run / "benchmarks"
    totals: dict[str, dict[str, float]] = defaultdict(lambda: {"jobs": 0, "wall_s": 0.0,
                                                               "cpu_s": 0.0, "startup_s": 0.0,
                                                               "startup_jobs": 0})
    per_task: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    per_seed: dict[str, float] = defaultdict(float)
    for path in sorted(root.rglob("*.tsv")):
        with path.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            continue
        entry = totals[_rule_of(path, root)]
        entry["jobs"] += 1
        entry["wall_s"] += float(rows[-1]["s"])
        entry["cpu_s"] += float(rows[-1]["cpu_time"] or 0.0)
        startup = startup_seconds(run, path)
        if startup is not None:
            entry["startup_s"] += startup
            entry["startup_jobs"] += 1
        seed = _SEED.search(path.as_posix())
        rule = _rule_of(path, root)
        per_seed[f"seed{seed.group(1)}" if seed and rule in SEEDED_RULES else "shared"] += float(
            rows[-1]["s"])
        task = _task_of(path, root)
        if task:
            per_task[task][_rule_of(path, root)] += float(rows[-1]["s"])
    if not totals:
        raise SystemExit(f"{run}: no benchmarks/**/*.tsv")
    return dict(totals), {t: dict(r) for t, r in per_task.items()}, dict(per_seed)


def _cpu() -> dict[str, str]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"model": platform.processor(), "isa": ""}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = set(fields.get("Flags", "").split())
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f in flags]
    return {"model": fields.get("Model name", "").strip(), "isa": " ".join(isa),
            "cpus": fields.get("CPU(s)", "").strip()}


def summarize(run: Path) -> dict:
    seconds, log = workflow_seconds(run)
    rules, tasks, seeds = job_times(run)
    task_rules = sorted({name for r in tasks.values() for name in r})
    wall = sum(r["wall_s"] for r in rules.values())
    cpu = sum(r["cpu_s"] for r in rules.values())
    train_wall = sum(rules[r]["wall_s"] for r in TRAINING_RULES if r in rules)
    train_cpu = sum(rules[r]["cpu_s"] for r in TRAINING_RULES if r in rules)
    startup = sum(r["startup_s"] for r in rules.values())
    logged = int(sum(r["startup_jobs"] for r in rules.values()))
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"), "cpu": _cpu(), "log": log,
        "workflow_seconds": round(seconds, 1),
        "jobs": int(sum(r["jobs"] for r in rules.values())),
        "job_seconds": round(wall, 1), "job_cpu_seconds": round(cpu, 1),
        "training_share": round(train_wall / wall, 3) if wall else float("nan"),
        "training_share_cpu": round(train_cpu / cpu, 3) if cpu else float("nan"),
        "startup_seconds": round(startup, 1),
        "startup_share": round(startup / wall, 3) if wall else float("nan"),
        "startup_jobs_logged": logged,
        "seeds": {name: round(s, 1) for name, s in sorted(seeds.items())},
        "rules": {name: {"jobs": int(r["jobs"]), "wall_s": round(r["wall_s"], 1),
                         "cpu_s": round(r["cpu_s"], 1), "startup_s": round(r["startup_s"], 1)}
                  for name, r in sorted(rules.items(), key=lambda kv: -kv[1]["wall_s"])},
        "tasks": {task: {"wall_s": round(sum(r.values()), 1),
                         **{name: round(r.get(name, 0.0), 1) for name in task_rules}}
                  for task, r in sorted(tasks.items(), key=lambda kv: -sum(kv[1].values()))},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("."), help="the run's directory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = summarize(args.run)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    minutes, secs = divmod(result["workflow_seconds"], 60)
    print(f"workflow {int(minutes)} min {secs:.0f} s, {result['jobs']} jobs, "
          f"{result['job_seconds']:.0f} s of job time; training "
          f"{100 * result['training_share']:.0f}% (cpu time: "
          f"{100 * result['training_share_cpu']:.0f}%); start-up "
          f"{100 * result['startup_share']:.1f}% ({result['startup_jobs_logged']} of "
          f"{result['jobs']} jobs logged it)")
    for name, r in result["rules"].items():
        print(f"  {name:20s} {r['jobs']:4d} jobs {r['wall_s']:8.1f} s  cpu {r['cpu_s']:8.1f} s "
              f"({100 * r['wall_s'] / result['job_seconds']:.0f}%), start-up "
              f"{r['startup_s']:.1f} s")
    print("  job time per seed: " + ", ".join(f"{k} {v:.0f} s" for k, v in
                                              result["seeds"].items()))
    for task, t in result["tasks"].items():
        rules = ", ".join(f"{name} {s:.0f}" for name, s in t.items() if name != "wall_s")
        print(f"  task {task:15s} {t['wall_s']:8.1f} s: {rules}")


if __name__ == "__main__":
    main()
