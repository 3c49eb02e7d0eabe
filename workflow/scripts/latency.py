"""Snakemake script of rule latency: calls bibench.jobs.latency with the rule's params, input, output."""

from bibench.jobs import latency, run_from_snakemake

run_from_snakemake(snakemake, latency)  # noqa: F821  (snakemake is injected by Snakemake)
