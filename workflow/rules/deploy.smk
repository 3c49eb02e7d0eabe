rule latency:
    """Batch-1 latency on every configured device x engine (bibench.latency.engines) x thread
    count, the FP32 model of the same architecture timed in the same job. It takes every core
    so that nothing runs beside it (latency_slot keeps it apart on executors that do not count
    cores)."""
    input:
        force_deleted_results,
        **form_inputs(),
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
        forms=timed_forms,
        code=code("latency"),
    wildcard_constraints:
        task=_alternatives(DEPLOYED_TASKS),
    log:
        "logs/latency/{task}/{arch}/{algo}/seed{seed}.log",
    benchmark:
        "benchmarks/latency/{task}/{arch}/{algo}/seed{seed}.tsv"
    priority: PRIORITY["latency"]
    threads: LATENCY_THREADS
    resources:
        mem_mb=2000,
        runtime=30,
        latency_slot=1,
    conda:
        "../envs/bibench.yaml"
    script:
        "../scripts/latency.py"
