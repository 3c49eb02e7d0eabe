rule pretrain:
    """Full-precision model per task x architecture (trained with the config's
    `pretrain_seed`): the FP32 cell of every seed and the start of every binarized cell."""
    input:
        force_deleted_results,
        data=dataset_files,
    output:
        model="results/pretrain/{task}/{arch}/seed{seed}/model.pt",
        table="results/pretrain/{task}/{arch}/seed{seed}/train.parquet",
    params:
        task="{task}",
        arch="{arch}",
        seed="{seed}",
        dataset=dataset_params,
        settings=pretrain_settings,
        device=DEVICE,
        determinism=DETERMINISM,
        code=code("pretrain"),
    log:
        "logs/pretrain/{task}/{arch}/seed{seed}.log",
    benchmark:
        "benchmarks/pretrain/{task}/{arch}/seed{seed}.tsv"
    priority: PRIORITY["pretrain"]
    threads: TRAIN_THREADS
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/bibench.yaml"
    script:
        "../scripts/pretrain.py"


rule binarize_finetune:
    """Binarize the pretrained model with one algorithm and finetune it with the cell's seed."""
    input:
        force_deleted_results,
        pretrained=pretrained_checkpoint,
    output:
        model="results/cells/{task}/{arch}/{algo}/seed{seed}/model.pt",
        table="results/cells/{task}/{arch}/{algo}/seed{seed}/train.parquet",
    params:
        task="{task}",
        arch="{arch}",
        algorithm="{algo}",
        seed="{seed}",
        dataset=dataset_params,
        settings=finetune_settings,
        device=DEVICE,
        determinism=DETERMINISM,
        code=code("binarize_finetune"),
    wildcard_constraints:
        algo=_alternatives(BINARY_ALGORITHMS),
    log:
        "logs/binarize_finetune/{task}/{arch}/{algo}/seed{seed}.log",
    benchmark:
        "benchmarks/binarize_finetune/{task}/{arch}/{algo}/seed{seed}.tsv"
    priority: PRIORITY["train_cell"]
    threads: TRAIN_THREADS
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../envs/bibench.yaml"
    script:
        "../scripts/binarize_finetune.py"


rule download_dataset:
    """Fetch an official dataset into resources/ (checksum-verified, extracted atomically)."""
    output:
        manifest="resources/{download}.json",
    params:
        name="{download}",
    log:
        "logs/download/{download}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=240,
        downloads=1,
    conda:
        "../envs/bibench.yaml"
    script:
        "../scripts/download_dataset.py"
