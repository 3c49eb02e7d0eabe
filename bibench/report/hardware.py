"""The hardware-inference part of the report: latency tables in the shape of the paper's
Tables 14-17, the deployability outcome next to the paper's Table 4, and a speedup figure per
device and thread count. Input: results/latency.parquet (one row per measurement)."""

from __future__ import annotations

import math

import pandas as pd

from bibench.catalog import BINARY_ENGINES, FP32
from bibench.metrics.seeds import mean_ci
from bibench.report.common import Stat, algorithm_order, png, pyplot

# Paper Table 4: deployable on Larq / daBNN (ARM). Quoted, to compare with what we observe.
PAPER_DEPLOYABLE = {"bnn": True, "xnor": False, "dorefa": True, "bireal": True,
                    "xnorpp": False, "reactnet": True, "recu": True, "fda": True}
ENGINE_TITLES = {"onnxruntime": "onnxruntime (float kernels)",
                 "openvino_fp32": "OpenVINO FP32 (float kernels)",
                 "openvino_binary": "OpenVINO binary (BinaryConvolution)"}


def latency_tables(latency: pd.DataFrame) -> list[dict]:
    """Per device: rows (threads, task/arch), per engine FP32 ms then one column per algorithm
    (mean ± 95% CI over seeds), or the reason a cell was not timed."""
    tables = []
    for device, dev_rows in latency.groupby("device_name", sort=True):
        engines = [e for e in ENGINE_TITLES if e in set(dev_rows["engine"])]
        algorithms = [a for a in algorithm_order(dev_rows["algorithm"]) if a != FP32]
        header = [{"engine": ENGINE_TITLES[e], "algorithms": [FP32] + algorithms}
                  for e in engines]
        rows = []
        for (threads, task, arch), part in dev_rows.groupby(["threads", "task", "arch"]):
            groups = []
            for engine in engines:
                mine = part[part["engine"] == engine]
                fp32 = mine["fp32_median_ms"].dropna()
                cells = [{"ms": _stat(fp32).text(digits=3),
                          "status": "ok" if len(fp32) else "not timed", "speedup": 1.0}]
                for algo in algorithms:
                    runs = mine[mine["algorithm"] == algo]
                    ok = runs[runs["status"] == "ok"]
                    if len(ok):
                        cells.append({"ms": _stat(ok["median_ms"]).text(digits=3),
                                      "status": "ok",
                                      "speedup": _stat(ok["speedup_vs_fp32"]).mean})
                    else:
                        status = runs["status"].iloc[0] if len(runs) else "not timed"
                        cells.append({"ms": float("nan"), "status": status,
                                      "speedup": float("nan")})
                groups.append(cells)
            rows.append({"threads": int(threads), "cell": f"{task}/{arch}", "groups": groups})
        tables.append({"device": device, **device_facts(dev_rows), "header": header,
                       "rows": rows})
    return tables


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
    binary = latency[latency["engine"].isin(BINARY_ENGINES) & (latency["algorithm"] != FP32)]
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


def deployability(latency: pd.DataFrame) -> list[dict]:
    """Per algorithm: what the binary engine did with it, next to the paper's Table 4."""
    binary = latency[latency["engine"].isin(BINARY_ENGINES)]
    out = []
    for algo in algorithm_order(binary["algorithm"]):
        if algo == FP32:
            continue
        runs = binary[binary["algorithm"] == algo]
        ok = runs[runs["status"] == "ok"]
        observed = ("deployable" if len(ok) == len(runs) else
                    "; ".join(sorted(set(runs.loc[runs["status"] != "ok", "status"]))))
        executed = ok["n_binary_conv"]
        out.append({"algorithm": algo, "paper": PAPER_DEPLOYABLE.get(algo),
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
        engines = [e for e in ENGINE_TITLES if e in set(part["engine"])]
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
            ax.set_title(ENGINE_TITLES[engine], fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, ncol=2)
        figures.append({"title": f"{device}: same-run speedup over FP32 per thread count "
                                 "(mean over cells)", "src": png(fig)})
    return figures
