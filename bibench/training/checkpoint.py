"""Build a cell's model and save/load its checkpoint (weights plus what rebuilds the model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from bibench.binarize import binarize
from bibench.catalog import FP32
from bibench.io import DamagedFileError, atomic_write
from bibench.models import build_model, get_architecture


def build_cell_model(arch: str, algorithm: str, input_shape: tuple[int, ...], num_classes: int,
                     fp_model: nn.Module | None = None, keep_fp: tuple[str, ...] | None = None
                     ) -> nn.Module:
    """The model of a cell: `fp_model` (or a new FP model) binarized by `algorithm`.

    `keep_fp` overrides the architecture's full-precision layer patterns (e.g. () binarizes
    ResNet shortcuts too, as the paper's complexity figures assume).
    """
    model = fp_model if fp_model is not None else build_model(arch, input_shape, num_classes)
    if algorithm == FP32:
        return model
    policy = get_architecture(arch)
    example = example_input(arch, input_shape)
    if hasattr(model, "trace_input"):  # detectors: the form their forward traces with
        example = model.trace_input(example)
    return binarize(
        model, algorithm, example_input=example,
        keep_fp=policy.keep_fp if keep_fp is None else keep_fp,
        keep_first_last=policy.keep_first_last,
    )


def example_input(arch: str, input_shape: tuple[int, ...], batch: int = 2) -> torch.Tensor:
    """A batch the architecture accepts: token ids (all [CLS]=101) for transformers."""
    if get_architecture(arch).family == "transformer":
        return torch.full((batch, *input_shape), 101, dtype=torch.int64)
    return torch.zeros(batch, *input_shape)


def save_checkpoint(model: nn.Module, path: str | Path, meta: dict[str, Any]) -> None:
    """meta must hold arch, algorithm, input_shape and num_classes."""
    missing = {"arch", "algorithm", "input_shape", "num_classes"} - set(meta)
    if missing:
        raise ValueError(f"checkpoint meta lacks {sorted(missing)}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: _save({"meta": meta, "state_dict": state}, tmp))


def _save(blob: dict[str, Any], path: str) -> None:
    """torch.save into an open file: given a file name, torch names the archive's inner folder
    after it (the random temporary name), so identical checkpoints would differ in their bytes;
    given a file object, the folder is always `archive`."""
    with open(path, "wb") as f:
        torch.save(blob, f)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the cell's model and load its weights; returns (model in eval mode, meta).

    A file that is not a whole checkpoint of this format raises DamagedFileError.
    """
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta, state = blob["meta"], blob["state_dict"]
        shape = (meta["arch"], meta["algorithm"], tuple(meta["input_shape"]), meta["num_classes"])
    except FileNotFoundError:
        raise
    except Exception as err:  # whatever torch.load makes of a damaged file
        problem = str(err).splitlines()[0] if str(err) else type(err).__name__
        size = Path(path).stat().st_size
        raise DamagedFileError(path, f"not a readable checkpoint ({size} bytes: {problem})"
                               ) from err
    model = build_cell_model(*shape)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise DamagedFileError(path, "its weights do not fit the architecture "
                                     f"({str(err).splitlines()[-1].strip()})") from err
    return model.eval(), meta


def check_cell(path: str | Path, meta: dict[str, Any], **cell: Any) -> None:
    """Refuse a checkpoint that is not the cell's: its recorded architecture, algorithm (and,
    where recorded, task and seed) must be the ones the job was asked for. A workflow whose
    paths and wildcards agree never trips it; a hand-made or misplaced file would otherwise be
    measured under another cell's name."""
    wrong = [f"{key} {meta[key]!r} (the cell's: {value!r})" for key, value in cell.items()
             if key in meta and str(meta[key]) != str(value)]
    if wrong:
        raise ValueError(f"{path} is not this cell's checkpoint: it records {', '.join(wrong)}")


def not_trained(meta: dict[str, Any]) -> str | None:
    """Why a cell's model is not measured (None: its training ran to the end): `training
    failed: <error>`, `training diverged` or `training skipped: full-precision model ...`, from
    the status its checkpoint records."""
    status = meta.get("train_status", "ok")
    return None if status == "ok" else f"training {status}"
