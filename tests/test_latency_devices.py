"""The latency job's plan: devices x engines x thread counts, and rows for what cannot run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from torch import nn

from bibench.export.onnx import export_onnx
from bibench.latency.devices import available_cores, measure_cell, thread_counts

SETTINGS = {"threads": [1, 2, 4, 8], "batch_size": 1, "warmup": 2, "repeats": 50,
            "devices": {"here": {"kind": "local",
                                 "engines": ["onnxruntime", "openvino_fp32", "openvino_binary"]}}}


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    paths = {}
    for name, width in (("cell", 8), ("fp32", 16)):
        net = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Flatten(),
                            nn.Linear(width * 64, 10)).eval()
        paths[name] = d / name / "model.onnx"
        paths[name].parent.mkdir()
        export_onnx(net, torch.randn(1, 3, 8, 8), paths[name])
    return paths


def _exports(binary_status: str | None) -> pd.DataFrame:
    rows = [{"form": "onnx", "status": "ok", "packed_bytes": 0}]
    if binary_status is not None:
        rows.append({"form": "openvino_binary", "status": binary_status, "packed_bytes": 100})
    return pd.DataFrame(rows).set_index("form")


def test_local_thread_counts_stop_at_what_the_job_got():
    device = SETTINGS["devices"]["here"]
    assert thread_counts(device, SETTINGS, max_threads=1) == [1]
    assert thread_counts(device, SETTINGS, max_threads=64) == [
        t for t in (1, 2, 4, 8) if t <= available_cores()]
    remote = {"kind": "ssh", "threads": [4, 1]}
    assert thread_counts(remote, SETTINGS, max_threads=1) == [1, 4]  # not this machine's cores


def test_fp32_cell_is_its_own_baseline(onnx_files):
    rows = measure_cell(algorithm="fp32", forms={"onnx": onnx_files["fp32"],
                                                 "openvino_binary": "unused"},
                        fp32_onnx=onnx_files["fp32"], exports=_exports(None),
                        settings=SETTINGS, max_threads=1)
    assert [(r["engine"], r["threads"]) for r in rows] == [("onnxruntime", 1),
                                                          ("openvino_fp32", 1)]
    for r in rows:
        assert r["status"] == "ok" and r["repeats"] == 50 and r["speedup_vs_fp32"] == 1.0
        assert r["precision"] == "fp32" and r["storage_saving"] == 1.0


def test_the_latency_job_runs_without_torch(onnx_files, tmp_path):
    """Every latency job is a fresh process that holds all cores; torch's import alone is
    2.2 s of it on this project's machine, and the job needs none of torch."""
    from bibench.io import write_table
    from bibench.provenance import provenance

    cell = {"task": "t", "arch": "a", "algorithm": "fp32", "seed": 0}
    write_table([{**cell, "form": "onnx", "status": "ok", "opset": 17, "file_bytes": 1,
                  "packed_bytes": 1, "checker_passed": True, "argmax_agreement": 1.0,
                  "within_logit_tolerance": 1.0, "max_abs_logit_diff": 0.0, "n_samples": 1,
                  "n_binarized_layers": 0, "n_binary_conv": 0,
                  **provenance({}, "cpu", 1, code="x")}], tmp_path / "export.parquet", "export")
    settings = {**SETTINGS, "threads": [1], "repeats": 50,
                "devices": {"here": {"kind": "local", "engines": ["onnxruntime"]}}}
    code = ("import sys, json; from bibench.jobs import latency; "
            "latency(**json.loads(sys.argv[1])); "
            "assert 'torch' not in sys.modules, 'the latency job imported torch'")
    job = {**cell, "settings": settings, "threads": 1,
           "forms": {"onnx": str(onnx_files["fp32"]), "openvino_binary": "unused"},
           "export_table": str(tmp_path / "export.parquet"),
           "fp32_onnx": str(onnx_files["fp32"]), "table": str(tmp_path / "latency.parquet"),
           "code": "x"}
    subprocess.run([sys.executable, "-c", code, json.dumps(job)], check=True)
    assert pd.read_parquet(tmp_path / "latency.parquet")["status"].tolist() == ["ok"]


def test_a_form_that_does_not_deploy_is_a_row_with_its_reason(onnx_files):
    reason = "not deployable: spatial scale factors (XNOR++ Gamma) have no engine operator"
    rows = measure_cell(algorithm="xnorpp", forms={"onnx": onnx_files["cell"],
                                                   "openvino_binary": "unused"},
                        fp32_onnx=onnx_files["fp32"], exports=_exports(reason),
                        settings=SETTINGS, max_threads=1)
    by_engine = {r["engine"]: r for r in rows}
    assert set(by_engine) == {"onnxruntime", "openvino_fp32", "openvino_binary"}
    binary = by_engine.pop("openvino_binary")
    assert binary["status"] == reason and math.isnan(binary["median_ms"])
    assert math.isnan(binary["speedup_vs_fp32"]) and binary["precision"] == "binary"
    for r in by_engine.values():  # float engines still time the binarized graph
        assert r["status"] == "ok" and r["median_ms"] > 0 and r["fp32_median_ms"] > 0


def test_a_form_that_failed_its_parity_check_is_not_timed(onnx_files):
    exports = _exports(None)
    exports.loc["onnx", "status"] = "failed: onnx disagrees with PyTorch"
    settings = {**SETTINGS, "devices": {"here": {"kind": "local", "engines": ["onnxruntime"]}}}
    rows = measure_cell(algorithm="bnn", forms={"onnx": onnx_files["cell"],
                                                "openvino_binary": "unused"},
                        fp32_onnx=onnx_files["fp32"], exports=exports, settings=settings,
                        max_threads=1)
    assert len(rows) == 1 and rows[0]["status"].startswith("failed: onnx disagrees")
    assert math.isnan(rows[0]["median_ms"])


def test_models_alternate_in_blocks_of_runs_each_after_untimed_ones():
    from bibench.latency.timing import time_interleaved

    calls: list[str] = []
    timings = time_interleaved([lambda: calls.append("a"), lambda: calls.append("b")],
                               warmup=2, repeats=25, block=10, settle=3)
    assert [t.repeats for t in timings] == [25, 25]
    after_warmup = "".join(calls[4:])
    # blocks of 10, 10 and 5 timed runs, each after three untimed runs
    assert after_warmup == ("a" * 13 + "b" * 13) * 2 + "a" * 8 + "b" * 8
    with pytest.raises(ValueError, match="block"):
        time_interleaved([lambda: None], warmup=0, repeats=5, block=0)


# --------------------------------------------------------------------------- what decides a number

AVX512_FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_vpopcntdq\n"


def test_isa_features_name_what_the_binary_kernel_uses():
    from bibench.latency.machine import isa_features

    assert isa_features(AVX512_FLAGS) == "avx2 avx512f avx512_vpopcntdq"
    assert isa_features("flags : fpu sse2 avx avx2 fma\n") == "avx2"
    assert isa_features("flags : fpu sse2\n") == "none of avx2, avx512f, avx512_vpopcntdq"
    assert isa_features("Features : fp asimd evtstrm\nHardware : BCM2835\n") == "unknown"


@pytest.mark.parametrize(("arch", "binary_convs"), [("resnet20", 18), ("resnet18", 16)])
def test_reference_runs_one_binary_convolution_per_3x3_conv(tmp_path, arch, binary_convs):
    from bibench.latency.reference import write_reference
    from bibench.latency.timing import count_binary_convolutions, openvino_compile
    from bibench.models import get_architecture

    path = write_reference(tmp_path / "ref.xml", arch, (1, 28, 28), 10)
    assert count_binary_convolutions(openvino_compile(path, 1)) == binary_convs
    # float 1x1 shortcuts, as the architecture's policy keeps them
    assert "*.shortcut.*" in get_architecture(arch).keep_fp


def test_reference_is_refused_where_no_architecture_matches(tmp_path):
    from bibench.latency.reference import reference_note, write_reference

    assert reference_note("resnet18") == ""
    assert "no hand-built reference for pointnet" in reference_note("pointnet")
    with pytest.raises(ValueError, match="no hand-built reference for vgg_small"):
        write_reference(tmp_path / "ref.xml", "vgg_small", (3, 32, 32), 10)


@pytest.fixture(scope="module")
def resnet20_files(tmp_path_factory):
    """A ResNet-20-shaped FP32 ONNX and, standing in for the cell's binary form, a reference IR
    built with another seed."""
    from bibench.latency.reference import write_reference

    d = tmp_path_factory.mktemp("r20")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(16, 10)).eval()
    export_onnx(net, torch.randn(1, 1, 28, 28), d / "fp32.onnx")
    (d / "cell").mkdir()
    write_reference(d / "cell" / "model.xml", "resnet20", (1, 28, 28), 10, seed=1)
    return d


def test_binary_rows_time_the_reference_in_the_same_window(resnet20_files, tmp_path):
    d = resnet20_files
    settings = {**SETTINGS, "threads": [1]}
    rows = measure_cell(algorithm="bnn", forms={"onnx": d / "fp32.onnx",
                                                "openvino_binary": d / "cell"},
                        fp32_onnx=d / "fp32.onnx", exports=_exports("ok"), settings=settings,
                        max_threads=1, arch="resnet20", workdir=tmp_path)
    by_engine = {r["engine"]: r for r in rows}
    binary = by_engine["openvino_binary"]
    assert binary["status"] == "ok" and binary["reference_status"] == "ok"
    assert binary["reference_median_ms"] > 0
    assert binary["reference_speedup_vs_fp32"] == pytest.approx(
        binary["fp32_median_ms"] / binary["reference_median_ms"])
    assert binary["cpu_isa"] and binary["engine_version"].startswith("openvino 20")
    assert by_engine["onnxruntime"]["engine_version"].startswith("onnxruntime 1.")
    for engine in ("onnxruntime", "openvino_fp32"):
        assert by_engine[engine]["reference_status"] == "not applicable: float engine"
        assert math.isnan(by_engine[engine]["reference_median_ms"])


def test_binary_rows_say_when_no_reference_applies(resnet20_files, tmp_path):
    d = resnet20_files
    settings = {**SETTINGS, "threads": [1],
                "devices": {"here": {"kind": "local", "engines": ["openvino_binary"]}}}
    rows = measure_cell(algorithm="bnn", forms={"onnx": d / "fp32.onnx",
                                                "openvino_binary": d / "cell"},
                        fp32_onnx=d / "fp32.onnx", exports=_exports("ok"), settings=settings,
                        max_threads=1, arch="vgg_small", workdir=tmp_path)
    assert rows[0]["status"] == "ok" and math.isnan(rows[0]["reference_median_ms"])
    assert rows[0]["reference_status"].startswith("no hand-built reference for vgg_small")


# --------------------------------------------------------------------------- concurrent timing

_ONNXRUNTIME_ONLY = {**SETTINGS, "threads": [1], "repeats": 20,
                     "devices": {"here": {"kind": "local", "engines": ["onnxruntime"]}}}

# A second process that opens a timing window on this machine, says so, and holds it
_HOLDER = ("import sys; from bibench.latency.windows import TimingWindow; "
           "from bibench.latency.devices import window_device; "
           "w = TimingWindow(window_device({'kind': 'local'}), 'the other run'); w.open(); "
           "print('open', flush=True); sys.stdin.read()")


def _holder(registry) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "BIBENCH_TIMING_DIR": str(registry)})
    assert proc.stdout.readline().strip() == "open"
    return proc


def test_a_row_timed_while_another_bibench_job_times_is_contended(onnx_files, tmp_path,
                                                                   monkeypatch):
    """Two runs timing at the same second (after `snakemake --unlock` while a run is live):
    the row keeps its numbers, records the load average and is marked, so no result uses it."""
    monkeypatch.setenv("BIBENCH_TIMING_DIR", str(tmp_path))
    other = _holder(tmp_path)
    try:
        [row] = measure_cell(algorithm="bnn", forms={"onnx": onnx_files["cell"],
                                                     "openvino_binary": "unused"},
                             fp32_onnx=onnx_files["fp32"], exports=_exports(None),
                             settings=_ONNXRUNTIME_ONLY, max_threads=1, label="t/a/bnn/seed0")
    finally:
        other.communicate("")
    assert row["concurrent_timing"] is True
    assert row["status"].startswith("contended: another bibench job timed on the same device")
    assert f"pid {other.pid} timing the other run" in row["status"]
    assert row["median_ms"] > 0 and row["speedup_vs_fp32"] > 0  # kept, but marked
    assert row["load_avg_start"] >= 0 and row["load_avg_end"] >= 0
    # the other run is gone: the next timing is clean
    [row] = measure_cell(algorithm="bnn", forms={"onnx": onnx_files["cell"],
                                                 "openvino_binary": "unused"},
                         fp32_onnx=onnx_files["fp32"], exports=_exports(None),
                         settings=_ONNXRUNTIME_ONLY, max_threads=1)
    assert row["status"] == "ok" and row["concurrent_timing"] is False
    assert list(tmp_path.iterdir()) == []


def test_the_entry_of_a_killed_job_does_not_count(onnx_files, tmp_path, monkeypatch):
    """A job killed while timing (kill -9) leaves its entry behind; nobody holds its lock, so
    it is recognised as dead, not counted and removed."""
    monkeypatch.setenv("BIBENCH_TIMING_DIR", str(tmp_path))
    other = _holder(tmp_path)
    other.kill()
    other.wait()
    [entry] = tmp_path.glob("window-*")
    [row] = measure_cell(algorithm="bnn", forms={"onnx": onnx_files["cell"],
                                                 "openvino_binary": "unused"},
                         fp32_onnx=onnx_files["fp32"], exports=_exports(None),
                         settings=_ONNXRUNTIME_ONLY, max_threads=1)
    assert row["status"] == "ok" and row["concurrent_timing"] is False
    assert not entry.exists()


def test_a_window_that_opened_and_closed_inside_another_is_seen_by_both(tmp_path):
    from bibench.latency.windows import TimingWindow

    with TimingWindow("local", "long", tmp_path) as long:
        with TimingWindow("local", "short", tmp_path) as short:
            pass
        with TimingWindow("ssh:pi@10.0.0.5:22", "a board", tmp_path) as board:
            pass  # another device: no contention
    assert [e["label"] for e in long.overlaps] == ["short"]
    assert [e["label"] for e in short.overlaps] == ["long"]
    assert board.overlaps == [] and board.checked
    assert list(tmp_path.iterdir()) == []


def broken_timer(paths, example, *, threads, warmup, repeats):
    raise RuntimeError("the engine's kernel crashed")


def test_an_engine_that_fails_is_a_row_with_its_reason_and_the_others_still_time(
        onnx_files, monkeypatch):
    import bibench.latency.engines as engines_module
    from bibench.latency.engines import Engine, engines

    broken = Engine("broken", "a broken engine", "onnx", "fp32", "onnxruntime",
                    f"{__name__}:broken_timer")
    monkeypatch.setattr(engines_module, "engines", lambda: {**engines(), "broken": broken})
    settings = {**SETTINGS, "devices": {"here": {"kind": "local",
                                                 "engines": ["broken", "onnxruntime"]}}}
    rows = measure_cell(algorithm="fp32", forms={"onnx": onnx_files["fp32"],
                                                 "openvino_binary": "unused"},
                        fp32_onnx=onnx_files["fp32"], exports=_exports(None),
                        settings=settings, max_threads=1)
    by_engine = {r["engine"]: r for r in rows}
    assert by_engine["broken"]["status"] == (
        "failed: RuntimeError: the engine's kernel crashed")
    assert math.isnan(by_engine["broken"]["median_ms"])
    assert by_engine["onnxruntime"]["status"] == "ok"
