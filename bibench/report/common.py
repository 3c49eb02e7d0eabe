"""What the report's tables and figures share: column order and matplotlib plumbing."""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bibench.catalog import FP32


def algorithm_order(algorithms) -> list[str]:
    """FP32 first (when present), then the algorithms by name: every table's column order."""
    rest = sorted(a for a in set(algorithms) if a != FP32)
    return ([FP32] if FP32 in set(algorithms) else []) + rest


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display on benchmark machines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig) -> str:
    """The figure as an inline base64 PNG (the report is one self-contained file); closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@dataclass(frozen=True)
class Stat:
    """A metric over seeds: mean, 95% interval (NaN below two seeds), seeds counted."""

    mean: float
    low: float = math.nan
    high: float = math.nan
    n: int = 1

    @property
    def half(self) -> float:
        return (self.high - self.low) / 2

    def text(self, scale: float = 1.0, digits: int = 2) -> str:
        """'85.31 ± 1.20' (or '85.31' without an interval, '–' without a value)."""
        if self.mean != self.mean:
            return "–"
        out = f"{self.mean * scale:.{digits}f}"
        if self.half == self.half:
            out += f" ± {self.half * abs(scale):.{digits}f}"
        return out


def stats_index(summary: pd.DataFrame) -> dict[tuple, Stat]:
    """results/summary.parquet as {(task, arch, algorithm, condition, severity, quantity): Stat}."""
    keys = ["task", "arch", "algorithm", "condition", "severity", "quantity"]
    return {tuple(r[:6]): Stat(r[6], r[7], r[8], int(r[9]))
            for r in summary[keys + ["mean", "ci95_low", "ci95_high", "n_seeds"]]
            .itertuples(index=False, name=None)}


def seeds_note(n_seeds: int) -> str:
    """How the report states its numbers, said once where they appear."""
    if n_seeds >= 2:
        return (f"mean over {n_seeds} seeds ± the half-width of its 95% confidence interval "
                "(Student's t)")
    return "one seed: no confidence interval (add seeds to the config to get one)"


def track_stat(row: pd.Series) -> Stat:
    """A tracks.parquet row as shown: the mean over seeds with its interval where two or more
    seeds have a value, else the value over all seeds."""
    n = int(row["n_seeds"]) if row["n_seeds"] == row["n_seeds"] else 0
    if n >= 2:
        return Stat(float(row["seed_mean"]), float(row["ci95_low"]), float(row["ci95_high"]), n)
    return Stat(float(row["value"]), n=max(n, 1))
