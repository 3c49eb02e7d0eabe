rule evaluate:
    """Task metric on the clean test set and on every configured corruption x severity."""
    input:
        force_deleted_results,
        data=dataset_files,
        checkpoint=cell_checkpoint,
    output:
        table="results/cells/{task}/{arch}/{algo}/seed{seed}/eval.parquet",
    params:
        task="{task}",
        arch="{arch}",
        algorithm="{algo}",
        seed="{seed}",
        dataset=dataset_params,
        corruptions=corruption_params,
        device=DEVICE,
        determinism=DETERMINISM,
        code=code("evaluate"),
    log:
        "logs/evaluate/{task}/{arch}/{algo}/seed{seed}.log",
    benchmark:
        "benchmarks/evaluate/{task}/{arch}/{algo}/seed{seed}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/bibench.yaml"
    script:
        "../scripts/evaluate.py"
