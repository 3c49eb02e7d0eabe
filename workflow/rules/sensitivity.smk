rule sensitivity:
    """One run of the hyperparameter-sensitivity grid (training-consumption track, paper
    Tables 12-13): FP32 trains from scratch, binarized cells finetune from the FP32 checkpoint,
    both with the setting's optimizer, learning rate and scheduler; clean test metric only."""
    input:
        force_deleted_results,
        data=dataset_files,
        pretrained=sensitivity_start,
    output:
        table="results/sensitivity/{task}/{arch}/{algo}/{setting}/seed{seed}.parquet",
    params:
        task="{task}",
        arch="{arch}",
        algorithm="{algo}",
        seed="{seed}",
        setting="{setting}",
        dataset=dataset_params,
        settings=sensitivity_settings,
        device=DEVICE,
        determinism=DETERMINISM,
        code=code("sensitivity"),
    log:
        "logs/sensitivity/{task}/{arch}/{algo}/{setting}/seed{seed}.log",
    benchmark:
        "benchmarks/sensitivity/{task}/{arch}/{algo}/{setting}/seed{seed}.tsv"
    priority: PRIORITY["train_cell"]
    threads: TRAIN_THREADS
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../envs/bibench.yaml"
    script:
        "../scripts/sensitivity.py"
