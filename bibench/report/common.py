"""What the report's tables and figures share: column order and matplotlib plumbing."""

from __future__ import annotations

import base64
import io
from typing import Any

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
