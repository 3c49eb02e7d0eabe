"""The CUDA path's CPU-testable parts: bf16 autocast keeps the signs exact, the determinism
switch and its record in the rows, the device model in every row (issue 17)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bibench.algorithms import available
from bibench.algorithms.base import (
    BinarizedLayer,
    sign_clip_ste,
    sign_identity_ste,
    sign_polynomial,
)
from bibench.binarize import binarize, update_schedules
from bibench.training.device import (
    apply_determinism,
    determinism_note,
    nondeterministic_ops,
    set_cublas_workspace,
)
from bibench.training.loop import TrainSettings, train

CPU = torch.device("cpu")
BF16 = torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.fixture(autouse=True)
def _restore_torch_state(monkeypatch):
    """Each test may flip PyTorch's global switches: put them back."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
     torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) = saved[2:]


def _probe(n: int = 4096) -> torch.Tensor:
    """Values on both sides of 0 and of +-1, with exact 0 and +-1 among them."""
    x = torch.cat([torch.linspace(-2.5, 2.5, n - 5), torch.tensor([0.0, 1.0, -1.0, 1.001, -0.999])])
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))]


def _sign_and_grad(fn, x: torch.Tensor, upstream: torch.Tensor):
    leaf = x.detach().clone().requires_grad_(True)
    out = fn(leaf)
    (out * upstream).sum().backward()
    return out.detach(), leaf.grad


# -------------------------------------------------------------------- autocast keeps signs exact


@pytest.mark.parametrize("sign", [sign_clip_ste, sign_identity_ste, sign_polynomial])
def test_autocast_changes_neither_a_sign_nor_its_gradient_mask(sign):
    x, g = _probe(), torch.rand(4096) + 0.5
    ref_out, ref_grad = _sign_and_grad(sign, x, g)
    with BF16:
        out, grad = _sign_and_grad(sign, x, g)
    assert set(ref_out.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(out, ref_out) and out.dtype == torch.float32
    assert torch.equal(grad != 0, ref_grad != 0) and torch.equal(grad, ref_grad)


@pytest.mark.parametrize("sign", [sign_clip_ste, sign_identity_ste, sign_polynomial])
def test_a_sign_of_a_bf16_value_is_exact(sign):
    """Under autocast a conv's output, hence the next sign's input, is bf16: sign and gradient
    mask must be those of that value, computed without further rounding."""
    x = _probe().to(torch.bfloat16)
    g = torch.rand(len(x)) + 0.5
    ref_out, ref_grad = _sign_and_grad(sign, x.float(), g)
    out, grad = _sign_and_grad(sign, x, g.to(torch.bfloat16))
    assert torch.equal(out.float(), ref_out)
    assert torch.equal(grad != 0, ref_grad != 0)


def _binarized_layers(algorithm: str) -> list[BinarizedLayer]:
    torch.manual_seed(0)
    fp = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                       nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8),
                       nn.Conv2d(8, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 36, 4))
    model = binarize(fp, algorithm, example_input=torch.randn(2, 3, 6, 6))
    update_schedules(model, 1, 4)
    return [m for m in model.modules() if isinstance(m, BinarizedLayer)]


def _binarization(layer: BinarizedLayer, x: torch.Tensor, g: torch.Tensor):
    """The layer's binary input with its gradient, and its binary weights."""
    algo = layer.algorithm
    inputs = _sign_and_grad(lambda t: algo.binarize_input(layer, t), x, g)
    return (*inputs, algo.binarize_weight(layer, layer.weight).detach())


# FDA adds a learned, real-valued noise term to its signs while training (an MLP: autocast runs
# it in bf16); its signs are exact, and in eval mode the layer is a pure sign layer.
TRAINING_NOISE = {"fda"}


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("algorithm", available())
def test_autocast_keeps_every_algorithms_binarization_exact(algorithm, training):
    """Each algorithm's sign, input and weight binarization: same values, same gradients, with
    and without bf16 autocast (an autocast op such as a matmul in a sign path changes them)."""
    if training and algorithm in TRAINING_NOISE:
        pytest.skip("training-only real-valued noise term, computed at autocast precision")
    layers = _binarized_layers(algorithm)
    assert layers
    for layer in layers:
        layer.train(training)
        x = _probe(8 * 36).reshape(1, 8, 6, 6) * 1.2
        g = torch.rand_like(x) + 0.5
        sign = layer.algorithm.activation_sign
        ref, ref_sign = _binarization(layer, x, g), _sign_and_grad(sign, x, g)
        with BF16:
            got, got_sign = _binarization(layer, x, g), _sign_and_grad(sign, x, g)
        assert set(ref[0].unique().tolist()) <= {-1.0, 1.0}
        assert set(ref_sign[0].unique().tolist()) == {-1.0, 1.0}
        for want, have in zip((*ref, *ref_sign), (*got, *got_sign), strict=True):
            assert have.dtype == torch.float32 and torch.equal(have, want)


def test_bf16_training_learns_and_keeps_fp32_weights():
    """A small binarized CNN (bf16 convolutions are slow on CPUs without bf16 instructions)."""
    from bibench.data import load_dataset

    digits = load_dataset("digits_embedded", max_train=128, max_test=32)
    channels = digits.input_shape[0]
    torch.manual_seed(0)
    fp = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                       nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                       nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, digits.num_classes))
    model = binarize(fp, "bnn", example_input=digits.x_train[:2])
    assert any(isinstance(m, BinarizedLayer) for m in model.modules())
    records = train(model, digits.x_train, digits.y_train,
                    TrainSettings(epochs=3, batch_size=32, lr=1e-2, precision="bf16"), seed=0,
                    device=CPU)
    assert [r["status"] for r in records] == ["ok"] * 3
    assert records[-1]["loss"] < records[0]["loss"]
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_an_unknown_precision_is_named_before_training():
    with pytest.raises(ValueError, match="precision 'fp16'"):
        TrainSettings.from_config({"epochs": 1, "precision": "fp16"})


# -------------------------------------------------------------------------- determinism switch


def test_the_switch_sets_cublas_cudnn_tf32_and_deterministic_mode():
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True
    apply_determinism("warn")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    apply_determinism("strict")
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    apply_determinism("none")
    assert not torch.are_deterministic_algorithms_enabled()


def test_the_switch_does_not_import_the_compiler_and_keeps_its_flag_in_step():
    """torch.use_deterministic_algorithms imports torch._inductor (and torch._dynamo): 2.4 s
    in every job, for a compiler bibench does not use."""
    code = ("import sys; from bibench.training.device import apply_determinism; "
            "apply_determinism('warn'); assert 'torch._dynamo' not in sys.modules; "
            "import torch._inductor.config as c; apply_determinism('strict'); "
            "assert c.deterministic is True; apply_determinism('none'); "
            "assert c.deterministic is False")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_nondeterministic_cublas_setting_is_refused(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    set_cublas_workspace()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")
    with pytest.raises(ValueError, match="':0:0' makes cuBLAS nondeterministic"):
        apply_determinism("warn")
    with pytest.raises(ValueError, match="unknown determinism mode 'off'"):
        apply_determinism("off")


def _unpool(x: torch.Tensor) -> torch.Tensor:
    """max_unpool2d: a kernel PyTorch flags as nondeterministic on the CPU too."""
    pooled, idx = F.max_pool2d(x, 2, return_indices=True)
    return F.max_unpool2d(pooled, idx, 2)


class _Unpooling(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(_unpool(self.conv(x)).flatten(1))


def test_warn_mode_records_which_kernels_were_not_deterministic():
    apply_determinism("warn")
    with nondeterministic_ops() as ops:
        _unpool(torch.randn(1, 1, 4, 4))
    assert determinism_note(ops) == "no: max_unpooling2d_forward_out"
    with nondeterministic_ops() as ops:
        torch.randn(3, 3) @ torch.randn(3, 3)
    assert determinism_note(ops) == "yes"
    apply_determinism("strict")
    with pytest.raises(RuntimeError, match="max_unpooling2d_forward_out does not have"):
        _unpool(torch.randn(1, 1, 4, 4))
    apply_determinism("none")
    assert determinism_note(set()) == "not checked"


def test_training_rows_say_whether_every_kernel_was_deterministic():
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 3, (32,))
    settings = TrainSettings(epochs=2, batch_size=16)
    apply_determinism("warn")
    records = train(_Unpooling(), x, y, settings, seed=0, device=CPU)
    assert [r["deterministic"] for r in records] == ["no: max_unpooling2d_forward_out"] * 2
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    assert train(plain, x, y, settings, seed=0, device=CPU)[-1]["deterministic"] == "yes"


def _proc_cpu_model() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads Linux /proc/cpuinfo")
def test_the_training_job_records_device_model_precision_and_determinism(tmp_path):
    from bibench.io import read_table
    from bibench.jobs import pretrain

    dataset = {"name": "digits_embedded", "max_train": 64, "max_test": 32}
    pretrain(task="digits", arch="resnet20", seed=0, dataset=dataset,
             settings={"epochs": 1, "batch_size": 32, "precision": "bf16"}, device="cpu",
             determinism="warn", threads=1, model=str(tmp_path / "m.pt"),
             table=str(tmp_path / "train.parquet"), code="c")
    row = read_table(tmp_path / "train.parquet", "train").iloc[-1]
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert (row["device"], row["device_model"]) == ("cpu", _proc_cpu_model())
    assert row["precision"] == "bf16-autocast" and row["deterministic"] == "yes"
    assert row["status"] == "ok"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_row_names_the_gpu():
    from bibench.provenance import device_model

    assert device_model("cuda") == torch.cuda.get_device_properties(0).name
