"""Latency on the user's own devices (an ARM board, a laptop) reached over SSH.

A device is a mapping in the config (see docs/remote-devices.md). `run_remote` copies the models
into a fresh run directory on the device, runs the device's command template there, reads the
output with the device's parser and removes the run directory again. Only the system `ssh`
binary is used (BatchMode: a missing key fails at once instead of waiting for a password), so
the user's ~/.ssh/config, agent and jump hosts work unchanged and no SSH library is needed.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shlex
import string
import subprocess
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bibench.latency.timing import Timing

log = logging.getLogger(__name__)

KINDS = ("ssh",)
PLACEHOLDERS = frozenset({"python", "model", "models", "engine", "threads", "warmup", "repeats",
                          "batch_size", "percentile", "rundir"})
DEFAULTS: dict[str, Any] = {"kind": "ssh", "port": None, "workdir": "/tmp/bibench",
                            "ssh_options": [], "parser": "bibench-json", "python": "python3",
                            "ship_cli": True, "connect_timeout_s": 10, "timeout_s": 3600}
_KEYS = frozenset({"name", "host", "command", *DEFAULTS})
# A run of a percentile-reporting tool gives one percentile: the median first, then the tails.
_PERCENTILES = (50, 10, 90)
# What ship_cli copies next to the models, so the board needs no bibench installed.
_CLI_FILES = ("__init__.py", "latency/__init__.py", "latency/machine.py", "latency/timing.py",
              "latency/board.py")
_STDERR_TAIL = 2000


@dataclass(frozen=True)
class Parser:
    """How to read a tool's output: `parse` returns one dict per model timed by the run, with
    any of median_ms, p10_ms, p90_ms, repeats (other keys are ignored)."""

    parse: Callable[[str], list[dict[str, float]]]
    default_command: str
    # times several models in one run, interleaved in blocks of runs: the template may use
    # {models}
    multi_model: bool = False
    # reports the one percentile asked for: with {percentile} the model is run for 50, 10 and 90
    percentile: bool = False


def parse_bibench_json(text: str) -> list[dict[str, float]]:
    """Read the lines `python -m bibench.latency.board ... --json` prints, one per model."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue  # the board's python may print warnings on stdout
        obj = json.loads(line)
        try:
            row = {k: float(obj[k]) for k in ("median_ms", "p10_ms", "p90_ms")}
            row["repeats"] = int(obj["repeats"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"result line lacks a numeric {e}: {line}") from e
        rows.append(row)
    if not rows:
        raise ValueError("no JSON result line in the output")
    return rows


_BA_COUNT = re.compile(r"Count:\s+(\d+)\s+iterations")
_BA_LATENCY = re.compile(
    r"^\s*(Median|Average|Min|Max|(\d+) percentile):\s+([0-9.eE+-]+)\s*(ms|us|µs)\s*$")
_BA_KEYS = {"Median": "median_ms", "Average": "mean_ms", "Min": "min_ms", "Max": "max_ms"}


def parse_benchmark_app(text: str) -> list[dict[str, float]]:
    """Read OpenVINO benchmark_app's report (the Python app of the 2026.4 wheel prints):

        [ INFO ] Count:            200 iterations
        [ INFO ] Latency:
        [ INFO ]    Median:        16.84 us      (or "90 percentile:" with -latency_percentile 90)
        [ INFO ]    Average:       71.83 us
        [ INFO ]    Min:           14.78 us
        [ INFO ]    Max:           3155.81 us

    Values are printed in us when the average is under 1 ms, else in ms, with two decimals.
    The C++ app uses the same labels (in ms, or µs in some builds). Only the first Latency
    block is read (per-shape groups of dynamic models follow it)."""
    row: dict[str, float] = {}
    lines = [re.sub(r"^\[\s*\w+\s*\]", "", line) for line in text.splitlines()]
    for line in lines:
        if m := _BA_COUNT.search(line):
            row["repeats"] = int(m.group(1))
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Latency:")
    except StopIteration:
        raise ValueError("no 'Latency:' block in benchmark_app's output") from None
    for line in lines[start + 1:]:
        m = _BA_LATENCY.match(line)
        if not m:
            break
        value = float(m.group(3)) / (1.0 if m.group(4) == "ms" else 1000.0)
        if m.group(2):
            pct = int(m.group(2))
            row["median_ms" if pct == 50 else f"p{pct}_ms"] = value
        else:
            row[_BA_KEYS[m.group(1)]] = value
    if not any(k == "median_ms" or re.fullmatch(r"p\d+_ms", k) for k in row):
        raise ValueError("benchmark_app's Latency block has no median or percentile line")
    return [row]


PARSERS: dict[str, Parser] = {
    "bibench-json": Parser(
        parse_bibench_json, multi_model=True,
        default_command="{python} -m bibench.latency.board {models} --engine {engine} "
                        "--threads {threads} --warmup {warmup} --repeats {repeats} "
                        "--batch-size {batch_size} --json"),
    # -ip f32: benchmark_app otherwise feeds image-shaped inputs as u8 (it adds a Convert)
    "benchmark_app": Parser(
        parse_benchmark_app, percentile=True,
        default_command="benchmark_app -m {model} -d CPU -hint none -nthreads {threads} "
                        "-nireq 1 -api sync -niter {repeats} -b {batch_size} "
                        "-infer_precision f32 -ip f32 -latency_percentile {percentile}"),
}


def _placeholders(command: str) -> set[str]:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(command) if f is not None]
    except ValueError as e:
        raise ValueError(f"command: malformed template {command!r}: {e}") from e
    unknown = sorted(f or "{}" for f in fields if f not in PLACEHOLDERS)
    if unknown:
        raise ValueError(f"command: unknown placeholder(s) {', '.join(unknown)} in {command!r}; "
                         f"known: {', '.join(sorted(PLACEHOLDERS))}")
    return set(fields)


def validate_device(spec: Mapping[str, Any]) -> None:
    """Check a device mapping before any job starts; the ValueError names the bad key."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"a remote device must be a mapping, not {type(spec).__name__}")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name: every remote device needs a non-empty name")
    where = f"device {name!r}"
    s = {**DEFAULTS, **spec}
    if s["kind"] not in KINDS:
        raise ValueError(f"{where}: kind: {s['kind']!r} is not one of {', '.join(KINDS)}")
    _check_connection(s, where)
    _check_command(s, where)


def _check_connection(s: Mapping[str, Any], where: str) -> None:
    """How to reach the device and run there: host, port, workdir, ssh and its timeouts."""
    host = s.get("host")
    if not isinstance(host, str) or not host.strip():
        raise ValueError(f"{where}: host: missing (e.g. pi@10.0.0.5 or an alias of ~/.ssh/config)")
    if host.startswith("-") or any(c.isspace() for c in host):
        raise ValueError(f"{where}: host: {host!r} is not a host name")
    port = s["port"]
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 0 < port < 65536):
        raise ValueError(f"{where}: port: {port!r} is not a TCP port")
    workdir = s["workdir"]
    if not isinstance(workdir, str) or not (workdir.startswith("/") or workdir.startswith("~/")):
        raise ValueError(f"{where}: workdir: {workdir!r} must be absolute or start with ~/")
    opts = s["ssh_options"]
    if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
        raise ValueError(f"{where}: ssh_options: must be a list of strings")
    if not isinstance(s["python"], str) or not s["python"].strip():
        raise ValueError(f"{where}: python: must be a non-empty command")
    if not isinstance(s["ship_cli"], bool):
        raise ValueError(f"{where}: ship_cli: must be true or false")
    for key in ("connect_timeout_s", "timeout_s"):
        value = s[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{where}: {key}: must be a positive number of seconds")


def _check_command(s: Mapping[str, Any], where: str) -> None:
    """The parser, and the command template: placeholders known, and those its parser reads."""
    if s["parser"] not in PARSERS:
        raise ValueError(f"{where}: parser: {s['parser']!r} is not one of "
                         f"{', '.join(sorted(PARSERS))}")
    parser = PARSERS[s["parser"]]
    command = s.get("command", parser.default_command)
    if not isinstance(command, str) or not command.strip():
        raise ValueError(f"{where}: command: must be a non-empty template")
    try:
        fields = _placeholders(command)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if ("model" in fields) == ("models" in fields):
        raise ValueError(f"{where}: command: use exactly one of {{model}} (one model per run) "
                         f"and {{models}} (all models in one run)")
    if "models" in fields and not parser.multi_model:
        raise ValueError(f"{where}: command: parser {s['parser']!r} reads one model per run: "
                         f"use {{model}}, not {{models}}")
    if "percentile" in fields and not parser.percentile:
        raise ValueError(f"{where}: command: parser {s['parser']!r} does not read {{percentile}}")


class UnreachableError(RuntimeError):
    """ssh could not connect to, log in to or stay connected to the device (ssh's exit status
    255), or could not run at all. Every further call of the same job would wait for the same
    failure (up to connect_timeout_s each), so the latency job stops trying the device.
    `reason` is one line: the last line ssh printed, or why ssh did not run."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Ssh:
    """The system ssh client with the device's options; every call is one connection."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.name = spec["name"]
        self.timeout_s = float(spec["timeout_s"])
        # ssh keeps the first value it sees for an option: ours come first, so BatchMode holds
        connect = math.ceil(spec["connect_timeout_s"])  # ssh takes whole seconds
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect}"]
        if spec["port"] is not None:
            argv += ["-o", f"Port={spec['port']}"]
        argv += [str(Path(o).expanduser()) if o.startswith("~") else o
                 for o in spec["ssh_options"]]
        self.argv = [*argv, spec["host"]]

    def run(self, script: str, *, what: str, stdin: Path | None = None) -> str:
        """Run `script` with the device's sh (whatever the login shell); return its stdout."""
        argv = [*self.argv, "sh -c " + shlex.quote(script)]
        try:
            if stdin is None:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                      timeout=self.timeout_s)
            else:
                with stdin.open("rb") as f:
                    proc = subprocess.run(argv, stdin=f, capture_output=True,
                                          timeout=self.timeout_s)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(self._message(what, argv, f"timed out after {self.timeout_s:g} s",
                                             e.stderr)) from None
        except OSError as e:
            raise UnreachableError(f"remote device {self.name!r}: cannot run ssh: {e}",
                                   f"cannot run ssh: {e}") from None
        if proc.returncode == 255:
            status = ("failed with exit status 255 (ssh could not connect, authenticate or keep "
                      "the connection)")
            lines = (proc.stderr or b"").decode(errors="replace").strip().splitlines()
            raise UnreachableError(self._message(what, argv, status, proc.stderr),
                                   lines[-1].strip() if lines else "ssh exit status 255")
        if proc.returncode != 0:
            status = f"failed with exit status {proc.returncode}"
            raise RuntimeError(self._message(what, argv, status, proc.stderr))
        return proc.stdout.decode(errors="replace")

    def _message(self, what: str, argv: list[str], status: str, stderr: bytes | None) -> str:
        tail = (stderr or b"").decode(errors="replace").strip()[-_STDERR_TAIL:] or "(empty)"
        return (f"remote device {self.name!r}: {what} {status}\n"
                f"command: {shlex.join(argv)}\nstderr (tail):\n{tail}")


def _shell_path(path: str) -> str:
    """A shell word for a remote path; a leading ~/ means the remote $HOME."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _files_of(model: Path) -> list[Path]:
    """The model and the files it needs beside it (an OpenVINO IR .xml needs its .bin)."""
    weights = model.with_suffix(".bin")
    return [model, weights] if model.suffix == ".xml" and weights.is_file() else [model]


def run_remote(spec: Mapping[str, Any], models: list[Path], *, engine: str, threads: int,
               warmup: int, repeats: int, batch_size: int) -> list[Timing]:
    """Time `models` on the device, one Timing per model in order.

    Models are copied into a per-run directory under the device's workdir (removed afterwards,
    also on failure). A parser that reads several models per run ({models}) times them
    interleaved in blocks of runs; otherwise they run one after the other, alternating
    model by model when several runs per model are needed ({percentile}). Raises RuntimeError
    naming the device, the command and the tail of stderr when ssh or the command fails or the
    output cannot be read; UnreachableError (a RuntimeError) when ssh itself fails."""
    validate_device(spec)
    s = {**DEFAULTS, **spec}
    paths = [Path(m) for m in models]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"models to time on {s['name']!r} not found: {missing}")
    ssh = _Ssh(s)
    rundir = _make_rundir(ssh, s)
    try:
        names = _upload(ssh, s, rundir, paths)
        values = {"python": s["python"], "engine": shlex.quote(engine), "threads": int(threads),
                  "warmup": int(warmup), "repeats": int(repeats), "batch_size": int(batch_size),
                  "rundir": rundir}
        merged: list[dict[str, float]] = [{} for _ in paths]
        for indices, extra in _plan_runs(s, names):
            rows = _run_and_parse(ssh, s, rundir, values, extra, len(indices))
            for i, row in zip(indices, rows, strict=True):
                merged[i].update(row)
    except UnreachableError:  # removing it would wait for the same failure again
        log.warning("%s: run directory %s left on the device (unreachable)", s["name"], rundir)
        raise
    except BaseException:
        _remove_rundir(ssh, rundir)
        raise
    _remove_rundir(ssh, rundir)
    return [_timing(s["name"], names[i], row) for i, row in enumerate(merged)]


def _command(s: Mapping[str, Any]) -> str:
    return s.get("command", PARSERS[s["parser"]].default_command)


def _make_rundir(ssh: _Ssh, s: Mapping[str, Any]) -> str:
    """A fresh run directory under the device's workdir (a shell word)."""
    workdir = s["workdir"].rstrip("/") or "/"
    rundir = _shell_path(f"{workdir}/run-{uuid.uuid4().hex[:12]}")
    mkdir = f"mkdir -p {_shell_path(workdir)} && mkdir {rundir}"
    if s["ship_cli"]:
        mkdir += f" && mkdir -p {rundir}/bibench/latency"
    ssh.run(mkdir, what="creating the run directory")
    return rundir


def _upload(ssh: _Ssh, s: Mapping[str, Any], rundir: str, paths: list[Path]) -> list[str]:
    """Copy the models (with the files they need) and, with ship_cli, the board-side program;
    return the models' names in the run directory (m<i>- prefixed: two models may share a
    file name)."""
    for i, path in enumerate(paths):
        for f in _files_of(path):
            target = f"{rundir}/{shlex.quote(f'm{i}-{f.name}')}"
            ssh.run(f"cat > {target}", what=f"copying {f}", stdin=f)
    if s["ship_cli"]:
        here = Path(__file__).resolve().parent.parent  # the bibench package
        for name in _CLI_FILES:
            ssh.run(f"cat > {rundir}/bibench/{name}", what=f"copying bibench/{name}",
                    stdin=here / name)
    return [f"m{i}-{p.name}" for i, p in enumerate(paths)]


def _plan_runs(s: Mapping[str, Any], names: list[str]
               ) -> list[tuple[list[int], dict[str, Any]]]:
    """The command's runs: (indices of the models it times, its placeholder values)."""
    fields = _placeholders(_command(s))
    runs: list[tuple[list[int], dict[str, Any]]] = []
    for pct in _PERCENTILES if "percentile" in fields else (None,):
        if "models" in fields:
            runs.append((list(range(len(names))),
                         {"models": " ".join(shlex.quote(n) for n in names),
                          "percentile": pct}))
        else:
            runs += [([i], {"model": shlex.quote(n), "percentile": pct})
                     for i, n in enumerate(names)]
    if len(names) > 1 and "models" not in fields:
        log.info("%s: parser %s times one model per run: the models run one after the other "
                 "(not interleaved in blocks of runs)", s["name"], s["parser"])
    return runs


def _run_and_parse(ssh: _Ssh, s: Mapping[str, Any], rundir: str, values: dict[str, Any],
                   extra: dict[str, Any], n_models: int) -> list[dict[str, float]]:
    """One run of the command: its rows, one per model; a tail-percentile run keeps only its
    percentile (the counts are the median run's)."""
    cmd = _command(s).format(**values, **extra)
    out = ssh.run(f"cd {rundir} && {cmd}", what=f"running `{cmd}`")
    try:
        rows = PARSERS[s["parser"]].parse(out)
    except ValueError as e:
        raise RuntimeError(f"remote device {s['name']!r}: cannot read the output of "
                           f"`{cmd}` with parser {s['parser']!r}: {e}\nstdout (tail):\n"
                           f"{out.strip()[-_STDERR_TAIL:]}") from None
    if len(rows) != n_models:
        raise RuntimeError(f"remote device {s['name']!r}: `{cmd}` reported {len(rows)} "
                           f"results for {n_models} model(s)")
    pct = extra["percentile"]
    if pct in (None, 50):
        return rows
    if any(f"p{pct}_ms" not in row for row in rows):
        raise RuntimeError(f"remote device {s['name']!r}: `{cmd}` did not report "
                           f"the {pct}th percentile (is {{percentile}} passed to the tool?)")
    return [{f"p{pct}_ms": row[f"p{pct}_ms"]} for row in rows]


def _remove_rundir(ssh: _Ssh, rundir: str) -> None:
    """Best effort: a failed removal is logged, never hides the run's own outcome."""
    try:
        ssh.run(f"rm -rf {rundir}", what="removing the run directory")
    except RuntimeError as e:
        log.warning("%s", e)


def _timing(device: str, model: str, row: dict[str, float]) -> Timing:
    if "median_ms" not in row:
        raise RuntimeError(f"remote device {device!r}: no median latency reported for {model}")
    return Timing(median_ms=row["median_ms"], p10_ms=row.get("p10_ms", math.nan),
                  p90_ms=row.get("p90_ms", math.nan), repeats=int(row.get("repeats", 0)))


def remote_cpu_model(spec: Mapping[str, Any]) -> str:
    """The device's CPU name, as bibench.latency.cpu_model reads it locally; ARM boards often
    lack 'model name', so their board 'Model' line, then the machine type, stand in."""
    return remote_cpu_info(spec)[0]


def remote_cpu_info(spec: Mapping[str, Any]) -> tuple[str, str]:
    """(CPU name as remote_cpu_model reads it, ISA features as bibench.latency.isa_features
    reads them from the board's /proc/cpuinfo: 'unknown' where it has no flags line)."""
    from bibench.latency.machine import isa_features

    validate_device(spec)
    ssh = _Ssh({**DEFAULTS, **spec})
    out = ssh.run("cat /proc/cpuinfo 2>/dev/null; echo; uname -m", what="reading the CPU model")
    fields: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip().lower(), value.strip())
    isa = isa_features(out)
    for key in ("model name", "model", "hardware"):
        if key in fields:
            return fields[key], isa
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return (lines[-1] if lines else "unknown"), isa
