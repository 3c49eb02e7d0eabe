"""Snakemake script of rule aggregate: calls bibench.jobs.aggregate with the rule's params, input, output."""

from bibench.jobs import aggregate, run_from_snakemake

run_from_snakemake(snakemake, aggregate)  # noqa: F821  (snakemake is injected by Snakemake)
