"""Unit tests of the functions each rule calls: data, corruptions, training, export, latency,
complexity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from bibench.data import load_dataset, stratified_split
from bibench.evaluation.corruptions import GAUSSIAN_NOISE_CIFAR, corrupt, gaussian_noise
from bibench.evaluation.predict import predict
from bibench.evaluation.task_metrics import accuracy
from bibench.export.onnx import check_parity, export_onnx
from bibench.latency.timing import cpu_model, time_onnxruntime
from bibench.metrics.complexity import (
    compression_ratio,
    layer_costs,
    speedup_ratio,
    totals,
)
from bibench.models import build_model, get_architecture
from bibench.training.checkpoint import build_cell_model, load_checkpoint, save_checkpoint
from bibench.training.loop import TrainSettings, resolve_device, train

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits_embedded", max_train=384, max_test=200)


@pytest.fixture(scope="module")
def trained_fp32(digits):
    torch.manual_seed(0)
    model = build_model("resnet20", digits.input_shape, digits.num_classes)
    records = train(model, digits.x_train, digits.y_train,
                    TrainSettings(epochs=4, batch_size=32, optimizer="adam", lr=2e-3),
                    seed=0, device=torch.device("cpu"))
    return model, records


# ------------------------------------------------------------------------------------ data


def test_embedded_datasets_are_real_and_labelled():
    mnist = load_dataset("mnist_embedded")
    assert mnist.input_shape == (1, 28, 28)
    assert len(mnist.x_train) == 4000 and len(mnist.x_test) == 1000
    assert mnist.embedded and mnist.stands_in_for == "CIFAR-10"
    assert 0.0 <= float(mnist.x_train.min()) and float(mnist.x_train.max()) <= 1.0
    assert torch.bincount(mnist.y_test).tolist() == [100] * 10


def test_split_is_stratified_disjoint_and_fixed():
    labels = torch.arange(10).repeat(20)
    train_a, test_a = stratified_split(labels, 0.25, seed=0)
    train_b, test_b = stratified_split(labels, 0.25, seed=0)
    assert torch.equal(train_a, train_b) and torch.equal(test_a, test_b)
    assert set(train_a.tolist()).isdisjoint(test_a.tolist())
    assert torch.bincount(labels[test_a]).tolist() == [5] * 10


def test_unknown_dataset_is_named():
    with pytest.raises(KeyError, match="unknown dataset 'cifar11'"):
        load_dataset("cifar11")


# ------------------------------------------------------------------------------ corruptions


def test_gaussian_noise_uses_cifar_c_constants_and_clips():
    x = torch.full((200, 1, 8, 8), 0.5)
    for severity, c in enumerate(GAUSSIAN_NOISE_CIFAR, start=1):
        noisy = gaussian_noise(x, severity)
        assert abs(float((noisy - x).std()) - c) < 0.1 * c
    extreme = gaussian_noise(torch.ones(4, 1, 8, 8), 5)
    assert float(extreme.max()) <= 1.0 and float(extreme.min()) >= 0.0
    assert torch.equal(gaussian_noise(x, 3), gaussian_noise(x, 3))  # same test set every cell


def test_bad_corruption_requests_are_named():
    with pytest.raises(ValueError, match="severity"):
        gaussian_noise(torch.zeros(1, 1, 2, 2), 6)
    with pytest.raises(KeyError, match="unknown corruption 'fog2'"):
        corrupt(torch.zeros(1, 1, 2, 2), "fog2", 1)


# -------------------------------------------------------------------------------- training


def test_training_reduces_loss_and_records_each_epoch(trained_fp32, digits):
    model, records = trained_fp32
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert records[-1]["loss"] < records[0]["loss"]
    assert all(r["status"] == "ok" and r["epoch_seconds"] > 0 for r in records)
    assert accuracy(predict(model, digits.x_test), digits.y_test) > 0.5


def test_divergence_is_reported_not_hidden(digits):
    model = build_model("resnet20", digits.input_shape, digits.num_classes)
    with torch.no_grad():
        model.fc.weight.fill_(float("nan"))
    records = train(model, digits.x_train[:64], digits.y_train[:64],
                    TrainSettings(epochs=3, batch_size=32), seed=0, device=torch.device("cpu"))
    assert len(records) == 1 and records[0]["status"] == "diverged"


def test_finetuned_cell_starts_from_the_pretrained_weights(trained_fp32, digits):
    fp_model, _ = trained_fp32
    cell = build_cell_model("resnet20", "bnn", digits.input_shape, digits.num_classes, fp_model)
    assert torch.equal(cell.layers[0].conv1.weight, fp_model.layers[0].conv1.weight)
    assert torch.equal(cell.fc.weight, fp_model.fc.weight)


def test_checkpoint_round_trip(tmp_path, trained_fp32, digits):
    fp_model, _ = trained_fp32
    cell = build_cell_model("resnet20", "bnn", digits.input_shape, digits.num_classes, fp_model)
    meta = {"arch": "resnet20", "algorithm": "bnn", "input_shape": list(digits.input_shape),
            "num_classes": digits.num_classes}
    save_checkpoint(cell, tmp_path / "m.pt", meta)
    loaded, got = load_checkpoint(tmp_path / "m.pt")
    assert got == meta
    x = digits.x_test[:16]
    assert torch.equal(predict(loaded, x), predict(cell, x))


def test_settings_and_device_are_checked():
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainSettings.from_config({"epochs": 1, "lr_decay": 2})
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            resolve_device("cuda")


# ---------------------------------------------------------------------------------- export


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("algorithm", ["fp32", "bnn"])
def test_onnx_export_agrees_with_pytorch(tmp_path, trained_fp32, digits, algorithm, exporter):
    fp_model, _ = trained_fp32
    model = build_cell_model("resnet20", algorithm, digits.input_shape, digits.num_classes,
                             fp_model).eval()
    path = tmp_path / "m.onnx"
    export_onnx(model, digits.x_test[:1], path, exporter=exporter)
    for optimize in (True, False):
        parity = check_parity(model, path, digits.x_test, optimize=optimize)
        assert parity.n_samples == len(digits.x_test)
        assert parity.argmax_agreement >= 0.98
        assert parity.max_abs_logit_diff < 1.0


# --------------------------------------------------------------------------------- latency


def test_latency_protocol(tmp_path, trained_fp32, digits):
    path = tmp_path / "m.onnx"
    export_onnx(trained_fp32[0], digits.x_test[:1], path)
    timings = time_onnxruntime([path, path], digits.x_test[:1].numpy(), threads=1, warmup=2,
                               repeats=7)
    assert len(timings) == 2
    for t in timings:
        assert t.repeats == 7 and 0 < t.p10_ms <= t.median_ms <= t.p90_ms
    assert cpu_model()
    with pytest.raises(ValueError):
        time_onnxruntime([path], digits.x_test[:1].numpy(), threads=1, warmup=0, repeats=0)


# ------------------------------------------------------------------------------ complexity


def test_complexity_counts_binary_layers_from_the_model():
    shape = (3, 32, 32)
    example = torch.zeros(1, *shape)
    fp = totals(layer_costs(build_model("resnet20", shape, 10), example))
    bnn = totals(layer_costs(build_cell_model("resnet20", "bnn", shape, 10), example))
    # ResNet-20 (option-B shortcuts): 0.27M parameters, 40.8M MACs
    assert fp.params == 272474 and fp.binary_params == 0
    assert fp.flops == 2 * 40_813_184
    # same model size and product FLOPs, split between binary and full precision
    assert bnn.params == fp.params and bnn.flops == fp.flops
    # 18 binarized 3x3 convs: all but the stem, the two 1x1 shortcuts and the classifier
    convs = [m for n, m in build_model("resnet20", shape, 10).named_modules()
             if isinstance(m, nn.Conv2d) and n.startswith("layers") and "shortcut" not in n]
    assert bnn.binary_params == sum(m.weight.numel() for m in convs)
    r_c = compression_ratio(fp.params, bnn)
    assert r_c == pytest.approx(fp.params / (bnn.binary_params / 32 + bnn.fp_params))
    r_s = speedup_ratio(fp.flops, bnn)
    assert r_s == pytest.approx(fp.flops / (bnn.binary_flops / 64 + bnn.fp_flops))
    assert 10 < r_c < 32 and 10 < r_s < 64


def test_complexity_binary_flops_match_flop_counter():
    """The analytic count of a binarized layer equals torch's count of the same FP layer."""
    shape = (3, 16, 16)
    example = torch.zeros(1, *shape)
    fp_costs = {c.layer: c for c in layer_costs(build_model("resnet20", shape, 10), example)}
    for c in layer_costs(build_cell_model("resnet20", "bnn", shape, 10), example):
        if c.binary:
            assert c.binary_flops == fp_costs[c.layer].flops


def test_architecture_registry():
    arch = get_architecture("resnet20")
    assert arch.family == "cnn" and "*.shortcut.*" in arch.keep_fp
    with pytest.raises(KeyError, match="unknown architecture 'resnet21'"):
        get_architecture("resnet21")
    assert math.isclose(float(np.float32(1.0)), 1.0)


def test_embedded_data_is_cached_on_disk_and_rebuilt_when_damaged(tmp_path, monkeypatch):
    import bibench.data as data_module
    import bibench.data.embedded  # noqa: F401  (registers the embedded datasets)

    monkeypatch.setenv("BIBENCH_CACHE", str(tmp_path))
    calls = []
    info = data_module._DATASETS["digits_embedded"]
    monkeypatch.setitem(data_module._DATASETS, "digits_embedded", data_module.DatasetInfo(
        lambda: calls.append(1) or info.loader(), info.description))
    first = load_dataset("digits_embedded")
    second = load_dataset("digits_embedded")
    assert len(calls) == 1 and torch.equal(first.x_test, second.x_test)
    assert second.embedded and second.stands_in_for == first.stands_in_for
    (entry,) = (tmp_path / "datasets").iterdir()
    entry.write_bytes(b"damaged")
    assert torch.equal(load_dataset("digits_embedded").x_train, first.x_train)
    assert len(calls) == 2


def test_a_failing_training_run_becomes_a_failed_cell(digits):
    from bibench.jobs import _train_or_fail

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            raise RuntimeError("kernel exploded")

    records = _train_or_fail(Broken(), digits, {"epochs": 1}, 0, torch.device("cpu"))
    assert len(records) == 1 and records[0]["status"].startswith("failed: RuntimeError")
    assert math.isnan(records[0]["loss"])


def test_cells_that_did_not_train_evaluate_to_nan(tmp_path, trained_fp32, digits):
    from bibench.io import read_table
    from bibench.jobs import evaluate

    meta = {"arch": "resnet20", "algorithm": "fp32", "input_shape": list(digits.input_shape),
            "num_classes": digits.num_classes, "train_status": "diverged"}
    save_checkpoint(trained_fp32[0], tmp_path / "m.pt", meta)
    evaluate(task="digits", arch="resnet20", algorithm="fp32", seed=0,
             dataset={"name": "digits_embedded", "max_train": 64, "max_test": 32},
             corruptions={"corruptions": {"gaussian_noise": [1]}, "files": None}, threads=1,
             checkpoint=str(tmp_path / "m.pt"), table=str(tmp_path / "eval.parquet"), code="c")
    rows = read_table(tmp_path / "eval.parquet", "eval")
    assert len(rows) == 2 and rows["value"].isna().all()


def test_a_classifier_at_chance_level_is_not_held_to_parity():
    import numpy as np

    from bibench.jobs import _at_chance

    labels = np.array([0] * 6 + [1] * 4)
    always_zero = np.tile([1.0, 0.0], (10, 1))
    assert _at_chance(always_zero, labels)  # 60% = the majority class
    perfect = np.eye(2)[labels]
    assert not _at_chance(perfect, labels)


@pytest.mark.parametrize("damage", ["truncated", "not a checkpoint", "other weights"])
def test_a_damaged_checkpoint_names_the_file_and_the_command(tmp_path, trained_fp32, digits,
                                                            damage):
    from bibench.io import DamagedFileError
    from bibench.training.checkpoint import load_checkpoint

    path = tmp_path / "model.pt"
    meta = {"arch": "resnet20", "algorithm": "fp32", "input_shape": list(digits.input_shape),
            "num_classes": digits.num_classes}
    save_checkpoint(trained_fp32[0], path, meta)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "not a checkpoint":
        path.write_text("weights\n")
    else:
        save_checkpoint(trained_fp32[0], path, {**meta, "num_classes": digits.num_classes + 1})
    with pytest.raises(DamagedFileError) as info:
        load_checkpoint(path)
    expected = ("its weights do not fit" if damage == "other weights"
                else "not a readable checkpoint")
    assert str(info.value).startswith(f"damaged result {path}: {expected}")
    assert str(info.value).endswith(f"--forcerun {path}")
