"""The inference engines the latency job times, registered once.

Every engine is an `Engine`: its name (the config's and the latency rows'), the export form it
runs and the file of that form it loads, its arithmetic (`fp32` or `binary`: 1-bit kernels,
what the hardware track's OM_infer is about), the library whose version its rows record, the
name the board-side program (bibench.latency.board) knows it by on a remote device, and its
timer. The latency job, the config check, the aggregate and the report read `engines()`; a new
engine is one timer function and one entry here, or, from another package, an `Engine` object
in the `bibench.engines` entry-point group (as algorithms are registered).

No torch and no engine library at import: the Snakefile checks engine names at parse time. A
timer is named as "module:function" and imported when it times.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

ENTRY_POINT_GROUP = "bibench.engines"


@dataclass(frozen=True)
class Engine:
    name: str
    title: str  # the report's heading
    form: str  # the export form it runs (bibench.export.forms)
    precision: str  # "fp32" or "binary"
    library: str  # the module whose version every row records
    timer: str  # "module:function" (paths, example, threads, warmup, repeats) -> (timings,
    #             binary convolutions the compiled model executed, -1 where not counted)
    file: str = ""  # the file it loads inside the form's folder ("": the form's own file)
    board_engine: str = ""  # its name on a remote board ("": it does not run there)

    @property
    def binary(self) -> bool:
        return self.precision == "binary"

    def model_file(self, form_path: str | Path) -> Path:
        """The file this engine times, given the path of its form's output."""
        return Path(form_path) / self.file if self.file else Path(form_path)

    def time(self, paths: list[Path], example: Any, *, threads: int, warmup: int,
             repeats: int) -> tuple[list[Any], int]:
        module, function = self.timer.split(":")
        timer: Callable[..., tuple[list[Any], int]] = getattr(
            importlib.import_module(module), function)
        return timer(paths, example, threads=threads, warmup=warmup, repeats=repeats)


BUILT_IN: tuple[Engine, ...] = (
    Engine("onnxruntime", "onnxruntime (float kernels)", "onnx", "fp32", "onnxruntime",
           "bibench.latency.timing:time_onnxruntime_engine", board_engine="onnxruntime"),
    Engine("openvino_fp32", "OpenVINO FP32 (float kernels)", "onnx", "fp32", "openvino",
           "bibench.latency.timing:time_openvino_engine", board_engine="openvino"),
    Engine("openvino_binary", "OpenVINO binary (BinaryConvolution)", "openvino_binary",
           "binary", "openvino", "bibench.latency.timing:time_openvino_binary_engine",
           file="model.xml", board_engine="openvino"),
)


@cache
def engines() -> dict[str, Engine]:
    """Every engine by name: the built-in ones, then those installed packages register."""
    found = {e.name: e for e in BUILT_IN}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        engine = ep.load()
        if not isinstance(engine, Engine):
            raise TypeError(f"entry point {ep.name!r} ({ep.value}) of {ENTRY_POINT_GROUP} is "
                            f"not a bibench.latency.engines.Engine")
        if engine.name in found or engine.name != ep.name:
            raise ValueError(f"engine {engine.name!r} from entry point {ep.value!r} clashes "
                             f"with another or is not named {ep.name!r}")
        found[engine.name] = engine
    return found


@cache
def plugin_engine_sources() -> tuple[Path, ...]:
    """The source files of the engines installed packages register (not imported): part of the
    code fingerprint of every latency job, as an algorithm's file is of its cells'. Once per
    process: the Snakefile fingerprints every latency job at parse time."""
    import importlib.util

    sources = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        spec = importlib.util.find_spec(ep.module)
        if spec is None or spec.origin is None:
            raise ValueError(f"engine entry point {ep.name!r}: module {ep.module!r} not found")
        sources.append(Path(spec.origin))
    return tuple(sources)


def get_engine(name: str) -> Engine:
    try:
        return engines()[name]
    except KeyError:
        raise KeyError(f"unknown engine {name!r}; known: {', '.join(engines())}") from None


def binary_engines() -> tuple[str, ...]:
    """Engines that run 1-bit kernels: their timings show what binarization buys (OM_infer)."""
    return tuple(name for name, e in engines().items() if e.binary)


def engine_version(name: str) -> str:
    """The version of the library behind an engine."""
    library = get_engine(name).library
    if library == "openvino":
        from bibench.latency.timing import openvino_module

        return f"openvino {openvino_module().get_version()}"
    return f"{library} {importlib.import_module(library).__version__}"
