rule evaluate:
    """Everything measured on a trained cell's model, loaded once: the task metric on the
    clean test set and on every corruption x severity; every deployment form
    (bibench.export.forms), each checked against PyTorch on the test set; the per-layer
    complexity (paper Eq. 7). One job per cell: on small models the start of a job costs
    more than either half. For the cells of tasks that deploy (DEPLOYED_TASKS)."""
    input:
        force_deleted_results,
        data=dataset_files,
        checkpoint=cell_checkpoint,
    output:
        eval_table="results/cells/{task}/{arch}/{algo}/seed{seed}/eval.parquet",
        export_table="results/cells/{task}/{arch}/{algo}/seed{seed}/export.parquet",
        complexity="results/cells/{task}/{arch}/{algo}/seed{seed}/complexity.parquet",
        **form_outputs(),
    params:
        task="{task}",
        arch="{arch}",
        algorithm="{algo}",
        seed="{seed}",
        dataset=dataset_params,
        corruptions=corruption_params,
        export_settings=EXPORT,
        forms=form_params,
        device=DEVICE,
        determinism=DETERMINISM,
        code=code("evaluate"),
    wildcard_constraints:
        task=_alternatives(DEPLOYED_TASKS),
    log:
        "logs/evaluate/{task}/{arch}/{algo}/seed{seed}.log",
    benchmark:
        "benchmarks/evaluate/{task}/{arch}/{algo}/seed{seed}.tsv"
    priority: PRIORITY["evaluate"]
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/bibench.yaml"
    script:
        "../scripts/evaluate.py"


use rule evaluate as evaluate_without_export with:
    """The task metric (clean, corrupted) and the complexity of a cell of a task that does not
    deploy (`deploy: false`): no deployment forms, so no latency either."""
    output:
        eval_table="results/cells/{task}/{arch}/{algo}/seed{seed}/eval.parquet",
        complexity="results/cells/{task}/{arch}/{algo}/seed{seed}/complexity.parquet",
    params:
        task="{task}",
        arch="{arch}",
        algorithm="{algo}",
        seed="{seed}",
        dataset=dataset_params,
        corruptions=corruption_params,
        export_settings=None,
        forms=None,
        device=DEVICE,
        determinism=DETERMINISM,
        code=code("evaluate_without_export"),
    wildcard_constraints:
        task=_alternatives(UNDEPLOYED_TASKS),
