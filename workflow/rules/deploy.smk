rule export_onnx:
    """ONNX export, checked by onnx.checker and by parity with PyTorch on the test set."""
    input:
        checkpoint=cell_checkpoint,
    output:
        onnx="results/cells/{task}/{arch}/{algo}/seed{seed}/model.onnx",
        table="results/cells/{task}/{arch}/{algo}/seed{seed}/export.parquet",
    params:
        task="{task}",
        arch="{arch}",
        algorithm="{algo}",
        seed="{seed}",
        dataset=dataset_params,
        settings=EXPORT,
    log:
        "logs/export_onnx/{task}/{arch}/{algo}/seed{seed}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/bibench.yaml"
    script:
        "../scripts/export_onnx.py"


rule latency:
    """Batch-1 latency on the local CPU, timed against the FP32 model in the same job."""
    input:
        onnx="results/cells/{task}/{arch}/{algo}/seed{seed}/model.onnx",
        fp32_onnx=fp32_onnx,
    output:
        table="results/cells/{task}/{arch}/{algo}/seed{seed}/latency.parquet",
    params:
        task="{task}",
        arch="{arch}",
        algorithm="{algo}",
        seed="{seed}",
        settings=LATENCY,
    log:
        "logs/latency/{task}/{arch}/{algo}/seed{seed}.log",
    benchmark:
        "benchmarks/latency/{task}/{arch}/{algo}/seed{seed}.tsv"
    threads: LATENCY["threads"]
    resources:
        mem_mb=2000,
        runtime=30,
        latency_slot=1,
    conda:
        "../envs/bibench.yaml"
    script:
        "../scripts/latency.py"


rule complexity:
    """Per-layer parameters and FLOPs, binary vs full precision (paper Eq. 7)."""
    input:
        data=dataset_files,
        algorithm_source=algorithm_source,
    output:
        table=COMPLEXITY,
    params:
        task="{task}",
        arch="{arch}",
        algorithm="{algo}",
        dataset=dataset_params,
    log:
        "logs/complexity/{task}/{arch}/{algo}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/bibench.yaml"
    script:
        "../scripts/complexity.py"
