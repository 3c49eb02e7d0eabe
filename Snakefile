# bibench: pretrain -> binarize+finetune -> evaluate (clean, corrupted; export to ONNX, QONNX,
# OpenVINO binary; complexity: one job per cell) -> latency (devices x engines x threads)
# -> aggregate -> report. One Parquet file per benchmark cell; see README.md, docs/design.md.
import sys

sys.path.insert(0, workflow.basedir)  # use this checkout's bibench even if not installed


from bibench.config import check_config_files

# Given config files that are empty ({}) or too large, counting what their YAML aliases
# expand to, are refused here, naming the file, before anything walks the config.
check_config_files(workflow.overwrite_configfiles or [])


# The default config applies only when no --configfile is given: another grid (e.g.
# config/paper.yaml) must not inherit the default's tasks.
if not config:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/deploy.smk"
include: "workflow/rules/sensitivity.smk"
include: "workflow/rules/summarize.smk"


rule all:
    input:
        force_deleted_results,
        "results/report.html",
    default_target: True
