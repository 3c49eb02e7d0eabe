"""Snakemake script of rule pretrain: calls bibench.jobs.pretrain with the rule's params, input, output."""

from bibench.jobs import pretrain, run_from_snakemake

run_from_snakemake(snakemake, pretrain)  # noqa: F821  (snakemake is injected by Snakemake)
