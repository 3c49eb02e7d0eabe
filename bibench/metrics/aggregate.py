"""Join the per-cell tables into one table with a row per cell and evaluation condition."""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd

from bibench.cache import combine
from bibench.catalog import FP32
from bibench.io import PROVENANCE, SCHEMAS, read_table, write_table
from bibench.latency.engines import binary_engines
from bibench.metrics.complexity import Totals, compression_ratio, speedup_ratio
from bibench.metrics.quality import at_chance, convergence, eval_gap
from bibench.models import get_architecture

log = logging.getLogger(__name__)

KEY = ["task", "arch", "algorithm", "seed"]
_PROVENANCE_NAMES = [f.name for f in PROVENANCE]


def _concat(paths: list[str], table: str, *, allow_empty: bool = False) -> pd.DataFrame:
    frames = [read_table(p, table) for p in paths]
    if not frames:
        if allow_empty:
            return SCHEMAS[table].empty_table().to_pandas()
        raise ValueError(f"no {table} tables to aggregate")
    return pd.concat(frames, ignore_index=True)


def latency_table(paths: list[str]) -> pd.DataFrame:
    """Every latency measurement of every cell (results/latency.parquet)."""
    return _concat(paths, "latency", allow_empty=True).sort_values(
        KEY + ["device_name", "engine", "threads"]).reset_index(drop=True)


def headline_latency(latency: pd.DataFrame) -> pd.DataFrame:
    """Per cell, the one latency row metrics.parquet carries: the binary engine at the fewest
    threads where the cell deploys, else onnxruntime (float kernels) at the fewest threads."""
    ok = latency[latency["status"] == "ok"].copy()
    ok["_rank"] = ok["engine"].map(
        lambda e: 0 if e in binary_engines() else 1 if e == "onnxruntime" else 2)
    best = ok.sort_values(KEY + ["_rank", "threads", "device_name"]).groupby(KEY).head(1)
    return best[KEY + ["device_name", "engine", "threads", "median_ms", "speedup_vs_fp32",
                       "storage_saving"]].rename(columns={
        "device_name": "latency_device", "engine": "latency_engine",
        "threads": "latency_threads", "median_ms": "latency_median_ms",
        "speedup_vs_fp32": "latency_speedup_vs_fp32"})


def sensitivity_table(paths: list[str]) -> pd.DataFrame:
    """Every run of the hyperparameter-sensitivity grid (empty when the config has none)."""
    return _concat(paths, "sensitivity", allow_empty=True)


def training_curves(paths: list[str]) -> pd.DataFrame:
    """Every epoch of every training run (pretraining for FP32 cells, finetuning otherwise)."""
    return _concat(paths, "train", allow_empty=True)


def _train_summary(train: pd.DataFrame) -> pd.DataFrame:
    """Per cell: wall time of its own training run, final status, training provenance."""
    last = train.groupby(KEY, as_index=False).last()
    wall = train.groupby(KEY, as_index=False)["epoch_seconds"].sum()
    wall = wall.rename(columns={"epoch_seconds": "train_wall_seconds"})
    per_epoch = train[train["status"] == "ok"].groupby(KEY, as_index=False)["epoch_seconds"]
    per_epoch = per_epoch.mean().rename(columns={"epoch_seconds": "train_seconds_per_epoch"})
    last = last[KEY + ["status", "deterministic"] + _PROVENANCE_NAMES].rename(
        columns={"status": "train_status", "deterministic": "train_deterministic"})
    return last.merge(wall, on=KEY).merge(per_epoch, on=KEY, how="left")


def shared_fp32_training(train: pd.DataFrame, evals: pd.DataFrame) -> pd.DataFrame:
    """`train` with the one pretraining run of each (task, arch) repeated under every seed of
    its FP32 cells: every seed's FP32 cell is that one model (config `pretrain_seed`), so its
    training status, time and convergence are the FP32 cell's in every seed. A config whose
    FP32 runs have a seed of their own each (older layouts) is left as it is."""
    fp_train = train[train["algorithm"] == FP32]
    fp_cells = evals.loc[evals["algorithm"] == FP32, KEY].drop_duplicates()
    copies = []
    for (task, arch), cells in fp_cells.groupby(["task", "arch"]):
        runs = fp_train[(fp_train["task"] == task) & (fp_train["arch"] == arch)]
        if runs["seed"].nunique() != 1:
            continue
        for seed in set(cells["seed"]) - set(runs["seed"]):
            copies.append(runs.assign(seed=seed))
    return pd.concat([train, *copies], ignore_index=True) if copies else train


def _convergence(train: pd.DataFrame) -> pd.DataFrame:
    """Per cell: whether its own training run levelled off, and how its eval-mode accuracy on
    the training sample compares with its last epoch's (bibench.metrics.quality)."""
    rows = []
    for key, g in train.groupby(KEY):
        g = g.sort_values("epoch")
        last = g.iloc[-1]
        rows.append({**dict(zip(KEY, key, strict=True)),
                     "convergence": convergence(list(g["loss"]), last["status"]),
                     "last_epoch_train_accuracy": last["train_accuracy"],
                     "eval_train_accuracy": last["eval_train_accuracy"],
                     "eval_gap": eval_gap(last["train_accuracy"], last["eval_train_accuracy"])})
    return pd.DataFrame(rows, columns=KEY + ["convergence", "last_epoch_train_accuracy",
                                             "eval_train_accuracy", "eval_gap"])


def _at_chance(evals: pd.DataFrame) -> pd.DataFrame:
    """Per cell: whether its clean metric is at chance; every condition row inherits it."""
    clean = evals[evals["condition"] == "clean"]
    flags = [at_chance(v, c) for v, c in zip(clean["value"], clean["chance_value"], strict=True)]
    return clean[KEY].assign(at_chance=flags).drop_duplicates(KEY)


def _complexity_summary(complexity: pd.DataFrame) -> pd.DataFrame:
    # every seed of a cell has the same architecture, hence the same counts; a cell whose
    # training did not finish has a total row with no counts (status `not measured: ...`)
    total = complexity[(complexity["layer"] == "") & (complexity["status"] == "ok")]
    total = total.drop_duplicates(["task", "arch", "algorithm"])
    fp = total[total["algorithm"] == FP32].set_index(["task", "arch"])
    rows = []
    for r in total.itertuples(index=False):
        t = Totals(r.params, r.fp_params, r.binary_params, r.flops, r.fp_flops, r.binary_flops)
        ref = fp.loc[(r.task, r.arch)] if (r.task, r.arch) in fp.index else None
        rows.append({
            "task": r.task, "arch": r.arch, "algorithm": r.algorithm,
            "params": r.params, "fp_params": r.fp_params, "flops": r.flops,
            "fp_flops": r.fp_flops,
            "compression_ratio": compression_ratio(int(ref["params"]), t) if ref is not None
            else float("nan"),
            "speedup_ratio": speedup_ratio(int(ref["flops"]), t) if ref is not None
            else float("nan"),
        })
    return pd.DataFrame(rows)


def _cell_code(tables: list[pd.DataFrame], code: str) -> pd.DataFrame:
    """Per cell, one fingerprint of all the code its row comes from: every table's and ours."""
    rows = pd.concat([t[KEY + ["code_fingerprint"]] for t in tables], ignore_index=True)
    return (rows.groupby(KEY)["code_fingerprint"]
            .agg(lambda fps: combine([*fps, code])).reset_index())


def eval_rows(paths: list[str]) -> pd.DataFrame:
    """Every cell's evaluation rows, per-example predictions included."""
    return _concat(paths, "eval")


def build_metrics(*, tasks: dict[str, dict[str, Any]], config_hash: str, train_tables: list[str],
                  evals: pd.DataFrame, export_tables: list[str], latency: pd.DataFrame,
                  complexity_tables: list[str], code: str) -> pd.DataFrame:
    """metrics.parquet rows: each cell x condition with its FP32 reference and efficiency."""
    train = shared_fp32_training(_concat(train_tables, "train"), evals)
    complexity = _concat(complexity_tables, "complexity")
    exports = _concat(export_tables, "export")
    cell_code = _cell_code([evals, train, complexity, exports, latency], code)
    # an eval row's status (`not evaluated: training ...`) is the cell's train_status here
    # per-example predictions feed the paired tests (comparisons.parquet), not this table
    evals = evals.drop(columns=[*_PROVENANCE_NAMES, "status", "predictions", "targets"])
    frame = evals.merge(_train_summary(train), on=KEY, how="left")
    frame = frame.merge(_convergence(train), on=KEY, how="left")
    frame = frame.merge(_at_chance(evals), on=KEY, how="left")
    frame["at_chance"] = frame["at_chance"].fillna(False).astype(bool)
    frame["eval_gap"] = frame["eval_gap"].fillna(False).astype(bool)

    fp32 = evals[evals["algorithm"] == FP32][["task", "arch", "seed", "condition", "severity",
                                               "value"]].rename(columns={"value": "fp32_value"})
    frame = frame.merge(fp32, on=["task", "arch", "seed", "condition", "severity"], how="left")
    frame["relative_to_fp32"] = frame["value"] / frame["fp32_value"]

    frame = frame.merge(_complexity_summary(complexity), on=["task", "arch", "algorithm"],
                        how="left")

    exports = exports[exports["form"] == "onnx"][KEY + ["argmax_agreement"]]
    frame = frame.merge(exports.rename(columns={"argmax_agreement": "onnx_argmax_agreement"}),
                        on=KEY, how="left")

    frame = frame.merge(headline_latency(latency), on=KEY, how="left")

    frame["family"] = frame["arch"].map(lambda a: get_architecture(a).family)
    frame["config_hash"] = config_hash
    frame = frame.drop(columns="code_fingerprint").merge(cell_code, on=KEY, how="left")
    unknown = set(frame["task"]) - set(tasks)
    if unknown:
        raise ValueError(f"tables of tasks not in the config: {sorted(unknown)}")
    return frame.sort_values(KEY + ["condition", "severity"]).reset_index(drop=True)


# long: the one place that writes the run's six result tables, in dependency order
def aggregate_run(*, tasks: dict[str, dict[str, Any]], config_hash: str,
                  train_tables: list[str], eval_tables: list[str], export_tables: list[str],
                  latency_tables: list[str], complexity_tables: list[str],
                  sensitivity_tables: list[str], metrics: str, tracks: str, hardware: str,
                  summary: str, comparisons: str, bootstrap: str, code: str) -> None:
    """Join every cell's tables into results/metrics.parquet (one row per cell x condition),
    its mean over seeds with 95% intervals into results/summary.parquet, every latency
    measurement into results/latency.parquet, the paired tests between algorithms into
    results/comparisons.parquet (their replicates: results/bootstrap.parquet), and compute the
    tracks' metrics into results/tracks.parquet."""
    from bibench.metrics.comparisons import compare_algorithms
    from bibench.metrics.seeds import seed_summary
    from bibench.metrics.tracks import compute_tracks_over_seeds

    start = time.perf_counter()
    lat = latency_table(latency_tables)
    evals = eval_rows(eval_tables)
    frame = build_metrics(tasks=tasks, config_hash=config_hash, train_tables=train_tables,
                          evals=evals, export_tables=export_tables, latency=lat,
                          complexity_tables=complexity_tables, code=code)
    pairs, replicates = compare_algorithms(evals)
    fingerprint = combine([*evals["code_fingerprint"], code])
    write_table(pairs.assign(code_fingerprint=fingerprint), comparisons, "comparisons")
    write_table(replicates.assign(code_fingerprint=fingerprint), bootstrap, "bootstrap")
    sensitivity = sensitivity_table(sensitivity_tables)
    write_table(frame, metrics, "metrics")
    write_table(seed_summary(frame), summary, "summary")
    write_table(lat, hardware, "latency")
    track_rows = compute_tracks_over_seeds(frame, sensitivity, lat)
    track_rows["code_fingerprint"] = combine(
        [*frame["code_fingerprint"], *sensitivity["code_fingerprint"], code])
    write_table(track_rows, tracks, "tracks")
    log.info("%d rows from %d cells in %.2fs", len(frame), len(eval_tables),
             time.perf_counter() - start)
