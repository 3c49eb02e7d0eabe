"""Thin Snakemake script: the work is a function of bibench.jobs (see there)."""

from bibench.jobs import download_dataset, run_from_snakemake

run_from_snakemake(snakemake, download_dataset)  # noqa: F821  (snakemake is injected by Snakemake)
