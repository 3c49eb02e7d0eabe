"""Thin Snakemake script: the work is a function of bibench.jobs (see there)."""

from bibench.jobs import complexity, run_from_snakemake

run_from_snakemake(snakemake, complexity)  # noqa: F821  (snakemake is injected by Snakemake)
