"""Thin Snakemake script: the work is a function of bibench.jobs (see there)."""

from bibench.jobs import run_from_snakemake, sensitivity

run_from_snakemake(snakemake, sensitivity)  # noqa: F821  (snakemake is injected by Snakemake)
