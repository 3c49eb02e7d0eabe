rule export:
    """Every deployment form (ONNX, QONNX, OpenVINO binary), each checked against PyTorch on
    the test set, and the per-layer complexity of the same model (paper Eq. 7)."""
    input:
        force_deleted_results,
        checkpoint=cell_checkpoint,
    output:
        onnx="results/cells/{task}/{arch}/{algo}/seed{seed}/model.onnx",
        qonnx="results/cells/{task}/{arch}/{algo}/seed{seed}/model.qonnx.onnx",
        openvino=directory("results/cells/{task}/{arch}/{algo}/seed{seed}/openvino"),
        table="results/cells/{task}/{arch}/{algo}/seed{seed}/export.parquet",
        complexity="results/cells/{task}/{arch}/{algo}/seed{seed}/complexity.parquet",
    params:
        task="{task}",
        arch="{arch}",
        algorithm="{algo}",
        seed="{seed}",
        dataset=dataset_params,
        settings=EXPORT,
        code=code("export"),
    log:
        "logs/export/{task}/{arch}/{algo}/seed{seed}.log",
    benchmark:
        "benchmarks/export/{task}/{arch}/{algo}/seed{seed}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/bibench.yaml"
    script:
        "../scripts/export.py"


rule latency:
    """Batch-1 latency on every configured device x engine x thread count, the FP32 model of
    the same architecture timed in the same job. It takes every core so that nothing runs
    beside it (latency_slot keeps it apart on executors that do not count cores)."""
    input:
        force_deleted_results,
        onnx="results/cells/{task}/{arch}/{algo}/seed{seed}/model.onnx",
        openvino="results/cells/{task}/{arch}/{algo}/seed{seed}/openvino",
        export_table="results/cells/{task}/{arch}/{algo}/seed{seed}/export.parquet",
        fp32_onnx=fp32_onnx,
    output:
        table="results/cells/{task}/{arch}/{algo}/seed{seed}/latency.parquet",
    params:
        task="{task}",
        arch="{arch}",
        algorithm="{algo}",
        seed="{seed}",
        settings=LATENCY,
        code=code("latency"),
    log:
        "logs/latency/{task}/{arch}/{algo}/seed{seed}.log",
    benchmark:
        "benchmarks/latency/{task}/{arch}/{algo}/seed{seed}.tsv"
    threads: LATENCY_THREADS
    resources:
        mem_mb=2000,
        runtime=30,
        latency_slot=1,
    conda:
        "../envs/bibench.yaml"
    script:
        "../scripts/latency.py"
