"""Where training runs and how reproducibly: the determinism switch, its record, autocast.

PyTorch's deterministic mode needs cuBLAS told before its first call to keep a fixed workspace
(CUBLAS_WORKSPACE_CONFIG), cuDNN kept from benchmarking algorithms, and TF32 off so that
"fp32" means fp32 on GPUs too. Kernels without a deterministic implementation either raise
(mode "strict") or warn (mode "warn"); the warnings are collected so that the rows name them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator

import torch

log = logging.getLogger(__name__)

DETERMINISM_MODES = ("strict", "warn", "none")
PRECISIONS = ("fp32", "bf16")
# The two values cuBLAS documents as deterministic (one 4 MiB x 8 or 16 KiB x 8 workspace).
CUBLAS_DETERMINISTIC = (":4096:8", ":16:8")
_ALERT = re.compile(r"^(?P<op>.+?) does not have a deterministic implementation")


def set_cublas_workspace() -> None:
    """Ask cuBLAS for a fixed workspace; must run before CUDA's first cuBLAS call."""
    current = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if current is None:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC[0]
    elif current not in CUBLAS_DETERMINISTIC:
        raise ValueError(f"CUBLAS_WORKSPACE_CONFIG={current!r} makes cuBLAS nondeterministic; "
                         f"unset it or use one of {CUBLAS_DETERMINISTIC}")


def apply_determinism(mode: str) -> None:
    """Switch PyTorch's deterministic algorithms on (strict: raise, warn: warn) or off (none)."""
    if mode not in DETERMINISM_MODES:
        raise ValueError(f"unknown determinism mode {mode!r}; expected one of "
                         f"{DETERMINISM_MODES}")
    if mode != "none":
        set_cublas_workspace()
    # what torch.use_deterministic_algorithms does, less the flag of torch._inductor, whose
    # import (torch._dynamo) costs 2.4 s in every job; bibench never compiles a model
    torch._C._set_deterministic_algorithms(mode != "none", warn_only=mode == "warn")
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:  # something compiled already: keep its flag in step
        inductor.deterministic = mode != "none"
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = mode != "none"
    # TF32 rounds fp32 matmuls and convolutions to 10 mantissa bits on Ampere and later
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def resolve_device(requested: str) -> torch.device:
    """cpu, cuda, or auto (cuda when available); asking for cuda without one is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config asks for device 'cuda' but torch sees no CUDA device")
    return torch.device(requested)


def prepare_device(requested: str, determinism: str) -> torch.device:
    """The job's device, with the determinism switch applied before CUDA starts."""
    apply_determinism(determinism)
    return resolve_device(requested)


@contextlib.contextmanager
def nondeterministic_ops() -> Iterator[set[str]]:
    """Collect the operators PyTorch warns about in warn-only deterministic mode.

    Each warning is handled as it comes (a kernel warns at every step: keeping them all would
    grow with training); other warnings are logged once each, not lost.
    """
    ops: set[str] = set()
    logged: set[str] = set()

    def handle(message, category, *_args, **_kwargs) -> None:
        text = str(message)
        match = _ALERT.match(text)
        if match:
            ops.add(match["op"])
        elif text not in logged:
            logged.add(text)
            log.warning("%s: %s", category.__name__, text)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = handle
        yield ops


def determinism_note(ops: set[str]) -> str:
    """The rows' `deterministic` value: yes, no (naming the kernels), or not checked."""
    if not torch.are_deterministic_algorithms_enabled():
        return "not checked"
    if ops:
        return "no: " + ", ".join(sorted(ops))
    return "yes"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast of the forward pass, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"unknown training precision {precision!r}; expected one of {PRECISIONS}")
