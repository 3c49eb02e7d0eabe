"""What makes a cached result stale: the code it came from, and files that went missing.

Read by the Snakefile at parse time, so it imports neither torch nor anything that does.

Code fingerprints. Every job gets `params.code`, a hash of the source files its results depend
on (the map below), and writes it into every row (`code_fingerprint`). Snakemake reruns a job
whose params changed, so editing a file makes stale exactly the jobs that read it, and through
their outputs what depends on them: `base.py` or `binarize.py` every binarized cell, the
training loop every trained model, a model module that architecture's cells, a dataset loader
that dataset's cells, the evaluation and export code the evaluate (and so latency) jobs, the
report code the report. Hashing the ~60 files takes a few milliseconds.

Holes. Snakemake >= 7.8 does not remake a deleted intermediate file while the files computed
from it are up to date (snakemake/snakemake#1978). `holes` finds such files so that the
workflow can force their jobs (and with them everything downstream).

Damaged files. A table or checkpoint that cannot be read (empty, truncated, not Parquet or of
another schema; a checkpoint that is not a whole archive) looks up to date to Snakemake, which
looks at names and times only, and would stop every job that reads it. `damaged` finds them
all at once, reading a table's footer and a checkpoint's zip directory (not their data), so
that the workflow forces them like holes and `bibench status` calls them damaged: the same
check for both.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

from bibench.catalog import FP32, algorithm_sources
from bibench.sources import architecture_files, dataset_files

PACKAGE = Path(__file__).resolve().parent

# Files every job's results depend on: the job functions, the table schemas, the settings hash,
# the catalog of names every registry reads, and the provenance and machine description in
# every row.
GLUE = ("jobs.py", "io.py", "config.py", "catalog.py", "provenance.py", "latency/machine.py")
# Code that turns a model into a binarized one (for the cells of every binarization algorithm).
BINARIZATION = ("algorithms/__init__.py", "algorithms/base.py", "binarize.py")
TRAINING = ("training/*.py",)
PREDICTION = ("evaluation/predict.py", "evaluation/task_metrics.py",
              "evaluation/detection_metrics.py")
EVALUATION = ("evaluation/*.py", "evaluation/frost/*", "metrics/quality.py")
EXPORT = ("export/*.py", "latency/timing.py", "metrics/complexity.py", "metrics/quality.py",
          *PREDICTION)
# The evaluate job of a task that does not deploy: metrics and complexity, no export forms.
# (Training code too: the device set-up lives there, and a change to training changes the
# checkpoint that the evaluation reads anyway.)
MEASUREMENT = (*TRAINING, *EVALUATION, "metrics/complexity.py")
# (the export forms' registry: which forms a cell has and how a not-exported one is noted)
LATENCY = ("latency/*.py", "export/forms.py")
# The registries the aggregate and the report read architectures' families and algorithms'
# facts from (for the aggregate, job_sources adds the grid's architecture and algorithm modules).
REGISTRIES = ("models/__init__.py", "algorithms/__init__.py", "algorithms/base.py")
# (the task metrics: the paired tests recompute a metric that is not a mean per example)
AGGREGATE = ("metrics/*.py", "evaluation/task_metrics.py", "evaluation/detection_metrics.py",
             "latency/engines.py", *REGISTRIES)
REPORT = ("report/**/*", *AGGREGATE)

# An architecture's and a dataset's code: the module that registers it and what that module
# imports (bibench.sources reads the registrations, so this map has no list of its own).
# CIFAR-10-C files read by the evaluate job when a task names them: the cifar10c loader's code.
CORRUPTION_DATASET = "cifar10c"

TRAINED_RULES = ("pretrain", "binarize_finetune", "sensitivity")
EVALUATE_RULES = ("evaluate", "evaluate_without_export")
MODEL_RULES = (*TRAINED_RULES, *EVALUATE_RULES)
# Jobs whose results an installed engine plugin's code shapes (its timings, their summary).
TIMING_RULES = ("latency", "aggregate", "report")


def _stage_files(rule: str) -> tuple[str, ...]:
    stages = {"pretrain": TRAINING, "binarize_finetune": TRAINING,
              "sensitivity": TRAINING + PREDICTION,
              "evaluate": MEASUREMENT + EXPORT, "evaluate_without_export": MEASUREMENT,
              "latency": LATENCY,
              "aggregate": AGGREGATE, "report": REPORT}
    try:
        return GLUE + stages[rule]
    except KeyError:
        raise KeyError(f"no code map for rule {rule!r} (known: {', '.join(stages)})") from None


def _architecture_files(arch: str) -> list[str]:
    return list(architecture_files(arch))


def job_sources(rule: str, dataset: str | None = None, arch: str | None = None,
                algorithm: str | None = None, corruption_files: bool = False,
                grid: tuple[tuple[str, ...], tuple[str, ...]] | None = None) -> list[Path]:
    """Every source file the results of `rule` for this cell depend on, sorted.

    `grid` (architectures, algorithms) is the whole grid's, for the aggregate."""
    patterns = list(_stage_files(rule))
    extra: list[Path] = []
    if rule in MODEL_RULES:
        patterns += _architecture_files(arch)
        patterns += dataset_files(dataset)
        if algorithm != FP32:
            patterns += BINARIZATION
            extra.append(_algorithm_sources()[algorithm])
    if grid is not None:
        archs, algorithms = grid
        patterns += [f for a in archs for f in _architecture_files(a)]
        extra += [_algorithm_sources()[a] for a in algorithms if a != FP32]
    if rule in EVALUATE_RULES and corruption_files:
        patterns += dataset_files(CORRUPTION_DATASET)
    if rule in TIMING_RULES:
        from bibench.latency.engines import plugin_engine_sources

        extra += plugin_engine_sources()
    files = {p for pattern in patterns for p in _expand(pattern)}
    return sorted(files | set(extra), key=str)


@cache
def _expand(pattern: str) -> tuple[Path, ...]:
    return tuple(p for p in PACKAGE.glob(pattern) if p.is_file() and "__pycache__" not in p.parts)


@cache
def _algorithm_sources() -> dict[str, Path]:
    return algorithm_sources()


@cache
def _file_hash(path: Path) -> bytes:
    """The file's name (relative to the package, so that clones agree) and content."""
    name = path.relative_to(PACKAGE) if path.is_relative_to(PACKAGE) else path.name
    return hashlib.sha256(str(name).encode() + b"\0" + path.read_bytes()).digest()


def fingerprint(files: Iterable[Path]) -> str:
    """A short hash of the files' names and contents."""
    return hashlib.sha256(b"".join(sorted(_file_hash(p) for p in files))).hexdigest()[:16]


@cache
def code_fingerprint(rule: str, dataset: str | None = None, arch: str | None = None,
                     algorithm: str | None = None, corruption_files: bool = False,
                     grid: tuple[tuple[str, ...], tuple[str, ...]] | None = None) -> str:
    """The fingerprint of the code behind `rule`'s results for this cell (`params.code`)."""
    return fingerprint(job_sources(rule, dataset, arch, algorithm, corruption_files, grid))


def combine(fingerprints: Iterable[str]) -> str:
    """One fingerprint for a row built from several (metrics.parquet rows, tracks rows)."""
    return hashlib.sha256("\0".join(sorted(set(fingerprints))).encode()).hexdigest()[:16]


def holes(chains: Iterable[tuple[Sequence[str], Sequence[str]]]) -> list[str]:
    """Files that are missing while a file computed from them exists.

    `chains` pairs a job's outputs with the files computed from them. Snakemake would leave
    such a file missing (and the downstream files stale); forcing it recomputes it and all
    that depends on it. A file missing with nothing downstream yet is just not made yet.
    """
    found: set[str] = set()
    for outputs, downstream in chains:
        missing = [f for f in outputs if not os.path.exists(f)]
        if missing and any(os.path.exists(f) for f in downstream):
            found.update(missing)
    return sorted(found)


CHECKPOINT = "checkpoint"  # the kind of a model.pt for `damage` (tables: their schema's name)


def damage(path: str | Path, kind: str) -> str | None:
    """What makes the existing result `path` unreadable, or None when it reads.

    `kind` is a table's schema name (bibench.io.SCHEMAS: its footer must parse and hold that
    schema) or CHECKPOINT (a complete zip archive as torch.save writes it: every member where
    the zip directory says and within the file, and a whole data.pkl). Data pages and
    tensors are not read: a few hundred files take a fraction of a second, without torch."""
    path = Path(path)
    return _checkpoint_damage(path) if kind == CHECKPOINT else _table_damage(path, kind)


def damaged(files: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(path, problem) of each existing file of `files` ((path, kind) pairs) that is damaged."""
    found = []
    for path, kind in files:
        if os.path.isfile(path) and (problem := damage(path, kind)) is not None:
            found.append((path, problem))
    return found


def _table_damage(path: Path, table: str) -> str | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bibench.io import SCHEMAS, _parquet_problem, _schema_difference

    try:
        found = pq.read_schema(path).remove_metadata()
    except (pa.ArrowException, OSError) as err:
        return _parquet_problem(path, err)
    if not found.equals(SCHEMAS[table]):
        return (f"its columns are not those of table {table!r} "
                f"({_schema_difference(found, SCHEMAS[table])})")
    return None


def _checkpoint_damage(path: Path) -> str | None:
    import pickle
    import struct
    import zipfile
    import zlib

    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive, path.open("rb") as raw:
            members = archive.infolist()
            pickles = [m for m in members if m.filename.rsplit("/", 1)[-1] == "data.pkl"]
            if len(pickles) != 1:
                return f"not a checkpoint archive ({size} bytes: no data.pkl in it)"
            directory = getattr(archive, "start_dir", size)
            for member in members:
                raw.seek(member.header_offset)
                header = raw.read(30)
                if len(header) < 30 or header[:4] != b"PK\x03\x04":
                    return (f"not a complete checkpoint archive ({size} bytes: "
                            f"{member.filename} is overwritten)")
                name, extra = struct.unpack("<HH", header[26:30])
                if member.header_offset + 30 + name + extra + member.compress_size > directory:
                    return (f"not a complete checkpoint archive ({size} bytes: "
                            f"{member.filename} is cut short)")
            data = archive.read(pickles[0])  # its CRC checked
            if data[:1] != pickle.PROTO or data[-1:] != pickle.STOP:
                return f"not a complete checkpoint archive ({size} bytes: data.pkl is cut short)"
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error) as err:
        return f"not a complete checkpoint archive ({size} bytes: {err})"
    return None
