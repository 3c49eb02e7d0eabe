"""Snakemake script of rule binarize_finetune: calls bibench.jobs.finetune with the rule's params, input, output."""

from bibench.jobs import finetune, run_from_snakemake

run_from_snakemake(snakemake, finetune)  # noqa: F821  (snakemake is injected by Snakemake)
