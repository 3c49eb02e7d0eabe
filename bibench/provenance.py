"""Where a row's numbers come from: the columns every result table carries
(bibench.io.PROVENANCE)."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import bibench
from bibench.config import config_hash


def device_model(device: str) -> str:
    """The processor a row's numbers come from: the GPU's name on CUDA, else the CPU model.
    torch is imported only for a GPU: the latency job runs without it (2.2 s of its start)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    from bibench.latency.machine import cpu_model

    return cpu_model()


def provenance(settings: Any, device: str, threads: int, precision: str = "fp32", *,
               code: str) -> dict[str, Any]:
    """Where a row's numbers come from: settings hash, code fingerprint (bibench.cache),
    versions, device (kind and model), precision, threads."""
    return {
        "cell_config_hash": config_hash(settings),
        "code_fingerprint": code,
        "bibench_version": bibench.__version__,
        "torch_version": version("torch"),
        "device": device,
        "device_model": device_model(device),
        "precision": precision,
        "threads": threads,
    }
