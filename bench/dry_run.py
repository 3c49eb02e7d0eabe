"""Benchmark: how long `snakemake -n` takes to plan (target: under 3 s on a finished run).

Run from the repository root after `snakemake --cores 2 results/report.html`:
    python bench/dry_run.py [--configfile FILE] [--profile DIR] [--repeats 3] [--json]
Prints the median wall time, the number of jobs planned and whether Snakemake found nothing to
do. `--profile profiles/slurm` plans as a cluster submission does (job groups included; the
workflow profile is left out), what a login node pays before the first job is submitted.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile")
    parser.add_argument("--profile", help="plan with this profile (and no workflow profile)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cmd = [sys.executable, "-m", "snakemake", "-n"]
    if args.configfile:
        cmd += ["--configfile", args.configfile]
    if args.profile:
        cmd += ["--profile", args.profile, "--workflow-profile", "none"]
    times, nothing, jobs = [], False, 0
    for _ in range(args.repeats):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        output = proc.stdout + proc.stderr
        nothing = "Nothing to be done" in output
        total = re.search(r"^total\s+(\d+)", output, flags=re.M)  # the "Job stats" table
        jobs = int(total.group(1)) if total else 0
    result = {"median_seconds": round(statistics.median(times), 3), "jobs": jobs,
              "nothing_to_do": nothing}
    print(
        json.dumps(result)
        if args.json
        else f"snakemake -n: median {result['median_seconds']:.2f} s over {args.repeats} runs; "
        f"{jobs} jobs planned; nothing to do: {nothing}"
    )


if __name__ == "__main__":
    main()
