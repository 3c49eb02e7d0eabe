# Config validation, wildcard constraints and target lists. Nothing heavy at parse time:
# bibench.config and bibench.catalog import neither torch nor the algorithms.
from bibench.catalog import (
    DEFAULT_DATA_ROOT,
    DOWNLOADABLE,
    EMBEDDED_DATASETS,
    FP32,
    algorithm_sources,
)
from bibench.config import canonical, check_config, config_hash

# Raises before any job is scheduled, naming every offending key; fills in schema defaults.
# Keys are sorted so that reordering a YAML file does not change any job's params.
CONFIG = canonical(check_config(config))

ALGORITHM_SOURCES = algorithm_sources()
TASKS = CONFIG["tasks"]
ALGORITHMS = CONFIG["algorithms"]
BINARY_ALGORITHMS = [a for a in ALGORITHMS if a != FP32]
SEEDS = CONFIG["seeds"]
EXPORT = CONFIG["export"]
LATENCY = CONFIG["latency"]
DEVICE = CONFIG["device"]
DETERMINISM = CONFIG["determinism"]
# Machine settings: a profile's set-threads overrides these (profiles/slurm gives training
# more). One thread per training job lets small models train side by side, which on a laptop
# beats two threads per job.
TRAIN_THREADS = 1
# Latency takes every core of a local run so nothing shares the CPU with it; it times only
# the thread counts up to what it got.
LATENCY_THREADS = max(
    [t for d in LATENCY["devices"].values() for t in d.get("threads") or LATENCY["threads"]]
)


def _alternatives(names):
    return "|".join(sorted(names, key=len, reverse=True))


wildcard_constraints:
    task=_alternatives(TASKS),
    arch=_alternatives({a for t in TASKS.values() for a in t["architectures"]}),
    algo=_alternatives(ALGORITHMS),
    seed=r"\d+",
    download=_alternatives(DOWNLOADABLE),
    setting=r"[a-z0-9][a-z0-9_.-]*",


# --- per-cell settings: passed as params so that changing them reruns exactly those cells ----


def _data_root(task):
    """Official datasets default to resources/, where the download rule puts them."""
    if task["dataset"] in EMBEDDED_DATASETS:
        return None
    return task["root"] or DEFAULT_DATA_ROOT


def dataset_params(wildcards):
    task = TASKS[wildcards.task]
    return {
        "name": task["dataset"],
        "root": _data_root(task),
        "options": task["options"],
        "max_train": task["max_train"],
        "max_test": task["max_test"],
    }


def _downloaded(dataset, root):
    if root == DEFAULT_DATA_ROOT and dataset in DOWNLOADABLE:
        return [f"{DEFAULT_DATA_ROOT}/{dataset}.json"]
    return []


def task_downloads(name):
    """Download manifests of the data a task reads from resources/ (none for the rest)."""
    task = TASKS[name]
    files = _downloaded(task["dataset"], _data_root(task))
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
    task = TASKS[wildcards.task]
    return {"corruptions": task["corruptions"], "files": task["corruption_files"]}


def algorithm_source(wildcards):
    """The algorithm's own file (none for fp32): editing it makes only its cells stale."""
    return [] if wildcards.algo == FP32 else str(ALGORITHM_SOURCES[wildcards.algo])


def _trained_file(name, task, arch, algo, seed):
    """FP32 cells are the pretrained models themselves; other cells have their own run."""
    if algo == FP32:
        return f"results/pretrain/{task}/{arch}/seed{seed}/{name}"
    return f"results/cells/{task}/{arch}/{algo}/seed{seed}/{name}"


def cell_checkpoint(wildcards):
    w = wildcards
    return _trained_file("model.pt", w.task, w.arch, w.algo, w.seed)


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


def cell_files(pattern):
    return [pattern.format(**c) for c in cells()]


def train_tables(wildcards=None):
    return sorted({_trained_file("train.parquet", **c) for c in cells()})


def complexity_tables(wildcards=None):
    return cell_files("results/cells/{task}/{arch}/{algo}/seed{seed}/complexity.parquet")


SENSITIVITY = CONFIG["sensitivity"]


def sensitivity_settings(wildcards):
    """The task's pretrain (FP32) or finetune (binarized) settings with the setting's overrides."""
    task = TASKS[wildcards.task]
    base = task["pretrain"] if wildcards.algo == FP32 else task["finetune"]
    return canonical({**base, **SENSITIVITY["settings"][wildcards.setting]})


def sensitivity_start(wildcards):
    """Binarized runs start from the task's FP32 checkpoint (the grid's first seed: every
    binarized model of a task and architecture starts from the same pretrained model, paper
    Sec. 4); FP32 runs train from scratch with their own seed."""
    if wildcards.algo == FP32:
        return []
    return _trained_file("model.pt", wildcards.task, wildcards.arch, FP32, SEEDS[0])


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
