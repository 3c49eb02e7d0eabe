rule aggregate:
    """Every cell's tables joined into results/metrics.parquet; the tracks' metrics."""
    input:
        force_deleted_results,
        train_tables=train_tables,
        eval_tables=cell_files("results/cells/{task}/{arch}/{algo}/seed{seed}/eval.parquet"),
        export_tables=cell_files("results/cells/{task}/{arch}/{algo}/seed{seed}/export.parquet",
                                 deployed_only=True),
        latency_tables=latency_tables,
        complexity_tables=complexity_tables,
        sensitivity_tables=sensitivity_tables,
    output:
        metrics="results/metrics.parquet",
        tracks="results/tracks.parquet",
        hardware="results/latency.parquet",
        summary="results/summary.parquet",
        comparisons="results/comparisons.parquet",
        bootstrap="results/bootstrap.parquet",
    params:
        tasks=TASKS,
        config_hash=CONFIG_HASH,
        code=code("aggregate"),
    log:
        "logs/aggregate.log",
    benchmark:
        "benchmarks/aggregate.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/bibench.yaml"
    script:
        "../scripts/aggregate.py"


rule report:
    """Self-contained HTML report (tables and embedded figures). Snakemake deletes the output
    of a failed job: the job keeps the last good report as results/report.last-good.html and
    leaves results/report.FAILED.txt saying what failed (bibench.jobs.report)."""
    input:
        force_deleted_results,
        metrics="results/metrics.parquet",
        tracks="results/tracks.parquet",
        hardware="results/latency.parquet",
        summary="results/summary.parquet",
        comparisons="results/comparisons.parquet",
        bootstrap="results/bootstrap.parquet",
        sensitivity_tables=sensitivity_tables,
        train_tables=train_tables,
    output:
        html=report(
            "results/report.html",
            caption="../report/report.rst",
            category="Report",
        ),
    params:
        code=code("report"),
    log:
        "logs/report.log",
    benchmark:
        "benchmarks/report.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/bibench.yaml"
    script:
        "../scripts/report.py"
