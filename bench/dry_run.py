"""Benchmark: how long `snakemake -n` takes to plan (target: under 3 s on a finished run).

Run from the repository root after `snakemake --cores 2 results/report.html`:
    python bench/dry_run.py [--configfile FILE] [--repeats 3]
Prints the median wall time and whether Snakemake found nothing to do.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cmd = [sys.executable, "-m", "snakemake", "-n"]
    if args.configfile:
        cmd += ["--configfile", args.configfile]
    times, nothing = [], False
    for _ in range(args.repeats):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        nothing = "Nothing to be done" in proc.stdout + proc.stderr
    result = {"median_seconds": statistics.median(times), "nothing_to_do": nothing}
    print(
        json.dumps(result)
        if args.json
        else f"snakemake -n: median {result['median_seconds']:.2f} s over {args.repeats} runs; "
        f"nothing to do: {nothing}"
    )


if __name__ == "__main__":
    main()
