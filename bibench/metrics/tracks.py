"""The six tracks' measurements and overall metrics, per algorithm (paper Sec. 3, Eqs. 2-9).

Input: results/metrics.parquet (one row per cell x condition). Output rows of
results/tracks.parquet: (algorithm, track, metric, value, status, inputs, excluded, note,
at_chance). A track that has no measurement yet is a row with status "not measured" and value
NaN, never a zero; cells that failed or diverged are left out and named in `excluded`. Cells at
chance (bibench.metrics.quality), or whose FP32 reference is, are named in `at_chance` where a
value uses them, and left out of the robustness ratios (Eq. 4 divides by their accuracy gap).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd

from bibench.catalog import FP32
from bibench.latency.engines import binary_engines
from bibench.metrics.overall import (
    om_arch,
    om_comp,
    om_infer,
    om_robust,
    om_task,
    om_train,
    sensitivity_ratio,
)
from bibench.metrics.quality import AT_CHANCE, EVAL_GAP_MARK


@dataclass(frozen=True)
class Track:
    """One of the paper's six evaluation tracks, as every part of bibench names it."""

    name: str  # tracks.parquet `track`
    title: str  # the report's heading
    overall: str  # its overall metric (paper Eqs. 2-9), a `metric` of its rows
    table: str  # the paper's summary table it belongs to: "accuracy" (2) or "efficiency" (3)
    higher_is_better: bool = True
    exact: bool = False  # counts, not measurements: compared without a test


TRACKS: tuple[Track, ...] = (
    Track("learning_task", "Learning task (%)", "OM_task", "accuracy"),
    Track("neural_architecture", "Neural architecture (%)", "OM_arch", "accuracy"),
    Track("corruption_robustness", "Corruption robustness (%)", "OM_robust", "accuracy"),
    Track("training_consumption", "Training consumption (%)", "OM_train", "efficiency"),
    Track("theoretical_complexity", "Theoretical complexity (x)", "OM_comp", "efficiency",
          exact=True),
    Track("hardware_inference", "Hardware inference (x)", "OM_infer", "efficiency"),
)
TRACK = {t.name: t for t in TRACKS}
KEY = ["task", "arch", "seed"]


def _cell_names(frame: pd.DataFrame) -> list[str]:
    cols = ["task", "arch", "algorithm", "seed"]
    return sorted({"/".join(str(v) for v in row) for row in frame[cols].itertuples(index=False)})


def _row(algorithm: str, track: str, metric: str, value: float, *, inputs: list[str],
         excluded: list[str], status: str = "ok", note: str = "",
         chance: list[str] | None = None) -> dict:
    if status == "ok" and (value is None or math.isnan(value)):
        status = "not measured"
    if chance:
        what = (f"{AT_CHANCE} or {EVAL_GAP_MARK}" if any(EVAL_GAP_MARK in c for c in chance)
                else AT_CHANCE)
        note = "; ".join(n for n in (note, f"{what}: {', '.join(chance)}") if n)
    return {"algorithm": algorithm, "track": track, "metric": metric,
            "value": float("nan") if value is None else float(value), "status": status,
            "inputs": json.dumps(inputs), "excluded": json.dumps(excluded), "note": note,
            "at_chance": json.dumps(chance or [])}


def _chance_names(frame: pd.DataFrame) -> list[str]:
    """Cells of `frame` whose numbers cannot be compared: at chance, or their FP32 reference
    is; or evaluated unlike they trained (`eval gap`, named with that mark)."""
    gap = set(_cell_names(frame[frame["eval_gap"]])) if "eval_gap" in frame else set()
    return [f"{n} ({EVAL_GAP_MARK})" if n in gap else n
            for n in _cell_names(frame[frame["unreliable"]])]


def _mark_unreliable(metrics: pd.DataFrame) -> pd.DataFrame:
    """`unreliable`: the cell or the FP32 model of its (task, arch, seed) is at chance or has an
    eval gap (bibench.metrics.quality)."""
    bad = metrics["at_chance"].fillna(False).to_numpy()
    if "eval_gap" in metrics:
        bad = bad | metrics["eval_gap"].fillna(False).to_numpy()
    fp = metrics[metrics["algorithm"] == FP32]
    fp_bad = {tuple(k) for k in fp.loc[bad[(metrics["algorithm"] == FP32).to_numpy()], KEY]
              .itertuples(index=False)}
    ref = [tuple(k) in fp_bad for k in metrics[KEY].itertuples(index=False)]
    return metrics.assign(unreliable=bad | pd.Series(ref).to_numpy())


def _usable(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows of cells that trained and whose FP32 reference trained and scored above zero,
    rows left out). A reference of 0 (an untrained detector's mAP) gives no ratio."""
    ok = ((frame["train_status"] == "ok") & frame["value"].notna()
          & frame["fp32_value"].notna() & (frame["fp32_value"] > 0))
    return frame[ok], frame[~ok]


def _relative_rows(algo: str, clean: pd.DataFrame, group: str, track: str,
                   excluded: list[str], out: list[dict]) -> dict[str, list[float]]:
    """One `relative:<group value>` row per task or family (mean relative accuracy, x100),
    appended to `out`; returns the relative accuracies per group for the overall metric."""
    by_group = clean.groupby(group)["relative_to_fp32"].apply(list).to_dict()
    for key, values in sorted(by_group.items()):
        mine = clean[clean[group] == key]
        out.append(_row(algo, track, f"relative:{key}", 100 * sum(values) / len(values),
                        inputs=_cell_names(mine), excluded=excluded,
                        chance=_chance_names(mine)))
    return by_group


def _accuracy_tracks(algo: str, rows: pd.DataFrame, excluded: list[str]) -> list[dict]:
    clean = rows[rows["condition"] == "clean"]
    out = []
    by_task = _relative_rows(algo, clean, "task", "learning_task", excluded, out)
    out.append(_row(algo, "learning_task", "OM_task",
                    100 * om_task(by_task) if by_task else float("nan"),
                    inputs=_cell_names(clean), excluded=excluded, chance=_chance_names(clean)))
    by_family = _relative_rows(algo, clean, "family", "neural_architecture", excluded, out)
    # Eq. 3 averages over the three families; a family the grid lacks is not invented.
    note = "" if len(by_family) == 3 else f"families measured: {', '.join(sorted(by_family))}"
    out.append(_row(algo, "neural_architecture", "OM_arch",
                    100 * om_arch(by_family) if by_family else float("nan"),
                    inputs=_cell_names(clean), excluded=excluded, note=note,
                    chance=_chance_names(clean)))
    return out


def _gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """Eq. 4 per cell and corruption: clean metric minus the mean over severities."""
    clean = frame[frame["condition"] == "clean"].set_index(KEY)["value"]
    corrupted = frame[frame["condition"] != "clean"]
    mean_corr = corrupted.groupby(KEY + ["condition"])["value"].mean().reset_index()
    mean_corr["gap"] = [clean.get(tuple(r[k] for k in KEY), float("nan")) - r["value"]
                        for _, r in mean_corr.iterrows()]
    return mean_corr


def _robustness(algo: str, rows: pd.DataFrame, fp_rows: pd.DataFrame, excluded: list[str]
                ) -> list[dict]:
    """Eq. 4-5: per corruption, E over cells of G_fp / G_bi (gaps averaged over severities).

    A cell at chance (or whose FP32 reference is) loses next to nothing under corruption, and
    dividing by that gap makes a huge, meaningless ratio: such cells are left out, and said;
    so are cells with an eval gap, whose evaluation does not measure the model that trained.
    """
    chance = _chance_names(rows)
    rows, fp_rows = rows[~rows["unreliable"]], fp_rows[~fp_rows["unreliable"]]
    excluded = excluded + [c if c.endswith(")") else f"{c} ({AT_CHANCE})" for c in chance]
    gaps = sum(c.endswith(f"({EVAL_GAP_MARK})") for c in chance)
    left_out = "; ".join(part for part in (
        f"{len(chance) - gaps} cells {AT_CHANCE} left out" if len(chance) > gaps else "",
        f"{gaps} cells with an {EVAL_GAP_MARK} left out" if gaps else "") if part)
    bi, fp = _gaps(rows), _gaps(fp_rows)
    if bi.empty:
        return [_row(algo, "corruption_robustness", "OM_robust", float("nan"), inputs=[],
                     excluded=excluded, note=left_out or "no corruption in the grid")]
    merged = bi.merge(fp, on=KEY + ["condition"], suffixes=("_bi", "_fp"))
    # A gap <= 0 (no loss under corruption) makes the ratio meaningless: left out, and said.
    valid = merged[(merged["gap_bi"] > 0) & (merged["gap_fp"] > 0)]
    dropped = len(merged) - len(valid)
    note = f"{dropped} (cell, corruption) pairs with a non-positive gap left out" if dropped else ""
    note = "; ".join(n for n in (note, left_out) if n)
    gaps_fp = valid.groupby("condition")["gap_fp"].apply(list).to_dict()
    gaps_bi = valid.groupby("condition")["gap_bi"].apply(list).to_dict()
    out = [
        _row(algo, "corruption_robustness", f"gap_ratio:{c}",
             100 * sum(f / b for f, b in zip(gaps_fp[c], gaps_bi[c], strict=True))
             / len(gaps_fp[c]),
             inputs=_cell_names(rows[rows["condition"] == c]), excluded=excluded, note=left_out)
        for c in sorted(gaps_fp)
    ]
    out.append(_row(algo, "corruption_robustness", "OM_robust",
                    100 * om_robust(gaps_fp, gaps_bi) if gaps_fp else float("nan"),
                    inputs=_cell_names(rows), excluded=excluded, note=note))
    return out


def _sensitivity(algo: str, grid: pd.DataFrame) -> tuple[float, list[str], list[str]]:
    """Eq. 6's E(std(A_hyper) / std(A_hyper^bi)) over (task, arch), in percent."""
    ok = grid[(grid["train_status"] == "ok") & grid["value"].notna()]
    excluded = _cell_names(grid[(grid["algorithm"] == algo) & ~grid.index.isin(ok.index)])
    ratios, inputs = [], []
    for (task, arch), runs in ok.groupby(["task", "arch"]):
        fp = runs[runs["algorithm"] == FP32]["value"].tolist()
        bi = runs[runs["algorithm"] == algo]["value"].tolist()
        if len(fp) >= 2 and len(bi) >= 2:
            try:
                ratios.append(sensitivity_ratio(fp, bi))
                inputs.append(f"{task}/{arch}")
            except ValueError:  # a binarized spread of exactly zero: the ratio is undefined
                excluded.append(f"{task}/{arch}/{algo} (zero spread)")
    value = 100 * sum(ratios) / len(ratios) if ratios else float("nan")
    return value, inputs, excluded


def _efficiency(algo: str, rows: pd.DataFrame, fp_rows: pd.DataFrame, excluded: list[str],
                grid: pd.DataFrame) -> list[dict]:
    clean = rows[rows["condition"] == "clean"].drop_duplicates(KEY)
    fp_clean = fp_rows[fp_rows["condition"] == "clean"].drop_duplicates(KEY)
    inputs = _cell_names(clean)
    # Training time per epoch, so FP pretraining and binarized finetuning of different lengths
    # compare like for like; the FP32 reference ran on the same machine and settings.
    merged = clean.merge(fp_clean, on=KEY, suffixes=("", "_fp"))
    ratios = [f / b for f, b in zip(merged["train_seconds_per_epoch_fp"],
                                    merged["train_seconds_per_epoch"], strict=True) if b > 0]
    time_ratio = 100 * sum(ratios) / len(ratios) if ratios else float("nan")
    sens, sens_inputs, sens_excluded = _sensitivity(algo, grid)
    measured = sens == sens and time_ratio == time_ratio
    out = [
        _row(algo, "training_consumption", "time_ratio", time_ratio, inputs=inputs,
             excluded=excluded, note="FP32 / binarized training time per epoch"),
        _row(algo, "training_consumption", "sensitivity", sens, inputs=sens_inputs,
             excluded=sens_excluded,
             note="std over settings x seeds, FP32 / binarized" if sens == sens
             else "no sensitivity run of this algorithm has a usable spread" if len(grid)
             else "no hyperparameter-sensitivity grid in the config"),
        _row(algo, "training_consumption", "OM_train",
             om_train([time_ratio], [sens]) if measured else float("nan"),
             inputs=inputs + sens_inputs, excluded=excluded + sens_excluded,
             note="" if measured else "needs both the time ratio and the sensitivity"),
    ]
    r_c, r_s = clean["compression_ratio"].dropna(), clean["speedup_ratio"].dropna()
    out += [
        _row(algo, "theoretical_complexity", "compression_ratio",
             r_c.mean() if len(r_c) else float("nan"), inputs=inputs, excluded=excluded),
        _row(algo, "theoretical_complexity", "speedup_ratio",
             r_s.mean() if len(r_s) else float("nan"), inputs=inputs, excluded=excluded),
        _row(algo, "theoretical_complexity", "OM_comp",
             om_comp(list(r_c), list(r_s)) if len(r_c) and len(r_s) else float("nan"),
             inputs=inputs, excluded=excluded),
    ]
    return out


def _measurement_names(frame: pd.DataFrame) -> list[str]:
    return [f"{r.task}/{r.arch}/{r.algorithm}/{r.seed} on {r.device_name}/{r.engine}/"
            f"{r.threads}t" for r in frame.itertuples(index=False)]


# Status prefix of a latency row timed while another bibench job timed on the same device
# (bibench.latency.windows): its numbers are kept in latency.parquet but used nowhere.
CONTENDED = "contended"


def _contended_note(n: int) -> str:
    return (f"{n} contended measurement(s) left out (timed while another bibench job timed on "
            f"the same device): re-time with snakemake --forcerun on their latency.parquet "
            f"(bibench status lists them)") if n else ""


def _inference(algo: str, latency: pd.DataFrame) -> list[dict]:
    """Eq. 9 over every binary-engine measurement (devices x thread counts) of the algorithm;
    float engines (onnxruntime, OpenVINO FP32) run no 1-bit kernels and do not count.
    Contended measurements are left out, named in `excluded` and counted in the note."""
    binary = latency[(latency["algorithm"] == algo) & latency["engine"].isin(binary_engines())]
    ok = binary[binary["status"] == "ok"]
    contended = binary["status"].astype(str).str.startswith(CONTENDED)
    excluded = [f"{name} ({CONTENDED})" if c else name for name, c, s in zip(
        _measurement_names(binary), contended, binary["status"], strict=True) if s != "ok"]
    inputs, crowded = _measurement_names(ok), _contended_note(int(contended.sum()))
    if ok.empty:
        reasons = sorted(set(binary.loc[~contended, "status"]))
        if not reasons:
            status = "not measured"
            note = crowded or "no binary engine (openvino_binary) in the config"
        else:
            status = ("not deployable" if all(r.startswith("not deployable") for r in reasons)
                      else "failed")
            note = "; ".join(n for n in (*reasons, crowded) if n)
        return [_row(algo, "hardware_inference", m, float("nan"), inputs=[],
                     excluded=excluded, status=status, note=note)
                for m in ("speedup", "storage_saving", "OM_infer")]
    speedups, savings = list(ok["speedup_vs_fp32"]), list(ok["storage_saving"])

    def note(text: str) -> str:
        return "; ".join(n for n in (text, crowded) if n)

    return [
        _row(algo, "hardware_inference", "speedup", sum(speedups) / len(speedups),
             inputs=inputs, excluded=excluded, note=note("FP32 / binary latency, same run")),
        _row(algo, "hardware_inference", "storage_saving", sum(savings) / len(savings),
             inputs=inputs, excluded=excluded, note=note("FP32 bytes / packed binary bytes")),
        _row(algo, "hardware_inference", "OM_infer", om_infer(speedups, savings),
             inputs=inputs, excluded=excluded, note=note("")),
    ]


def compute_tracks(metrics: pd.DataFrame, sensitivity: pd.DataFrame | None = None,
                   latency: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every track's per-algorithm measurements and overall metric."""
    if latency is None:
        latency = pd.DataFrame(columns=["task", "arch", "algorithm", "seed", "device_name",
                                        "engine", "threads", "status", "speedup_vs_fp32",
                                        "storage_saving"])
    grid = sensitivity if sensitivity is not None else pd.DataFrame(
        columns=["task", "arch", "algorithm", "seed", "setting", "value", "train_status"])
    usable, left_out = _usable(_mark_unreliable(metrics))
    fp_rows = usable[usable["algorithm"] == FP32]
    rows: list[dict] = []
    for algo in sorted(a for a in metrics["algorithm"].unique() if a != FP32):
        mine = usable[usable["algorithm"] == algo]
        excluded = _cell_names(left_out[left_out["algorithm"] == algo])
        rows += _accuracy_tracks(algo, mine, excluded)
        rows += _robustness(algo, mine, fp_rows, excluded)
        rows += _efficiency(algo, mine, fp_rows, excluded, grid)
        rows += _inference(algo, latency)
    return pd.DataFrame(rows, columns=["algorithm", "track", "metric", "value", "status",
                                       "inputs", "excluded", "note", "at_chance"])


def compute_tracks_over_seeds(metrics: pd.DataFrame, sensitivity: pd.DataFrame | None = None,
                              latency: pd.DataFrame | None = None) -> pd.DataFrame:
    """compute_tracks over all seeds (`value`, the paper's definition), plus each metric computed
    seed by seed: its mean, 95% t-interval and the number of seeds with a value."""
    from bibench.metrics.seeds import mean_ci

    pooled = compute_tracks(metrics, sensitivity, latency)
    per_seed = []
    for seed in sorted(metrics["seed"].unique()):
        grid = None if sensitivity is None else sensitivity[sensitivity["seed"] == seed]
        lat = None if latency is None else latency[latency["seed"] == seed]
        per_seed.append(compute_tracks(metrics[metrics["seed"] == seed], grid, lat))
    values = pd.concat(per_seed).groupby(["algorithm", "track", "metric"])["value"].apply(list)
    stats = [mean_ci(values.get(tuple(k), [])) for k in
             pooled[["algorithm", "track", "metric"]].itertuples(index=False)]
    for i, name in enumerate(("seed_mean", "ci95_low", "ci95_high", "n_seeds")):
        pooled[name] = [s[i] for s in stats]
    return pooled
