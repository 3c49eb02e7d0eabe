"""Parquet tables: one explicit pyarrow schema per table, written atomically.

A job writes its table under a temporary name in the destination folder and renames it into
place, so a crash never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# Columns every per-cell table carries: the cell's key and where the numbers come from.
CELL_KEY = [
    pa.field("task", pa.string(), nullable=False),
    pa.field("arch", pa.string(), nullable=False),
    pa.field("algorithm", pa.string(), nullable=False),
    pa.field("seed", pa.int64(), nullable=False),
]
PROVENANCE = [
    pa.field("cell_config_hash", pa.string()),
    # hash of the source files the row's numbers depend on (bibench.cache); in
    # metrics.parquet, of every table of the cell and the aggregate code
    pa.field("code_fingerprint", pa.string()),
    pa.field("bibench_version", pa.string()),
    pa.field("torch_version", pa.string()),
    pa.field("device", pa.string()),  # where the numbers were computed: cpu, cuda:0, ...
    pa.field("device_model", pa.string()),  # that device's GPU or CPU model name
    pa.field("precision", pa.string()),  # arithmetic of that computation: fp32, binary, ...
    pa.field("threads", pa.int64()),
]

SCHEMAS: dict[str, pa.Schema] = {
    "train": pa.schema(
        CELL_KEY
        + [
            pa.field("stage", pa.string()),  # "pretrain" | "finetune"
            pa.field("epoch", pa.int64()),
            pa.field("loss", pa.float64()),
            pa.field("train_accuracy", pa.float64()),
            pa.field("epoch_seconds", pa.float64()),
            pa.field("lr", pa.float64()),
            # ok | diverged | failed: <error> | skipped: full-precision model <its status>
            pa.field("status", pa.string()),
            # yes | no: <kernels without a deterministic implementation> | not checked | not run
            pa.field("deterministic", pa.string()),
            # last epoch only (NaN elsewhere): eval-mode accuracy on the fixed training sample
            # after the BatchNorm statistics were estimated (bibench.training.batchnorm)
            pa.field("eval_train_accuracy", pa.float64()),
        ]
        + PROVENANCE
    ),
    "eval": pa.schema(
        CELL_KEY
        + [
            pa.field("condition", pa.string()),  # "clean" or the corruption name
            pa.field("severity", pa.int64()),  # 0 for clean
            pa.field("metric", pa.string()),
            pa.field("value", pa.float64()),
            pa.field("n_samples", pa.int64()),
            # score of always answering the most frequent class, or of random boxes for a
            # detector (bibench.metrics.quality; NaN: no chance level)
            pa.field("chance_value", pa.float64()),
            pa.field("embedded", pa.bool_()),
            pa.field("stands_in_for", pa.string()),
            # ok | not evaluated: training <failed: ... | diverged | skipped: ...> (value NaN)
            pa.field("status", pa.string()),
            # per test example, in test-set order, what the paired tests between algorithms
            # resample (bibench.metrics.significance): the predicted class (per point, flattened,
            # for segmentation) or the regression output; null for detection and for cells not
            # evaluated. The targets are the same for every condition: the clean row has them.
            pa.field("predictions", pa.list_(pa.float32())),
            pa.field("targets", pa.list_(pa.float32())),
        ]
        + PROVENANCE
    ),
    # One row per exported form: onnx (float graph for onnxruntime), qonnx (BipolarQuant),
    # openvino_binary (FakeQuantize + +-1 weights, run as BinaryConvolution).
    "export": pa.schema(
        CELL_KEY
        + [
            pa.field("form", pa.string()),
            # ok | not deployable: ... | failed: ... | not exported: training ... (the cell's
            # training did not finish: no form was written)
            pa.field("status", pa.string()),
            pa.field("opset", pa.int64()),
            pa.field("file_bytes", pa.int64()),  # 0 when no file was written
            # storage as the engine keeps it: the IR's .bin with 1-bit weights for
            # openvino_binary (computed when it does not deploy), the file itself otherwise
            pa.field("packed_bytes", pa.int64()),
            pa.field("checker_passed", pa.bool_()),
            pa.field("argmax_agreement", pa.float64()),
            pa.field("within_logit_tolerance", pa.float64()),  # fraction of samples
            pa.field("max_abs_logit_diff", pa.float64()),
            pa.field("n_samples", pa.int64()),
            pa.field("n_binarized_layers", pa.int64()),
            pa.field("n_binary_conv", pa.int64()),  # BinaryConvolution layers executed
        ]
        + PROVENANCE
    ),
    # One row per device x engine x thread count: the cell's model and the FP32 model of the
    # same architecture timed in the same job (the speedup is a same-run ratio).
    "latency": pa.schema(
        CELL_KEY
        + [
            pa.field("device_name", pa.string()),
            pa.field("device_kind", pa.string()),  # local | ssh
            pa.field("engine", pa.string()),  # onnxruntime | openvino_fp32 | openvino_binary
            # ok | not deployable: ... | failed: ... | not timed: training ... | contended: ...
            # (timed while another bibench job timed on the same device: numbers kept, used
            # nowhere until re-timed)
            pa.field("status", pa.string()),
            pa.field("cpu_model", pa.string()),
            # what decides a binary kernel's speed: the CPU's AVX2 / AVX-512F / VPOPCNTDQ
            # ('unknown' where the device does not say) and the engine's library version
            pa.field("cpu_isa", pa.string()),
            pa.field("engine_version", pa.string()),
            pa.field("batch_size", pa.int64()),
            pa.field("warmup", pa.int64()),
            pa.field("repeats", pa.int64()),
            pa.field("median_ms", pa.float64()),
            pa.field("p10_ms", pa.float64()),
            pa.field("p90_ms", pa.float64()),
            pa.field("fp32_median_ms", pa.float64()),
            pa.field("fp32_p10_ms", pa.float64()),
            pa.field("fp32_p90_ms", pa.float64()),
            pa.field("speedup_vs_fp32", pa.float64()),
            # the engine's best case: bibench.latency.reference timed in the same window
            pa.field("reference_status", pa.string()),  # ok | why it was not timed
            pa.field("reference_median_ms", pa.float64()),
            pa.field("reference_speedup_vs_fp32", pa.float64()),
            pa.field("n_binary_conv", pa.int64()),  # BinaryConvolution layers executed
            pa.field("model_bytes", pa.int64()),
            pa.field("fp32_bytes", pa.int64()),
            pa.field("storage_saving", pa.float64()),  # fp32_bytes / model_bytes
            # this machine's 1-minute load average when the row's timing began and ended (NaN
            # for remote devices and rows not timed)
            pa.field("load_avg_start", pa.float64()),
            pa.field("load_avg_end", pa.float64()),
            # another bibench job timed on the same device during the row's timing
            # (bibench.latency.windows; null: not timed, or the registry could not be used)
            pa.field("concurrent_timing", pa.bool_()),
        ]
        + PROVENANCE
    ),
    "complexity": pa.schema(
        CELL_KEY
        + [
            pa.field("layer", pa.string()),  # "" for the model total row
            pa.field("layer_type", pa.string()),
            pa.field("binary", pa.bool_()),
            pa.field("params", pa.int64()),
            pa.field("fp_params", pa.int64()),
            pa.field("binary_params", pa.int64()),
            pa.field("flops", pa.int64()),
            pa.field("fp_flops", pa.int64()),
            pa.field("binary_flops", pa.int64()),
            # ok | not measured: training ... (one total row, counts null: the model's forward
            # is not run for a cell whose training did not finish)
            pa.field("status", pa.string()),
        ]
        + PROVENANCE
    ),
}

SCHEMAS["sensitivity"] = pa.schema(
    CELL_KEY
    + [
        pa.field("setting", pa.string()),
        pa.field("optimizer", pa.string()),
        pa.field("lr", pa.float64()),
        pa.field("scheduler", pa.string()),
        pa.field("epochs", pa.int64()),
        pa.field("metric", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("train_status", pa.string()),
        pa.field("train_seconds", pa.float64()),
        pa.field("deterministic", pa.string()),  # as in the train table
    ]
    + PROVENANCE
)

# Per algorithm, every track's measurements and overall metric (results/tracks.parquet).
SCHEMAS["tracks"] = pa.schema([
    pa.field("algorithm", pa.string(), nullable=False),
    pa.field("track", pa.string(), nullable=False),
    pa.field("metric", pa.string(), nullable=False),
    pa.field("value", pa.float64()),  # NaN when not measured, never 0
    pa.field("status", pa.string()),  # "ok" | "not measured"
    pa.field("inputs", pa.string()),  # JSON list of the cells the value uses
    pa.field("excluded", pa.string()),  # JSON list of cells left out (failed, diverged)
    pa.field("note", pa.string()),
    pa.field("code_fingerprint", pa.string()),  # of every row the value uses and the code
    # the metric computed seed by seed: mean, 95% t-interval (NaN below 2 seeds), seeds counted
    pa.field("seed_mean", pa.float64()),
    pa.field("ci95_low", pa.float64()),
    pa.field("ci95_high", pa.float64()),
    pa.field("n_seeds", pa.int64()),
    # JSON list of the inputs at chance (or whose FP32 reference is): such a value is shown
    # with that note and never marked best or worst
    pa.field("at_chance", pa.string()),
])

# Per cell x condition x severity and per seed-dependent quantity of metrics.parquet: the mean
# over seeds with its 95% t-interval (results/summary.parquet, bibench.metrics.seeds).
SCHEMAS["summary"] = pa.schema([
    pa.field("task", pa.string(), nullable=False),
    pa.field("arch", pa.string(), nullable=False),
    pa.field("algorithm", pa.string(), nullable=False),
    pa.field("condition", pa.string(), nullable=False),
    pa.field("severity", pa.int64(), nullable=False),
    pa.field("quantity", pa.string(), nullable=False),
    pa.field("mean", pa.float64()),
    pa.field("ci95_low", pa.float64()),  # NaN with fewer than two seeds
    pa.field("ci95_high", pa.float64()),
    pa.field("n_seeds", pa.int64()),
])

# Per (task, arch) and pair of binarized algorithms: the paired test of their clean metric
# (results/comparisons.parquet, bibench.metrics.comparisons).
SCHEMAS["comparisons"] = pa.schema([
    pa.field("task", pa.string(), nullable=False),
    pa.field("arch", pa.string(), nullable=False),
    pa.field("metric", pa.string()),
    pa.field("algorithm_a", pa.string(), nullable=False),
    pa.field("algorithm_b", pa.string(), nullable=False),
    pa.field("mean_a", pa.float64()),  # each algorithm's metric, mean over its seeds
    pa.field("mean_b", pa.float64()),
    pa.field("difference", pa.float64()),  # mean_a - mean_b
    pa.field("ci95_low", pa.float64()),  # paired bootstrap interval of the difference
    pa.field("ci95_high", pa.float64()),
    pa.field("p_value", pa.float64()),  # two-sided, from the bootstrap distribution
    pa.field("better", pa.string()),  # algorithm_a | algorithm_b | tied
    pa.field("seeds", pa.int64()),  # seeds both algorithms have
    pa.field("n_examples", pa.int64()),
    pa.field("replicates", pa.int64()),
    pa.field("method", pa.string()),
    pa.field("code_fingerprint", pa.string()),
])

# Per (task, arch, algorithm) and bootstrap replicate: the clean metric on that replicate's
# draw of test examples and seeds, shared by every algorithm of the (task, arch), FP32
# included, so that anything computed from several algorithms is paired (results/bootstrap).
SCHEMAS["bootstrap"] = pa.schema([
    pa.field("task", pa.string(), nullable=False),
    pa.field("arch", pa.string(), nullable=False),
    pa.field("algorithm", pa.string(), nullable=False),
    pa.field("replicate", pa.int64(), nullable=False),
    pa.field("value", pa.float64()),
    pa.field("code_fingerprint", pa.string()),
])

# One row per cell and condition: the table users read (results/metrics.parquet).
SCHEMAS["metrics"] = pa.schema(
    CELL_KEY
    + [
        pa.field("family", pa.string()),
        pa.field("embedded", pa.bool_()),
        pa.field("stands_in_for", pa.string()),
        pa.field("condition", pa.string()),
        pa.field("severity", pa.int64()),
        pa.field("metric", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("n_samples", pa.int64()),
        pa.field("fp32_value", pa.float64()),
        pa.field("relative_to_fp32", pa.float64()),
        # bibench.metrics.quality: the clean metric within a few points of chance_value, and
        # whether training levelled off (converged | not converged | not trained)
        pa.field("chance_value", pa.float64()),
        pa.field("at_chance", pa.bool_()),
        pa.field("convergence", pa.string()),
        # the training run's last-epoch accuracy and its model's eval-mode accuracy on the
        # fixed training sample; eval_gap: the second is more than 10 points below the first
        pa.field("last_epoch_train_accuracy", pa.float64()),
        pa.field("eval_train_accuracy", pa.float64()),
        pa.field("eval_gap", pa.bool_()),
        pa.field("train_status", pa.string()),
        pa.field("train_deterministic", pa.string()),  # the train table's `deterministic`
        pa.field("train_wall_seconds", pa.float64()),
        pa.field("train_seconds_per_epoch", pa.float64()),
        pa.field("params", pa.int64()),
        pa.field("fp_params", pa.int64()),
        pa.field("flops", pa.int64()),
        pa.field("fp_flops", pa.int64()),
        pa.field("compression_ratio", pa.float64()),
        pa.field("speedup_ratio", pa.float64()),
        pa.field("onnx_argmax_agreement", pa.float64()),
        # the binary engine's 1-thread row on the first device where the cell deploys, else
        # onnxruntime's; every measurement is in results/latency.parquet
        pa.field("latency_device", pa.string()),
        pa.field("latency_engine", pa.string()),
        pa.field("latency_threads", pa.int64()),
        pa.field("latency_median_ms", pa.float64()),
        pa.field("latency_speedup_vs_fp32", pa.float64()),
        pa.field("storage_saving", pa.float64()),
        pa.field("config_hash", pa.string()),
    ]
    + PROVENANCE
)


def write_table(rows: Iterable[Mapping[str, Any]] | pd.DataFrame, path: str | Path, table: str
                ) -> None:
    """Write rows to `path` under the named schema, atomically (temp file, then rename)."""
    schema = SCHEMAS[table]
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    missing = [n for n in schema.names if n not in frame.columns]
    extra = [c for c in frame.columns if c not in schema.names]
    if missing or extra:
        raise ValueError(f"table {table!r}: missing columns {missing}, unexpected columns {extra}")
    arrow = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    atomic_write(path, lambda tmp: pq.write_table(arrow, tmp))


# The command-line arguments of the Snakemake run a job belongs to (a JSON list), set by the
# workflow's main process (workflow/rules/common.smk) and inherited by its jobs: the command a
# damaged file's message gives is that run's own, with its --configfile, profile and targets.
RUN_ARGS_ENV = "BIBENCH_SNAKEMAKE_ARGS"


def recovery_command(paths: Iterable[str | Path]) -> str:
    """The command that recomputes `paths` and what was computed from them: the run's own
    (RUN_ARGS_ENV) with `--forcerun PATHS` added; outside a run, `snakemake --cores all
    --forcerun PATHS`."""
    import shlex

    forced = ["--forcerun", *map(str, paths)]
    args = _run_args()
    if args is None:
        return shlex.join(["snakemake", "--cores", "all", *forced])
    cut = args.index("--") if "--" in args else len(args)  # targets after "--" stay targets
    return shlex.join(["snakemake", *args[:cut], *forced, *args[cut:]])


def _run_args() -> list[str] | None:
    import json

    try:
        args = json.loads(os.environ[RUN_ARGS_ENV])
    except (KeyError, ValueError):
        return None
    return [str(a) for a in args] if isinstance(args, list) else None


class DamagedFileError(ValueError):
    """A result file cannot be used as it is; the message says how to recompute it."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path, self.problem = str(path), problem
        hint = "" if _run_args() is not None else (
            " (add your run's --configfile and targets, if it had any)")
        super().__init__(
            f"damaged result {path}: {problem}. Recompute it (and what was computed from it)"
            f"{hint} with: {recovery_command([path])}")


def read_table(path: str | Path, table: str) -> pd.DataFrame:
    """Read a table, checking it has the named schema; a damaged file raises DamagedFileError."""
    try:
        arrow = pq.read_table(path)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as err:
        raise DamagedFileError(path, _parquet_problem(Path(path), err)) from err
    found, expected = arrow.schema.remove_metadata(), SCHEMAS[table]
    if not found.equals(expected):
        raise DamagedFileError(path, f"its columns are not those of table {table!r} "
                                     f"({_schema_difference(found, expected)})")
    return arrow.to_pandas()


def _parquet_problem(path: Path, err: Exception) -> str:
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(4)
        f.seek(max(size - 4, 0))
        tail = f.read(4)
    if head != b"PAR1":
        return f"not a Parquet file ({size} bytes, no Parquet header)"
    if tail != b"PAR1":
        return f"truncated Parquet file ({size} bytes, no Parquet footer)"
    return f"unreadable Parquet file ({str(err).splitlines()[0]})"


def _schema_difference(found: pa.Schema, expected: pa.Schema) -> str:
    missing = [n for n in expected.names if n not in found.names]
    extra = [n for n in found.names if n not in expected.names]
    retyped = [f"{n}: {found.field(n).type} instead of {expected.field(n).type}"
               for n in expected.names if n in found.names
               and not found.field(n).type.equals(expected.field(n).type)]
    parts = ([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra
                                                            else []) + retyped
    return "; ".join(parts) or "column order or nullability differs"


def atomic_write(path: str | Path, write) -> None:
    """Call write(tmp_path) then rename tmp_path onto path; remove tmp_path on failure.

    The temporary file is `.NAME.PID@HOST.RANDOM.tmp` beside `path` (write may put siblings
    beside it that differ in the last suffix, e.g. `.xml`/`.bin`). Before writing, the temporary
    files that writers of the same destination left when they were killed (same host, process
    gone) are removed; a live writer's are never touched. A write that fails because the
    filesystem is full raises DiskFullError, which names the file and says so.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_temporaries(path):
        stale.unlink(missing_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}@{_HOST}.",
                                   suffix=".tmp", dir=path.parent)
    except OSError as err:
        if err.errno in _FULL_ERRNOS:
            raise DiskFullError(path, err.errno, _free(path.parent), err) from err
        raise
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as err:
        full = isinstance(err, Exception) and _disk_full(path.parent, err)
        base = tmp.removesuffix(".tmp")
        for leftover in [Path(tmp), *Path(tmp).parent.glob(f"{glob.escape(Path(base).name)}.*")]:
            leftover.unlink(missing_ok=True)
        if full:
            raise DiskFullError(path, full[0], full[1], err) from err
        raise


class DiskFullError(OSError):
    """A result could not be written because its filesystem is full (or the quota is spent).

    Raised by atomic_write in place of what the writer raised (an OSError with ENOSPC, or what
    a library makes of it: torch.save says `basic_ios::clear: iostream error` or `unexpected
    pos`); the previous version of the file, if any, is unchanged.
    """

    def __init__(self, path: str | Path, code: int, free: int | None, cause: BaseException
                 ) -> None:
        self.path = str(path)
        what = "disk quota exceeded" if code == errno.EDQUOT else "no space left on device"
        room = "free space unknown" if free is None else f"{_bytes(free)} free there"
        said = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        self.message = (f"{what} writing {path} ({room}; the writer said: {said}). Free some "
                        "space on that filesystem (or write the results elsewhere) and rerun; "
                        "the file's previous version, if any, is unchanged")
        super().__init__(code, self.message, self.path)

    def __str__(self) -> str:
        return self.message


# Below this many free bytes a failed write is taken for a full disk (what is left after a
# write that ran out of space is less than a block or two).
FULL_BELOW = 1 << 20
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def _disk_full(folder: Path, err: BaseException) -> tuple[int, int | None] | None:
    """(errno, free bytes) when `err` came of a full filesystem at `folder`, else None: its
    errno (or a chained one's) says so, or the filesystem has (almost) no free space left."""
    cause: BaseException | None = err
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, OSError) and cause.errno in _FULL_ERRNOS:
            return cause.errno, _free(folder)
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    free = _free(folder)
    return (errno.ENOSPC, free) if free is not None and free < FULL_BELOW else None


def _free(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def _writer_tag() -> str:
    """The host (and PID namespace, where there is one) a process id is meaningful on."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:63] or "host"
    try:
        return f"{host}-{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return host


_HOST = _writer_tag()
# Temporary files older than this with no writer in their name (written before the names
# carried one) are taken for orphans.
LEGACY_TEMP_AGE_S = 24 * 3600


def stale_temporaries(path: str | Path) -> list[Path]:
    """The temporary files of atomic_write for `path` whose writer is gone: written on this
    host by a process that no longer runs (killed mid-write), or nameless and older than a day.
    Those of live writers, and of other hosts (a shared filesystem), are never listed."""
    path = Path(path)
    ours = re.compile(rf"\.{re.escape(path.name)}\.(\d+)@([A-Za-z0-9.-]+)\.[a-z0-9_]+\.\w+")
    legacy = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    stale = []
    try:
        entries = list(path.parent.glob(f".{glob.escape(path.name)}.*"))
    except OSError:
        return []
    for entry in entries:
        mine = ours.fullmatch(entry.name)
        if mine:
            if mine.group(2) == _HOST and not _alive(int(mine.group(1))):
                stale.append(entry)
        elif legacy.fullmatch(entry.name):
            try:
                if time.time() - entry.stat().st_mtime > LEGACY_TEMP_AGE_S:
                    stale.append(entry)
            except OSError:
                pass
    return sorted(stale)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is another user's, or cannot be asked: leave its files alone
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
