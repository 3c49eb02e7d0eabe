"""Snakemake script of rule report: calls bibench.jobs.report with the rule's params, input, output."""

from bibench.jobs import report, run_from_snakemake

run_from_snakemake(snakemake, report)  # noqa: F821  (snakemake is injected by Snakemake)
