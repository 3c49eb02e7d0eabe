# Config validation, wildcard constraints and target lists. Nothing heavy at parse time:
# bibench.config and bibench.catalog import neither torch nor the algorithms.
import json
import os
import sys
from pathlib import Path

from bibench.cache import CHECKPOINT, code_fingerprint, damaged, holes
from bibench.catalog import (
    DEFAULT_DATA_ROOT,
    DOWNLOADABLE,
    FP32,
)
from bibench.config import (
    ConfigError,
    canonical,
    check_config,
    config_hash,
    corruption_settings,
    data_path_problems,
    data_root,
    dataset_settings,
    sensitivity_run_settings,
    timed_seed,
)
from bibench.export.forms import EXPORT_FORMS, EXPORT_TABLE, form_paths
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

# Raises before any job is scheduled, naming every offending key; fills in schema defaults.
# Keys are sorted so that reordering a YAML file does not change any job's params.
CONFIG = canonical(check_config(config))


def _check_data_folders():
    """A data folder the config names must exist before any job runs (a job would fail
    reading it); a dry run only warns, so that a grid can be planned without its data."""
    problems = data_path_problems(CONFIG)
    if not problems:
        return
    message = "invalid bibench config:\n  " + "\n  ".join(problems)
    if workflow.output_settings is not None and workflow.output_settings.dryrun:
        logger.warning(f"{message}\n(dry run: a real run stops here)")
    else:
        raise ConfigError(message)


_check_data_folders()

TASKS = CONFIG["tasks"]
ALGORITHMS = CONFIG["algorithms"]
BINARY_ALGORITHMS = [a for a in ALGORITHMS if a != FP32]
SEEDS = CONFIG["seeds"]
# One FP32 model per task and architecture, the start of every seed's binarized cells
# (docs/design.md, "What a seed varies").
PRETRAIN_SEED = CONFIG["pretrain_seed"]
# Latency is measured on one seed's export forms (bibench.config.timed_seed); the evaluate job
# still checks each seed's forms.
TIMED_SEED = timed_seed(CONFIG)
EXPORT = CONFIG["export"]
LATENCY = CONFIG["latency"]
DEVICE = CONFIG["device"]
DETERMINISM = CONFIG["determinism"]
# Machine settings: a profile's set-threads overrides these (profiles/slurm gives training
# more). One thread per training job lets small models train side by side, which on a laptop
# beats two threads per job.
TRAIN_THREADS = 1


def _run_cores():
    """--cores of this run (Snakemake caps every job's threads at it); 1 where none is set."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


# Job order where more jobs are ready than cores: stage by stage, the pretrained
# models first, since every cell waits for one. Within a stage the greedy scheduler
# (profiles/default) starts the job with the largest inputs first: the costliest models, so
# the run does not end on one long job beside an idle core. A default run that left the text
# pretraining for last idled a core for 48 s.
PRIORITY = {"pretrain": 3, "train_cell": 2, "evaluate": 1, "latency": 0}


# Latency takes every core of the run so nothing shares the CPU with it, even when it times
# fewer threads; it times only the thread counts up to what it got.
LATENCY_THREADS = max(
    _run_cores(),
    *[t for d in LATENCY["devices"].values() for t in d.get("threads") or LATENCY["threads"]],
)


def _alternatives(names):
    """A wildcard pattern matching exactly these names; one that matches nothing if none."""
    return "|".join(sorted(names, key=len, reverse=True)) or "(?!)"


# Tasks whose cells are exported and timed (a task's `deploy`); the others are measured for
# accuracy and theoretical complexity only.
DEPLOYED_TASKS = [t for t, spec in TASKS.items() if spec["deploy"]]
UNDEPLOYED_TASKS = [t for t in TASKS if t not in DEPLOYED_TASKS]


wildcard_constraints:
    task=_alternatives(TASKS),
    arch=_alternatives({a for t in TASKS.values() for a in t["architectures"]}),
    algo=_alternatives(ALGORITHMS),
    seed=r"\d+",
    download=_alternatives(DOWNLOADABLE),
    setting=r"[a-z0-9][a-z0-9_.-]*",


# --- per-cell settings: passed as params so that changing them reruns exactly those cells ----


def dataset_params(wildcards):
    return dataset_settings(TASKS[wildcards.task])


def _downloaded(dataset, root):
    if root == DEFAULT_DATA_ROOT and dataset in DOWNLOADABLE:
        return [f"{DEFAULT_DATA_ROOT}/{dataset}.json"]
    return []


def task_downloads(name):
    """Download manifests of the data a task reads from resources/ (none for the rest)."""
    task = TASKS[name]
    files = _downloaded(task["dataset"], data_root(task))
    if task["corruption_files"] is not None:
        files += _downloaded("cifar10c", task["corruption_files"])
    return files


def dataset_files(wildcards):
    return task_downloads(wildcards.task)


def pretrain_settings(wildcards):
    return TASKS[wildcards.task]["pretrain"]


def finetune_settings(wildcards):
    return TASKS[wildcards.task]["finetune"]


def corruption_params(wildcards):
    return corruption_settings(TASKS[wildcards.task])


# The architectures and algorithms of the grid: the aggregate reads their registered facts.
GRID = (
    tuple(sorted({a for t in TASKS.values() for a in t["architectures"]})),
    tuple(ALGORITHMS),
)


def code(rule_name):
    """params.code of a rule: the fingerprint of the source files its results depend on."""

    def cell_code(wildcards):
        task = TASKS.get(wildcards.get("task"), {})
        return code_fingerprint(
            rule_name,
            dataset=task.get("dataset"),
            arch=wildcards.get("arch"),
            algorithm=wildcards.get("algo", FP32),
            corruption_files=task.get("corruption_files") is not None,
            grid=GRID if rule_name == "aggregate" else None,
        )

    return cell_code


def _trained_file(name, task, arch, algo, seed):
    """FP32 cells of every seed are the one pretrained model of their task and architecture;
    other cells have their own run."""
    if algo == FP32:
        return f"results/pretrain/{task}/{arch}/seed{PRETRAIN_SEED}/{name}"
    return f"results/cells/{task}/{arch}/{algo}/seed{seed}/{name}"


def cell_checkpoint(wildcards):
    w = wildcards
    return _trained_file("model.pt", w.task, w.arch, w.algo, w.seed)


def pretrained_checkpoint(wildcards):
    return _trained_file("model.pt", wildcards.task, wildcards.arch, FP32, PRETRAIN_SEED)


def fp32_onnx(wildcards):
    w = wildcards
    return f"results/cells/{w.task}/{w.arch}/{FP32}/seed{w.seed}/model.onnx"


# --- target lists ------------------------------------------------------------------------------


def cells():
    """(task, arch, algo, seed) of every cell in the grid."""
    return [
        {"task": task, "arch": arch, "algo": algo, "seed": seed}
        for task, spec in TASKS.items()
        for arch in spec["architectures"]
        for algo in ALGORITHMS
        for seed in SEEDS
    ]


def cell_files(pattern, deployed_only=False):
    """`pattern` for every cell (with deployed_only: of the tasks that deploy)."""
    return [pattern.format(**c) for c in cells()
            if not deployed_only or c["task"] in DEPLOYED_TASKS]


def timed(c):
    """Whether cell c is timed: the first seed's cells of the tasks that deploy."""
    return c["task"] in DEPLOYED_TASKS and c["seed"] == TIMED_SEED


def latency_tables(wildcards=None):
    return [CELL_DIR.format(**c) + "latency.parquet" for c in cells() if timed(c)]


def train_tables(wildcards=None):
    return sorted({_trained_file("train.parquet", **c) for c in cells()})


def complexity_tables(wildcards=None):
    return cell_files("results/cells/{task}/{arch}/{algo}/seed{seed}/complexity.parquet")


SENSITIVITY = CONFIG["sensitivity"]


def sensitivity_settings(wildcards):
    w = wildcards
    return sensitivity_run_settings(CONFIG, w.task, w.algo, w.setting)


def sensitivity_start(wildcards):
    """Binarized runs start from the task's FP32 checkpoint (every binarized model of a task
    and architecture starts from the same pretrained model, paper Sec. 4); FP32 runs train
    from scratch with their own seed."""
    if wildcards.algo == FP32:
        return []
    return pretrained_checkpoint(wildcards)


def sensitivity_tables(wildcards=None):
    return [
        f"results/sensitivity/{task}/{arch}/{algo}/{setting}/seed{seed}.parquet"
        for task in SENSITIVITY["tasks"]
        for arch in TASKS[task]["architectures"]
        for algo in ALGORITHMS
        for setting in SENSITIVITY["settings"]
        for seed in SENSITIVITY["seeds"]
    ]


CONFIG_HASH = config_hash(CONFIG)


# --- deleted results ---------------------------------------------------------------------------
# Snakemake (>= 7.8) leaves a deleted intermediate file missing while the files computed from it
# are up to date. Such holes are forced, so that the next run recomputes exactly
# them and what depends on them (bibench/cache.py). Every rule lists force_deleted_results as
# an input. Only the main process decides this: a cluster job re-parses the Snakefile to run
# one job.
AGGREGATE_FILES = [
    "results/metrics.parquet",
    "results/tracks.parquet",
    "results/latency.parquet",
    "results/comparisons.parquet",
    "results/bootstrap.parquet",
]
SUMMARY_FILES = AGGREGATE_FILES + ["results/report.html"]
CELL_DIR = "results/cells/{task}/{arch}/{algo}/seed{seed}/"
MEASURE_FILES = ["eval.parquet", "complexity.parquet"]
EXPORT_FILES = [*form_paths(), EXPORT_TABLE]


def form_outputs():
    """The evaluate rule's outputs of the deployment forms (bibench.export.forms), by name."""
    return {f.output: directory(CELL_DIR + f.path) if f.directory else CELL_DIR + f.path
            for f in EXPORT_FORMS}


def form_params(wildcards, output):
    """The same, as the evaluate job's `forms` argument (form output name -> path)."""
    return {f.output: output[f.output] for f in EXPORT_FORMS}


def form_inputs():
    """The latency rule's inputs: every export form of the cell, by output name (each engine
    loads one of them; the evaluate job writes them together)."""
    return {f.output: CELL_DIR + f.path for f in EXPORT_FORMS}


def timed_forms(wildcards, input):
    """The latency job's `forms` argument: export form name -> the cell's file or folder."""
    return {f.name: input[f.output] for f in EXPORT_FORMS}


def _cell_chains(c):
    """(outputs of a job of cell c, files computed from them)."""
    cell = CELL_DIR.format(**c)
    trained = [_trained_file(n, **c) for n in ("model.pt", "train.parquet")]
    deployed = c["task"] in DEPLOYED_TASKS
    timed_name = ["latency.parquet"] if timed(c) else []
    evaluated = [f"{cell}{n}" for n in MEASURE_FILES + (EXPORT_FILES if deployed else [])]
    timings = [f"{cell}{n}" for n in timed_name]
    downstream = evaluated + timings + SUMMARY_FILES
    if c["algo"] == FP32:
        # the pretrained model: the FP32 cell of every seed, the start of every binarized cell
        # of every seed, and timed beside each timed cell of its group
        group = [CELL_DIR.format(**{**c, "algo": a, "seed": s})
                 for a in ALGORITHMS for s in SEEDS]
        downstream += [f"{d}{n}" for d in group for n in ["model.pt", *MEASURE_FILES]]
        downstream += [f"{CELL_DIR.format(**{**c, 'algo': a, 'seed': TIMED_SEED})}{n}"
                       for a in ALGORITHMS for n in timed_name]
        downstream += [t for t in sensitivity_tables() if f"/{c['task']}/{c['arch']}/" in t]
    chains = [(trained, downstream), (evaluated, timings + SUMMARY_FILES)]
    return chains + ([(timings, SUMMARY_FILES)] if timings else [])


def deleted_results():
    chains = [chain for c in cells() for chain in _cell_chains(c)]
    chains += [([t], SUMMARY_FILES) for t in sensitivity_tables()]
    chains += [(AGGREGATE_FILES, SUMMARY_FILES[len(AGGREGATE_FILES):])]
    return holes(chains)


def result_files():
    """(path, kind) of every table and checkpoint of the grid, for the damaged-file check
    (bibench.cache.damaged; `bibench status` checks the same files the same way)."""
    files = []
    for c in cells():
        files += [(_trained_file("model.pt", **c), CHECKPOINT),
                  (_trained_file("train.parquet", **c), "train")]
        tables = (MEASURE_FILES + (["export.parquet"] if c["task"] in DEPLOYED_TASKS else [])
                  + (["latency.parquet"] if timed(c) else []))
        files += [(CELL_DIR.format(**c) + n, n.removesuffix(".parquet")) for n in tables]
    files += [(t, "sensitivity") for t in sensitivity_tables()]
    return files + [(f, Path(f).stem) for f in AGGREGATE_FILES + ["results/summary.parquet"]]


_FORCED = []


def force_deleted_results(wildcards):
    """No files: the first input function Snakemake evaluates while it builds the DAG adds the
    holes and the damaged results to the DAG's forced files (as Snakemake's own
    --rerun-incomplete does with incomplete files), once, all of them before any job runs."""
    if not _FORCED and workflow.is_main_process:
        deleted, broken = deleted_results(), damaged(result_files())
        _FORCED.append(deleted + [path for path, _ in broken])
        if deleted:
            shown = ", ".join(deleted[:3]) + (" ..." if len(deleted) > 3 else "")
            logger.info(f"bibench: recomputing {len(deleted)} deleted result(s): {shown}")
        if broken:
            logger.warning(f"bibench: recomputing {len(broken)} damaged result(s):\n"
                           + "\n".join(f"  {path}: {problem}" for path, problem in broken))
        workflow.dag.forcefiles.update(_FORCED[0])
    return []


# --- the command a damaged file's message gives ------------------------------------------------
# A job that finds a damaged input (one damaged after the check above, or in a way it cannot
# see) stops with the command that recomputes it: this run's own command plus --forcerun FILE
# (bibench.io.recovery_command), so that a custom grid's run is not answered with the default
# grid's. Jobs inherit the main process's environment.


def _run_args():
    """The command-line arguments of this run (those of `snakemake`, or what an API caller set)."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    if program.name == "snakemake" or (program.name == "__main__.py"
                                       and program.parent.name == "snakemake"):
        return sys.argv[1:]
    args = ["--cores", "all"]
    configfiles = getattr(getattr(workflow, "config_settings", None), "configfiles", None)
    if configfiles:
        args += ["--configfile", *(os.path.relpath(f) for f in configfiles)]
    targets = sorted(getattr(getattr(workflow, "dag_settings", None), "targets", None) or [])
    return args + (["--", *targets] if targets else [])


if workflow.is_main_process:
    from bibench.io import RUN_ARGS_ENV

    os.environ[RUN_ARGS_ENV] = json.dumps(_run_args())
