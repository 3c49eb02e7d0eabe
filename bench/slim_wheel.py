"""Rewrite a wheel without the files bibench never loads, to fit the device tool's 64 MiB.

OpenVINO's wheel is 57 MB, mostly plugins and frontends for other hardware and formats; bibench
uses its CPU plugin with ONNX and IR files only. Removed files leave RECORD too.

    python bench/slim_wheel.py WHEEL PATTERN [PATTERN ...]
"""

from __future__ import annotations

import fnmatch
import sys
import zipfile
from pathlib import Path

OPENVINO_UNUSED = ["*/libopenvino_intel_gpu_plugin.so", "*/libopenvino_intel_npu_plugin.so",
                   "*/libs/cache.json", "*/libopenvino_tensorflow*_frontend.so*",
                   "*/libopenvino_paddle_frontend.so*", "*/libopenvino_pytorch_frontend.so*",
                   "*/libopenvino_gguf_frontend.so*", "*/libopenvino_jax_frontend.so*"]


def slim(wheel: Path, patterns: list[str]) -> int:
    """Drop matching members (and their RECORD lines) in place; return bytes saved."""
    tmp = wheel.with_suffix(".tmp")
    dropped: set[str] = set()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if any(fnmatch.fnmatch(info.filename, p) for p in patterns):
                dropped.add(info.filename)
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines()
                data = "\n".join(x for x in lines if x.split(",")[0] not in dropped).encode()
            dst.writestr(info, data)
    saved = wheel.stat().st_size - tmp.stat().st_size
    tmp.replace(wheel)
    return saved


if __name__ == "__main__":
    path = Path(sys.argv[1])
    print(f"{path.name}: {slim(path, sys.argv[2:] or OPENVINO_UNUSED) / 2**20:.1f} MiB saved")
