"""The machine a result comes from: CPU model and the ISA features the binary kernels use.

Its own module, apart from the timing code, because every job records the machine in its rows:
the training jobs' code map (bibench.cache) includes this file, not the latency code. Like
timing.py it imports no other bibench module (bibench.latency.remote ships it to boards).
"""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# CPU features the binary kernels depend on: OpenVINO's BinaryConvolution runs xnor-popcount
# on AVX2, and much faster with AVX-512F and the VPOPCNTDQ vector popcount (4.4x vs 11-12x
# for the same pipeline, docs/deployment.md).
ISA_FEATURES = ("avx2", "avx512f", "avx512_vpopcntdq")


def isa_features(cpuinfo: str | None = None) -> str:
    """Which of ISA_FEATURES the CPU has, from /proc/cpuinfo's flags line (the local file when
    `cpuinfo` is None): e.g. 'avx2 avx512f', 'none of avx2, avx512f, avx512_vpopcntdq', or
    'unknown' where no flags line is found (not Linux, ARM boards)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "unknown"
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            flags = set(value.split())
            present = [f for f in ISA_FEATURES if f in flags]
            return " ".join(present) if present else f"none of {', '.join(ISA_FEATURES)}"
    return "unknown"
