"""Snakemake script of rule export_onnx: calls bibench.jobs.export with the rule's params, input, output."""

from bibench.jobs import export, run_from_snakemake

run_from_snakemake(snakemake, export)  # noqa: F821  (snakemake is injected by Snakemake)
