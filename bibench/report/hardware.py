"""The hardware-inference part of the report: latency tables in the shape of the paper's
Tables 14-17, the deployability outcome next to the paper's Table 4, and a speedup figure per
device and thread count. Input: results/latency.parquet (one row per measurement)."""

from __future__ import annotations

import math

import pandas as pd

from bibench.catalog import FP32
from bibench.latency.engines import binary_engines, get_engine
from bibench.latency.engines import engines as registered_engines
from bibench.metrics.seeds import mean_ci
from bibench.report.common import Stat, algorithm_order, png, pyplot

# Paper Table 4: deployable on Larq / daBNN (ARM). Quoted, to compare with what we observe.
PAPER_DEPLOYABLE = {"bnn": True, "xnor": False, "dorefa": True, "bireal": True,
                    "xnorpp": False, "reactnet": True, "recu": True, "fda": True}


# Status prefix of a row timed while another bibench job timed on the same device
# (bibench.latency.windows): shown with its numbers and marked, used in no other result.
CONTENDED = "contended"
CONTENDED_NOTE = ("contended: timed while another bibench job timed on the same device (the "
                  "numbers shown are not used in any result); re-time the cell with snakemake "
                  "--cores all --forcerun results/cells/TASK/ARCH/ALGORITHM/seedSEED/"
                  "latency.parquet (bibench status lists them)")


def latency_tables(latency: pd.DataFrame) -> list[dict]:
    """Per device: rows (threads, task/arch), per engine FP32 ms then one column per algorithm
    (mean ± 95% CI over seeds), or why a cell was not timed. Each cell that is not a clean
    timing shows its mark (`failed`, `not deployable`, `contended`, ...) and the number of its
    reason in the device's `notes`, printed under the table: a remote board's failure is read
    in the table, not only in a tooltip. Contended cells show their numbers beside the mark."""
    tables = []
    for device, dev_rows in latency.groupby("device_name", sort=True):
        engines = [e for e in registered_engines() if e in set(dev_rows["engine"])]
        algorithms = [a for a in algorithm_order(dev_rows["algorithm"]) if a != FP32]
        header = [{"engine": get_engine(e).title, "algorithms": [FP32] + algorithms}
                  for e in engines]
        notes: list[str] = []
        rows = []
        for (threads, task, arch), part in dev_rows.groupby(["threads", "task", "arch"]):
            groups = []
            for engine in engines:
                mine = part[part["engine"] == engine]
                ok = mine[mine["status"] == "ok"]
                cells = [_latency_cell(ok, mine, "fp32_median_ms", notes, speedup=False)]
                for algo in algorithms:
                    runs = mine[mine["algorithm"] == algo]
                    cells.append(_latency_cell(runs[runs["status"] == "ok"], runs,
                                               "median_ms", notes))
                groups.append(cells)
            rows.append({"threads": int(threads), "cell": f"{task}/{arch}", "groups": groups})
        tables.append({"device": device, **device_facts(dev_rows), "header": header,
                       "rows": rows, "notes": notes})
    return tables


def _latency_cell(ok: pd.DataFrame, runs: pd.DataFrame, column: str, notes: list[str], *,
                  speedup: bool = True) -> dict:
    """One cell of a latency table: the mean over the `ok` rows' `column`, else the mark and
    note number of why `runs` gave no clean timing (a contended timing keeps its numbers)."""
    values = ok[column].dropna()
    if len(values):
        return {"ms": _stat(values).text(digits=3), "status": "ok", "mark": "", "note": 0,
                "speedup": _stat(ok["speedup_vs_fp32"]).mean if speedup else 1.0}
    statuses = [str(s) for s in runs["status"] if s != "ok"]
    status = sorted(statuses, key=lambda s: s.startswith(CONTENDED))[0] if statuses \
        else "not timed"
    contended = status.startswith(CONTENDED)
    note = CONTENDED_NOTE if contended else status
    if note not in notes:
        notes.append(note)
    crowded = runs[runs["status"].astype(str).str.startswith(CONTENDED)][column].dropna()
    return {"ms": _stat(crowded).text(digits=3) if contended and len(crowded) else "",
            "status": status, "mark": status.split(":", 1)[0], "note": notes.index(note) + 1,
            "speedup": float("nan")}


def _stat(values: pd.Series) -> Stat:
    """Mean over seeds with its 95% interval (one value per seed for a given row)."""
    return Stat(*mean_ci(values))


def device_facts(rows: pd.DataFrame) -> dict[str, str]:
    """What decides a device's numbers: CPU model, its ISA features, engine versions."""
    versions = sorted(set(rows["engine_version"]))
    return {"cpu_model": rows["cpu_model"].iloc[0], "cpu_isa": rows["cpu_isa"].iloc[0],
            "engine_versions": ", ".join(versions)}


def reference_tables(latency: pd.DataFrame) -> list[dict]:
    """Per device: each algorithm's binary-engine speedup over FP32 beside the hand-built
    reference's (the engine's best case on that CPU, timed in the same window), per thread
    count and task/arch, or why the reference was not timed."""
    binary = latency[latency["engine"].isin(binary_engines()) & (latency["algorithm"] != FP32)]
    tables = []
    for device, dev_rows in binary.groupby("device_name", sort=True):
        algorithms = algorithm_order(dev_rows["algorithm"])
        rows = []
        for (threads, task, arch), part in dev_rows.groupby(["threads", "task", "arch"]):
            timed = part[part["reference_status"] == "ok"]
            ref = timed["reference_speedup_vs_fp32"]
            reasons = sorted(set(part["reference_status"]) - {"ok"})
            cells = []
            for algo in algorithms:
                ok = part[(part["algorithm"] == algo) & (part["status"] == "ok")]
                speedup = _stat(ok["speedup_vs_fp32"])
                cells.append({"speedup": speedup.text(),
                              "of_reference": speedup.mean / _stat(ref).mean
                              if len(ref) and len(ok) else math.nan,
                              "status": "ok" if len(ok) else "; ".join(sorted(set(
                                  part[part["algorithm"] == algo]["status"]))) or "not timed"})
            rows.append({"threads": int(threads), "cell": f"{task}/{arch}",
                         "reference": _stat(ref).text() if len(ref) else "",
                         "reference_note": "" if len(ref) else "; ".join(reasons),
                         "cells": cells})
        tables.append({"device": device, **device_facts(dev_rows), "algorithms": algorithms,
                       "rows": rows})
    return tables


def _declared(algo: str) -> tuple[bool | None, str]:
    """(deployable, layer note) as the algorithm declares them (None: not registered here)."""
    from bibench.algorithms import get_algorithm

    try:
        facts = get_algorithm(algo).deployment
    except KeyError:
        return None, ""
    return facts.deployable, facts.layer_note


def deployability(latency: pd.DataFrame) -> list[dict]:
    """Per algorithm: what the binary engine did with it per (task, arch), next to what the
    algorithm declares and the paper's Table 4; where trying and declaring differ, why."""
    binary = latency[latency["engine"].isin(binary_engines())]
    out = []
    for algo in algorithm_order(binary["algorithm"]):
        if algo == FP32:
            continue
        runs = binary[binary["algorithm"] == algo]
        # a contended timing ran the binary kernels: it deployed, its speed is what is in doubt
        timed = (runs["status"] == "ok") | runs["status"].astype(str).str.startswith(CONTENDED)
        ok = runs[timed]
        cells = runs.assign(timed=timed).groupby(["task", "arch"])["timed"].all()
        on = [f"{t}/{a}" for (t, a), yes in cells.items() if yes]
        off = [f"{t}/{a}" for (t, a), yes in cells.items() if not yes]
        observed = ("deployable" if len(ok) == len(runs) else
                    (f"deployed on {', '.join(on)}; not on {', '.join(off)}: " if on else "")
                    + "; ".join(sorted(set(runs.loc[~timed, "status"]))))
        declared, layers = _declared(algo)
        # declared deployable but refused somewhere, or declared not but run somewhere
        differs = declared is not None and bool(off if declared else on)
        if not differs:
            agreement = ""
        elif layers:
            agreement = (f"declared {'deployable' if declared else 'not deployable'} for its "
                         f"layers in general; per layer kind {layers}: the cells where it "
                         f"deployed ({', '.join(on) or 'none'}) have only those layers")
        else:
            agreement = (f"declared {'deployable' if declared else 'not deployable'}, but "
                         f"export by trying found otherwise: see the rows' statuses")
        executed = ok["n_binary_conv"]
        out.append({"algorithm": algo, "paper": PAPER_DEPLOYABLE.get(algo),
                    "declared": declared, "layer_note": layers, "agreement": agreement,
                    "observed": observed, "deployed": len(ok) > 0,
                    "binary_conv": f"{int(executed.min())}-{int(executed.max())}"
                    if len(executed) and executed.min() != executed.max()
                    else (str(int(executed.iloc[0])) if len(executed) else "-")})
    return out


def speedup_figures(latency: pd.DataFrame) -> list[dict[str, str]]:
    """Speedup over FP32 against thread count, per device and engine (mean over cells)."""
    plt = pyplot()
    figures = []
    ok = latency[(latency["status"] == "ok") & (latency["algorithm"] != FP32)]
    for device, part in ok.groupby("device_name", sort=True):
        engines = [e for e in registered_engines() if e in set(part["engine"])]
        fig, axes = plt.subplots(1, len(engines), figsize=(4.2 * len(engines), 3.4),
                                 squeeze=False)
        for ax, engine in zip(axes[0], engines, strict=True):
            mine = part[part["engine"] == engine]
            for algo in algorithm_order(mine["algorithm"]):
                curve = mine[mine["algorithm"] == algo].groupby("threads")[
                    "speedup_vs_fp32"].mean()
                ax.plot(curve.index, curve.values, marker="o", label=algo)
            ax.axhline(1.0, color="grey", linewidth=0.8)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("threads")
            ax.set_ylabel("speedup over FP32 (x)")
            ax.set_title(get_engine(engine).title, fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, ncol=2)
        figures.append({"title": f"{device}: same-run speedup over FP32 per thread count "
                                 "(mean over cells)", "src": png(fig)})
    return figures
