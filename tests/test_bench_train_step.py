"""bench/train_step.py's JSON (what bench/gpu_hours.py reads) and the GPU-hour arithmetic.
Speeds themselves are the benchmark's business, never asserted here (issue 17)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO


def _bench(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def test_train_step_json_has_ratios_and_samples_per_second():
    proc = _bench("train_step.py", "--device", "cpu", "--algorithms", "bnn", "xnor",
                  "--steps", "1", "--warmup", "0", "--batch", "4", "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["arch"], result["batch"], result["device"]) == ("resnet20", 4, "cpu")
    assert result["precision"] == "fp32" and result["device_model"]
    assert set(result["algorithms"]) == {"bnn", "xnor"}
    fp32 = result["fp32"]
    assert set(fp32) == {"step_ms", "samples_per_s"}
    for row in result["algorithms"].values():
        assert set(row) == {"step_ms", "samples_per_s", "ratio_vs_fp32"}
        assert row["ratio_vs_fp32"] == pytest.approx(row["step_ms"] / fp32["step_ms"], rel=1e-2)
        assert row["samples_per_s"] == pytest.approx(4 / (row["step_ms"] / 1e3), rel=1e-2)


def test_train_step_refuses_cuda_without_a_gpu():
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = _bench("train_step.py", "--device", "cuda", "--algorithms", "bnn", "--json")
    assert proc.returncode != 0 and "torch sees no CUDA device" in proc.stderr


CONFIG = """
device: cuda
seeds: [0, 1]
algorithms: [fp32, bnn]
tasks:
  cifar:
    dataset: cifar10
    architectures: [resnet20, vgg_small]
    pretrain: {epochs: 2, batch_size: 100}
    finetune: {epochs: 1, batch_size: 50}
sensitivity:
  tasks: [cifar]
  seeds: [0]
  settings:
    short: {epochs: 1}
    slow: {epochs: 1, lr: 0.0001}
"""


def test_gpu_hours_of_a_small_config_from_a_fake_measurement(tmp_path):
    (tmp_path / "config.yaml").write_text(CONFIG)
    (tmp_path / "rn20.json").write_text(json.dumps({
        "arch": "resnet20", "batch": 100, "device_model": "Fake GPU",
        "fp32": {"step_ms": 360.0}, "algorithms": {"bnn": {"step_ms": 720.0}}}))
    proc = _bench("gpu_hours.py", "--config", str(tmp_path / "config.yaml"),
                  str(tmp_path / "rn20.json"), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    # CIFAR-10 has 50,000 training images. Per seed: pretrain 2 epochs x 500 steps x 0.36 s
    # = 360 s; finetune 1 epoch x 1,000 steps x 0.36 s (720 ms at batch 100 -> 50) = 360 s.
    # Sensitivity (2 settings, 1 seed, 1 epoch): fp32 500 x 0.36 s = 180 s, bnn 1,000 x
    # 0.36 s = 360 s, each twice. 2 x 720 s + 2 x 540 s = 2,520 s = 0.7 h.
    assert result["per_task_arch"] == {"cifar/resnet20": {"jobs": 8, "gpu_hours": 0.7}}
    assert result["total_gpu_hours"] == 0.7
    assert result["not_measured"] == ["vgg_small"]
    assert result["measured_on"] == ["Fake GPU"]


def test_determinism_check_agrees_with_itself_on_cpu_and_sees_a_changed_weight(tmp_path):
    import torch

    proc = _bench("determinism_check.py", "--device", "cpu", "--epochs", "1", "--max-train",
                  "64", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["within_tolerance"] and result["tolerance"] == 1e-6
    for stage in ("pretrain", "finetune_bnn"):
        assert result[stage]["max_loss_diff"] == 0.0 and result[stage]["max_weight_diff"] == 0.0
        assert result[stage]["deterministic"] == ["yes"] and result[stage]["device"] == "cpu"
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from determinism_check import compare
    finally:
        sys.path.pop(0)
    blob = torch.load(tmp_path / "pretrain2" / "model.pt", weights_only=True)
    name = next(k for k, v in blob["state_dict"].items() if v.is_floating_point())
    blob["state_dict"][name].view(-1)[0] += 0.5
    torch.save(blob, tmp_path / "pretrain2" / "model.pt")
    assert compare(tmp_path / "pretrain1", tmp_path / "pretrain2")["max_weight_diff"] == (
        pytest.approx(0.5))


def test_gpu_hours_extrapolates_an_unmeasured_architecture_from_its_flops(tmp_path):
    import importlib.util
    import math

    spec = importlib.util.spec_from_file_location("gpu_hours", REPO / "bench" / "gpu_hours.py")
    gpu_hours = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_hours)
    (tmp_path / "config.yaml").write_text(CONFIG)
    (tmp_path / "rn20.json").write_text(json.dumps({
        "arch": "resnet20", "batch": 100, "device_model": "Fake GPU",
        "fp32": {"step_ms": 360.0, "samples_per_s": 100 / 0.36},
        "algorithms": {"bnn": {"step_ms": 720.0, "ratio_vs_fp32": 2.0}}}))
    proc = _bench("gpu_hours.py", "--config", str(tmp_path / "config.yaml"),
                  str(tmp_path / "rn20.json"), "--json", "--extrapolate")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    vgg = result["per_task_arch"]["cifar/vgg_small"]
    assert vgg["extrapolated"] and vgg["ratios_from"] == "resnet20"
    assert result["not_measured"] == [] and "extrapolated" not in result["per_task_arch"][
        "cifar/resnet20"]
    # vgg_small's FP32 step: its FLOPs at resnet20's measured FLOP rate, at least resnet20's
    # step (the floor); bnn twice that. Jobs as in the test above.
    ms_per_sample = 0.36e3 / 100 * (gpu_hours.training_flops("vgg_small")
                                     / gpu_hours.training_flops("resnet20"))
    def step(batch):
        return max(360.0, ms_per_sample * batch) / 1e3
    seconds = 2 * (2 * 500 * step(100) + 1000 * 2 * step(50))  # two seeds
    seconds += 2 * (500 * step(100) + 1000 * 2 * step(50))  # two sensitivity settings
    assert vgg["gpu_hours"] == pytest.approx(seconds / 3600, abs=0.01)
    assert vgg["gpu_hours"] > result["per_task_arch"]["cifar/resnet20"]["gpu_hours"]
    assert result["extrapolated_gpu_hours"] == pytest.approx(vgg["gpu_hours"], abs=0.01)
    assert not math.isnan(result["total_gpu_hours"])
