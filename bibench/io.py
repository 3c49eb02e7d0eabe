"""Parquet tables: one explicit pyarrow schema per table, written atomically.

A job writes its table under a temporary name in the destination folder and renames it into
place, so a crash never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import os
import tempfile
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
            pa.field("status", pa.string()),  # "ok" | "diverged"
            # yes | no: <kernels without a deterministic implementation> | not checked | not run
            pa.field("deterministic", pa.string()),
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
        ]
        + PROVENANCE
    ),
    # One row per exported form: onnx (float graph for onnxruntime), qonnx (BipolarQuant),
    # openvino_binary (FakeQuantize + +-1 weights, run as BinaryConvolution).
    "export": pa.schema(
        CELL_KEY
        + [
            pa.field("form", pa.string()),
            pa.field("status", pa.string()),  # ok | not deployable: ... | failed: ...
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
            pa.field("status", pa.string()),  # ok | not deployable: ... | failed: ...
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


class DamagedFileError(ValueError):
    """A result file cannot be used as it is; the message says how to recompute it."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(
            f"damaged result {path}: {problem}. Recompute it (and what was computed from it) "
            f"with: snakemake --cores all --forcerun {path}")


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
    """Call write(tmp_path) then rename tmp_path onto path; remove tmp_path on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
