"""Thin Snakemake script: the work is a function of bibench.jobs (see there)."""

from bibench.jobs import report, run_from_snakemake

run_from_snakemake(snakemake, report)  # noqa: F821  (snakemake is injected by Snakemake)
