"""Snakemake script of rule complexity: calls bibench.jobs.complexity with the rule's params, input, output."""

from bibench.jobs import complexity, run_from_snakemake

run_from_snakemake(snakemake, complexity)  # noqa: F821  (snakemake is injected by Snakemake)
