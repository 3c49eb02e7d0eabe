"""Remote latency over SSH against a real sshd on 127.0.0.1, and the parsers on real outputs.

The sshd runs as the current user on a free port with its own host key, a throwaway client key
and strict host-key checking, so the runner is exercised exactly as it talks to a board.
"""

from __future__ import annotations

import getpass
import math
import os
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

from bibench.latency.remote import (
    PARSERS,
    parse_benchmark_app,
    parse_bibench_json,
    remote_cpu_model,
    run_remote,
    validate_device,
)

SSHD = Path("/usr/sbin/sshd")
BIN = Path(sys.executable).parent
BENCHMARK_APP = BIN / "benchmark_app"
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bibench-test",
                    "-f", str(path)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory):
    """A running sshd and the device mapping that reaches it (sshd killed at the end)."""
    if not SSHD.exists():
        pytest.skip("/usr/sbin/sshd is absent (apt-get install openssh-server)")
    if not (shutil.which("ssh") and shutil.which("ssh-keygen")):
        pytest.skip("the OpenSSH client (ssh, ssh-keygen) is absent")
    d = tmp_path_factory.mktemp("sshd")
    _keygen(d / "host_key")
    _keygen(d / "client_key")
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    port = _free_port()
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {d / 'host_key'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\n"
        # only for this throwaway server: the tests may run as root (containers, CI)
        "PermitRootLogin yes\n")
    host_pub = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    if os.geteuid() == 0:  # sshd started by root needs its privilege-separation directory
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = (d / "sshd.log").open("wb")
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {(d / 'sshd.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"sshd does not accept: {(d / 'sshd.log').read_text()}")
                time.sleep(0.05)
        yield {"name": "loopback", "kind": "ssh", "host": f"{getpass.getuser()}@127.0.0.1",
               "port": port, "workdir": str(d / "remote-work"), "python": sys.executable,
               "ssh_options": ["-F", "/dev/null", "-i", str(d / "client_key"),
                               "-o", f"UserKnownHostsFile={d / 'known_hosts'}",
                               "-o", "StrictHostKeyChecking=yes"]}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _tiny_onnx(path: Path, channels: int) -> Path:
    """Conv-ReLU-Gemm on 3x16x16 inputs with a dynamic batch (no torch needed)."""
    rng = np.random.default_rng(channels)
    inits = [numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32),
                                     "w"),
             numpy_helper.from_array(rng.standard_normal((10, channels * 256)).astype(np.float32),
                                     "fc"),
             numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "flat")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Reshape", ["r", "flat"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two models with the same file name (as a job's binarized and FP32 exports can be)."""
    d = tmp_path_factory.mktemp("models")
    return [_tiny_onnx(d / "binary" / "model.onnx", 4), _tiny_onnx(d / "fp32" / "model.onnx", 16)]


def _assert_sane(t, repeats: int) -> None:
    assert t.repeats == repeats
    assert 0 < t.p10_ms <= t.median_ms <= t.p90_ms < 1000


def _assert_cleaned(spec: dict) -> None:
    workdir = Path(spec["workdir"])
    assert workdir.is_dir() and list(workdir.iterdir()) == [], "run directory left behind"


def test_run_remote_bibench_json(device: dict, models: list[Path]) -> None:
    """The default command: the shipped latency CLI times both models interleaved in one run.

    The device's python runs without site (-S) and only site-packages on its path, so this
    checkout's editable install is invisible there: only the copy shipped into the run
    directory can be imported, as on a board without bibench."""
    site_packages = sysconfig.get_paths()["purelib"]
    spec = {**device, "python": f"env PYTHONPATH={shlex.quote(site_packages)} "
                                f"{shlex.quote(sys.executable)} -S"}
    timings = run_remote(spec, models, engine="onnxruntime", threads=1, warmup=3, repeats=30,
                         batch_size=2)
    assert len(timings) == 2
    for t in timings:
        _assert_sane(t, 30)
    _assert_cleaned(device)


def test_run_remote_benchmark_app(device: dict, models: list[Path]) -> None:
    """benchmark_app over ssh: one run per percentile (50, 10, 90) gives a full Timing."""
    if not BENCHMARK_APP.exists():
        pytest.skip("OpenVINO's benchmark_app is not installed beside this python")
    spec = {**device, "parser": "benchmark_app",
            "command": PARSERS["benchmark_app"].default_command.replace(
                "benchmark_app", str(BENCHMARK_APP), 1)}
    [t] = run_remote(spec, models[:1], engine="openvino", threads=1, warmup=1, repeats=50,
                     batch_size=1)
    assert t.repeats == 50
    # the three numbers come from three processes: on a tiny net (~20 us) run-to-run drift
    # exceeds the spread, so even p10 <= p90 is not certain; all three must be there
    assert all(0 < v < 1000 for v in (t.p10_ms, t.median_ms, t.p90_ms))
    _assert_cleaned(spec)


def test_remote_cpu_model(device: dict) -> None:
    from bibench.latency.machine import cpu_model

    assert remote_cpu_model(device) == cpu_model()  # loopback: the same machine


def _benchmark_app(model: Path, *args: str) -> str:
    proc = subprocess.run([str(BENCHMARK_APP), "-m", str(model), "-d", "CPU", "-hint", "none",
                           "-nthreads", "1", "-nireq", "1", "-api", "sync", "-ip", "f32",
                           "-infer_precision", "f32", *args],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("batch", [1, 256])
def test_benchmark_app_parser_on_real_output(models: list[Path], batch: int) -> None:
    """Both of its units (us below a 1 ms average, else ms) and the percentile label."""
    if not BENCHMARK_APP.exists():
        pytest.skip("OpenVINO's benchmark_app is not installed beside this python")
    [row] = parse_benchmark_app(_benchmark_app(models[1], "-niter", "40", "-b", str(batch)))
    assert row["repeats"] == 40
    assert 0 < row["min_ms"] <= row["median_ms"] <= row["max_ms"] < 1000
    assert row["min_ms"] <= row["mean_ms"] <= row["max_ms"]
    [p90] = parse_benchmark_app(_benchmark_app(models[1], "-niter", "40", "-b", str(batch),
                                               "-latency_percentile", "90"))
    assert "median_ms" not in p90 and 0 < p90["p90_ms"] < 1000


def test_benchmark_app_parser_units() -> None:
    """The lines benchmark_app 2026.4 formats (main.py: two decimals, us under 1 ms average)."""
    text = ("[ INFO ] Count:            12 iterations\n[ INFO ] Duration:         30.00 ms\n"
            "[ INFO ] Latency:\n[ INFO ]    10 percentile:     1.50 ms\n"
            "[ INFO ]    Average:       2.25 ms\n[ INFO ]    Min:           1.25 ms\n"
            "[ INFO ]    Max:           4.00 ms\n[ INFO ] Throughput:   400.00 FPS\n"
            "[ INFO ] Latency for each data shape group:\n[ INFO ] 1. x: [1,3,16,16]\n"
            "[ INFO ]    Median:     9.00 ms\n")
    assert parse_benchmark_app(text) == [{"repeats": 12, "p10_ms": 1.5, "mean_ms": 2.25,
                                          "min_ms": 1.25, "max_ms": 4.0}]
    us = text.replace("10 percentile:     1.50 ms", "Median:        750.00 us")
    assert parse_benchmark_app(us)[0]["median_ms"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="Latency"):
        parse_benchmark_app("[ ERROR ] Model file does not exist\n")


def test_latency_cli_openvino_without_torch(models: list[Path]) -> None:
    """What runs on a board: JSON per model, and no torch import (boards may not have it)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "bibench.latency.board",
                           *map(str, models), "--engine", "openvino", "--threads", "1",
                           "--warmup", "2", "--repeats", "20", "--batch-size", "1", "--json"],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "openvino" in imported and not any(m.split(".")[0] == "torch" for m in imported)
    rows = parse_bibench_json(proc.stdout)
    assert len(rows) == 2 and all(r["repeats"] == 20 and r["median_ms"] > 0 for r in rows)


@pytest.mark.parametrize(("change", "match"), [
    ({"port": "free"}, r"(?s)'unreachable'.*exit status 255.*Connection refused"),
    ({"host": "bibench-test.invalid", "connect_timeout_s": 5},
     r"(?s)'unreachable'.*exit status 255.*stderr \(tail\):\nssh: .*bibench-test\.invalid"),
    ({"ssh_options": "stranger"}, r"(?s)'unreachable'.*exit status 255.*Permission denied"),
    ({"command": "sh -c 'echo boom >&2; exit 3' {model}"},
     r"(?s)'unreachable'.*running `sh -c.*exit status 3\ncommand: ssh .*stderr \(tail\):\nboom"),
    ({"command": "echo hello {models}"},
     r"(?s)'unreachable'.*cannot read the output.*stdout \(tail\):\nhello m0-model\.onnx"),
])
def test_run_remote_errors(device: dict, models: list[Path], tmp_path: Path, change: dict,
                           match: str) -> None:
    """ssh failures (nothing listening; a key the device refuses, with no password prompt), a
    failing command and unreadable output raise RuntimeError naming the device, the command and
    the tail of stderr; the run directory is removed after a failing command too."""
    spec = {**device, "name": "unreachable", "ship_cli": False, **change}
    if change.get("port") == "free":
        spec["port"] = _free_port()
    if change.get("ssh_options") == "stranger":
        _keygen(tmp_path / "stranger")
        # device["ssh_options"][3] is the client key: swap it for one the device never saw
        spec["ssh_options"] = [o.replace(device["ssh_options"][3], str(tmp_path / "stranger"))
                               for o in device["ssh_options"]] + ["-o", "IdentitiesOnly=yes"]
    with pytest.raises(RuntimeError, match=match):
        run_remote(spec, models[:1], engine="onnxruntime", threads=1, warmup=1, repeats=2,
                   batch_size=1)
    if "command" in change:
        _assert_cleaned(spec)


GOOD = {"name": "pi5", "kind": "ssh", "host": "pi@10.0.0.5", "port": 22,
        "workdir": "/tmp/bibench", "ssh_options": ["-i", "~/.ssh/id_ed25519"],
        "command": PARSERS["bibench-json"].default_command, "parser": "bibench-json",
        "python": "python3"}


def test_validate_device_accepts_documented_forms() -> None:
    validate_device(GOOD)
    validate_device({"name": "nuc", "host": "nuc"})  # everything else has a default
    validate_device({**GOOD, "parser": "benchmark_app",
                     "command": "benchmark_app -m {model} -d CPU -hint none -nthreads {threads} "
                                "-nireq 1 -api sync -niter {repeats} -b {batch_size} "
                                "-infer_precision f32 -latency_percentile 50"})


@pytest.mark.parametrize(("change", "match"), [
    ({"command": "{python} -m bibench.latency.board {models} --cores {cores}"}, r"command.*cores"),
    ({"command": "{python} -m bibench.latency.board {} --json"}, r"command.*\{\}"),
    ({"command": "run {model"}, r"command: malformed"),
    ({"command": "{python} -m bibench.latency.board --json"}, r"command.*\{model\}"),
    ({"host": None}, r"host: missing"),
    ({"host": "-oProxyCommand=x"}, r"host:"),
    ({"parser": "xml"}, r"parser: 'xml'"),
    ({"parser": "benchmark_app"}, r"command: parser 'benchmark_app'.*\{models\}"),
    ({"port": 70000}, r"port:"),
    ({"kind": "adb"}, r"kind:"),
    ({"workdir": "relative/dir"}, r"workdir:"),
    ({"ssh_options": "-i key"}, r"ssh_options:"),
    ({"hots": "x"}, r"unknown key\(s\) hots"),
    ({"name": ""}, r"name:"),
])
def test_validate_device_names_the_bad_key(change: dict, match: str) -> None:
    spec = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=match):
        validate_device(spec)


def test_latency_rows_of_a_remote_device(device: dict, models: list[Path]) -> None:
    """The latency job's measure_cell reaches an ssh device from its config entry."""
    from bibench.latency.devices import measure_cell

    exports = pd.DataFrame({"form": ["onnx"], "status": ["ok"], "packed_bytes": [0]}
                           ).set_index("form")
    spec = {k: v for k, v in device.items() if k != "name"}
    settings = {"threads": [1, 2], "batch_size": 1, "warmup": 2, "repeats": 50,
                "devices": {"board": {**spec, "engines": ["onnxruntime"], "threads": [1]}}}
    rows = measure_cell(algorithm="bnn", forms={"onnx": models[0],
                                                "openvino_binary": models[0].parent},
                        fp32_onnx=models[1], exports=exports, settings=settings,
                        max_threads=1)
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == "ok" and row["device_kind"] == "ssh" and row["threads"] == 1
    assert row["repeats"] == 50 and row["median_ms"] > 0 and row["fp32_median_ms"] > 0
    assert row["speedup_vs_fp32"] == pytest.approx(row["fp32_median_ms"] / row["median_ms"])
    assert row["cpu_model"] and not row["cpu_model"].startswith("unknown")
    from bibench.latency.machine import isa_features

    assert row["cpu_isa"] == isa_features()  # the board's own flags (loopback: this machine)
    assert row["engine_version"] == "unknown (remote board)"
    _assert_cleaned(device)


def test_a_dead_board_is_tried_once_per_job_and_every_row_says_why(
        device: dict, models: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens on the board's port: the first ssh call fails and marks the board dead
    for the rest of the job; every row (engine x thread count) carries the reason at once,
    instead of waiting connect_timeout_s again per row."""
    import bibench.latency.remote as remote
    from bibench.latency.devices import measure_cell

    calls = []
    run = subprocess.run

    def counted(argv, *args, **kwargs):
        calls.append(argv)
        return run(argv, *args, **kwargs)

    monkeypatch.setattr(remote.subprocess, "run", counted)
    exports = pd.DataFrame({"form": ["onnx"], "status": ["ok"], "packed_bytes": [0]}
                           ).set_index("form")
    spec = {k: v for k, v in device.items() if k != "name"}
    settings = {"threads": [1], "batch_size": 1, "warmup": 1, "repeats": 5,
                "devices": {"dead": {**spec, "port": _free_port(), "threads": [1, 2, 4],
                                     "engines": ["onnxruntime", "openvino_fp32"]}}}
    rows = measure_cell(algorithm="bnn", forms={"onnx": models[0],
                                                "openvino_binary": models[0].parent},
                        fp32_onnx=models[1], exports=exports, settings=settings,
                        max_threads=1)
    assert len(rows) == 6 and len(calls) == 1  # one connection attempt in the whole job
    for row in rows:
        assert row["status"].startswith("failed: unreachable: ssh: connect to host 127.0.0.1")
        assert "Connection refused" in row["status"] and "not tried again" in row["status"]
        assert row["cpu_model"] == "unknown (unreachable)" and math.isnan(row["median_ms"])
        assert row["concurrent_timing"] is None and math.isnan(row["load_avg_start"])


def test_a_board_lost_mid_job_is_not_tried_again(device: dict, models: list[Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The board answers the CPU query, then ssh fails while timing: the rows after that
    failure say why without another connection attempt."""
    import bibench.latency.remote as remote
    from bibench.latency.devices import measure_cell

    calls = []
    run = subprocess.run

    def lost_after_first(argv, *args, **kwargs):
        calls.append(argv)
        if len(calls) > 1:  # every later connection: as ssh reports an unreachable host
            return subprocess.CompletedProcess(argv, 255, b"", b"ssh: connect to host "
                                               b"127.0.0.1 port 22: No route to host\r\n")
        return run(argv, *args, **kwargs)

    monkeypatch.setattr(remote.subprocess, "run", lost_after_first)
    exports = pd.DataFrame({"form": ["onnx"], "status": ["ok"], "packed_bytes": [0]}
                           ).set_index("form")
    spec = {k: v for k, v in device.items() if k != "name"}
    settings = {"threads": [1], "batch_size": 1, "warmup": 1, "repeats": 5,
                "devices": {"lost": {**spec, "threads": [1, 2], "engines": ["onnxruntime"]}}}
    rows = measure_cell(algorithm="bnn", forms={"onnx": models[0],
                                                "openvino_binary": models[0].parent},
                        fp32_onnx=models[1], exports=exports, settings=settings,
                        max_threads=1)
    assert len(calls) == 2  # the CPU query, then the one timing attempt that failed
    assert rows[0]["cpu_model"] and not rows[0]["cpu_model"].startswith("unknown")
    for row in rows:
        assert row["status"].startswith("failed: unreachable: ssh: connect to host 127.0.0.1 "
                                        "port 22: No route to host (remote device 'lost'")
