"""Snakemake script of rule evaluate: calls bibench.jobs.evaluate with the rule's params, input, output."""

from bibench.jobs import evaluate, run_from_snakemake

run_from_snakemake(snakemake, evaluate)  # noqa: F821  (snakemake is injected by Snakemake)
