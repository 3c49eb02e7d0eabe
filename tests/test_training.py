"""The training stage (bibench.training): the loop, settings and device checks, cell models that
start from the pretrained weights, checkpoints."""

from __future__ import annotations

import pytest
import torch

from bibench.evaluation.predict import predict
from bibench.evaluation.task_metrics import accuracy
from bibench.models import build_model
from bibench.training.checkpoint import build_cell_model, load_checkpoint, save_checkpoint
from bibench.training.device import resolve_device
from bibench.training.loop import TrainSettings, train


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


def test_frozen_parameters_keep_their_values_and_a_prefix_that_names_nothing_is_refused(digits):
    model = build_model("resnet20", digits.input_shape, digits.num_classes)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    settings = TrainSettings.from_config({"epochs": 1, "batch_size": 64, "frozen": ["fc.", "bn1"]})
    train(model, digits.x_train[:128], digits.y_train[:128], settings, seed=0,
          device=torch.device("cpu"))
    after = dict(model.named_parameters())
    frozen = [n for n in before if n.startswith(("fc.", "bn1"))]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)
    assert not torch.equal(before["layers.0.conv1.weight"], after["layers.0.conv1.weight"])
    with pytest.raises(ValueError, match=r"'frozen': \['embeddings.word_embeddings'\] name no"):
        train(model, digits.x_train[:64], digits.y_train[:64],
              TrainSettings(epochs=1, frozen=("embeddings.word_embeddings",)), seed=0,
              device=torch.device("cpu"))


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
