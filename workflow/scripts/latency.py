"""Thin Snakemake script: the work is a function of bibench.jobs (see there)."""

from bibench.jobs import latency, run_from_snakemake

run_from_snakemake(snakemake, latency)  # noqa: F821  (snakemake is injected by Snakemake)
