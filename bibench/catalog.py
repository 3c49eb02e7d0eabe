"""What exists, found without importing torch: the Snakefile reads this at parse time.

Algorithms are the modules of `bibench/algorithms/` (file name = algorithm name) plus those that
installed packages declare in the `bibench.algorithms` entry-point group. Each has a source file,
which is part of the code fingerprint of that algorithm's cells (bibench.cache), so editing it
makes exactly those cells stale.
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import entry_points
from pathlib import Path

from bibench import sources

ALGORITHMS_DIR = Path(__file__).parent / "algorithms"
ENTRY_POINT_GROUP = "bibench.algorithms"
FP32 = "fp32"
_NOT_ALGORITHMS = {"__init__", "base"}


# Dataset facts the workflow needs at parse time, read from the registrations
# (bibench.data.register_dataset; bibench.sources reads them without importing torch). Computed
# on first use (module __getattr__), not on import: a job imports this module for FP32 alone,
# and the scan of the registrations costs a tenth of a second.
def _embedded_datasets() -> frozenset[str]:
    return frozenset(name for name, (_, kw) in sources.datasets().items()
                     if not kw.get("official"))


def _image_datasets() -> frozenset[str]:
    """Image tasks: corruptions apply to their test images (detection too: the paper's
    robustness track is image-level)."""
    return frozenset(name for name, (_, kw) in sources.datasets().items() if kw.get("image"))


# name -> what computes it: EMBEDDED_DATASETS, IMAGE_DATASETS, and DOWNLOADABLE (official
# datasets with a download rule, bibench.data.downloads; ImageNet has none)
_DERIVED = {"EMBEDDED_DATASETS": _embedded_datasets, "IMAGE_DATASETS": _image_datasets,
            "DOWNLOADABLE": sources.download_rules}


def __getattr__(name: str) -> frozenset[str]:
    if name in _DERIVED:
        value = _DERIVED[name]()
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


DEFAULT_DATA_ROOT = "resources"


def algorithm_sources() -> dict[str, Path]:
    """Map every known algorithm name (fp32 excluded) to the file that defines it."""
    sources = {
        path.stem: path
        for path in sorted(ALGORITHMS_DIR.glob("*.py"))
        if path.stem not in _NOT_ALGORITHMS and not path.stem.startswith("_")
    }
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in sources:
            raise ValueError(
                f"algorithm {ep.name!r} from entry point {ep.value!r} clashes with a built-in one"
            )
        spec = importlib.util.find_spec(ep.module)
        if spec is None or spec.origin is None:
            raise ValueError(f"entry point {ep.name!r}: module {ep.module!r} not found")
        sources[ep.name] = Path(spec.origin)
    return sources


def known_algorithms() -> list[str]:
    """fp32 followed by every binarization algorithm, in a stable order."""
    return [FP32, *algorithm_sources()]

