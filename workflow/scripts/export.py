"""Thin Snakemake script: the work is a function of bibench.jobs (see there)."""

from bibench.jobs import export, run_from_snakemake

run_from_snakemake(snakemake, export)  # noqa: F821  (snakemake is injected by Snakemake)
