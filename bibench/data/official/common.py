"""Shared helpers of the official-format loaders: locating a dataset and failing early.

Every loader first resolves the dataset folder under the user's data root and checks that all
files it will read are there; a missing file stops with `DatasetNotFoundError`, saying where
the data is expected and how to get it, before anything is parsed or decoded.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class DatasetNotFoundError(FileNotFoundError):
    """A dataset (or a file of it) is not where the loader expects it."""


def how_to_get(name: str) -> str:
    """The download instructions of a dataset, from `bibench.data.downloads`."""
    from bibench.data.downloads import DOWNLOADS, GROUPS, MANUAL

    if name in MANUAL:
        return MANUAL[name]
    if name in GROUPS:
        urls = [DOWNLOADS[part]["url"] for part in GROUPS[name]]
        return (f"download {', '.join(urls)} and extract them into the data root, or run "
                f"`python -m bibench.data.downloads {name} <root>` (see docs/datasets.md)")
    entry = DOWNLOADS.get(name)
    if entry is None:
        return "see docs/datasets.md"
    urls = [part["url"] for part in entry.get("files", [entry])]
    return (
        f"download {' and '.join(urls)} and extract it into the data root, or run "
        f"`python -c \"from bibench.data.downloads import fetch; fetch({name!r}, '<root>')\"`"
        " (see docs/datasets.md)"
    )


def resolve_dir(root: str | Path, folder: str, marker: str | Iterable[str], name: str) -> Path:
    """The dataset folder: `root/folder` when present, else `root` itself when it holds `marker`.

    `marker` is a relative path (or several) whose presence identifies the dataset folder.
    """
    root = Path(root).expanduser()
    markers = [marker] if isinstance(marker, str) else list(marker)
    for candidate in (root / folder, root):
        if all((candidate / m).exists() for m in markers):
            return candidate
    raise DatasetNotFoundError(
        f"{name}: dataset not found: expected {root / folder}/ containing "
        f"{', '.join(markers)} (or {root} itself holding them). How to get it: {how_to_get(name)}"
    )


def require_files(base: Path, relpaths: Iterable[str | Path], name: str) -> list[Path]:
    """Absolute paths of `relpaths` under `base`; all missing ones are reported at once."""
    paths = [base / p for p in relpaths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        shown = ", ".join(missing[:8])
        if len(missing) > 8:
            shown += f" and {len(missing) - 8} more"
        raise DatasetNotFoundError(
            f"{name}: incomplete dataset under {base}: missing {shown}. "
            f"How to get it: {how_to_get(name)}"
        )
    return paths


def take(n: int | None, total: int) -> int:
    """How many items to keep of `total` for a `max_*` option (None: all)."""
    if n is None:
        return total
    if n < 0:
        raise ValueError(f"max count must be >= 0, got {n}")
    return min(n, total)
