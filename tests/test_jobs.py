"""The workflow jobs (bibench.jobs): failures become rows, not crashed jobs or numbers."""

from __future__ import annotations

import math

import torch
from torch import nn

from bibench.training.checkpoint import save_checkpoint


def test_a_failing_training_run_becomes_a_failed_cell(digits):
    from bibench.training.loop import train_or_fail

    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            raise RuntimeError("kernel exploded")

    records = train_or_fail(Broken(), digits, {"epochs": 1}, 0, torch.device("cpu"))
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
             corruptions={"corruptions": {"gaussian_noise": [1]}, "files": None},
             export_settings=None, threads=1, checkpoint=str(tmp_path / "m.pt"),
             eval_table=str(tmp_path / "eval.parquet"), code="c")
    rows = read_table(tmp_path / "eval.parquet", "eval")
    assert len(rows) == 2 and rows["value"].isna().all()


def test_a_cell_at_chance_level_is_not_held_to_parity():
    from bibench.export.forms import parity_enforced

    assert not parity_enforced(0.62, 0.60, "accuracy")  # the majority class + 2
    assert parity_enforced(0.97, 0.60, "accuracy")
    assert not parity_enforced(0.04, 0.002, "voc07_map")  # random boxes + 4
    assert parity_enforced(0.54, 0.002, "voc07_map")
    assert parity_enforced(0.10, float("nan"), "pearson_spearman")


def test_the_export_checks_parity_against_the_clean_evaluation(tmp_path, trained_fp32, digits,
                                                               monkeypatch):
    """The clean test set's logits are computed once: the evaluation's are the parity
    reference of every export form (one forward pass less per cell)."""
    import bibench.evaluation.predict as predict_module
    from bibench.config import load_config
    from bibench.io import read_table
    from bibench.jobs import evaluate

    calls: list[int] = []
    real = predict_module.predict

    def counted(model, x, **kwargs):
        calls.append(len(x))
        return real(model, x, **kwargs)

    monkeypatch.setattr(predict_module, "predict", counted)
    meta = {"arch": "resnet20", "algorithm": "fp32", "input_shape": list(digits.input_shape),
            "num_classes": digits.num_classes, "train_status": "ok"}
    save_checkpoint(trained_fp32[0], tmp_path / "m.pt", meta)
    settings = load_config("config/config.yaml")["export"]
    evaluate(task="digits", arch="resnet20", algorithm="fp32", seed=0,
             dataset={"name": "digits_embedded", "max_train": 64, "max_test": 64},
             corruptions={"corruptions": {}, "files": None}, export_settings=settings,
             threads=1, checkpoint=str(tmp_path / "m.pt"),
             eval_table=str(tmp_path / "eval.parquet"), code="c",
             export_table=str(tmp_path / "export.parquet"),
             complexity=str(tmp_path / "complexity.parquet"),
             forms={"onnx": str(tmp_path / "m.onnx"), "qonnx": str(tmp_path / "m.qonnx.onnx"),
                    "openvino": str(tmp_path / "openvino")})
    assert calls == [64]  # the clean evaluation only
    export = read_table(tmp_path / "export.parquet", "export").set_index("form")
    assert export.loc["onnx", "status"] == "ok" and export.loc["onnx", "n_samples"] == 64
    assert export.loc["qonnx", "status"] == "ok"


def _write(form: str, model, x, ref, path: str, settings: dict, algorithm: str = "fp32"
           ) -> dict:
    """One export form of `model` written and checked as the evaluate job does."""
    from bibench.export.forms import EXPORT_FORMS, FormInput

    export_form = next(f for f in EXPORT_FORMS if f.name == form)
    return export_form.write(FormInput(
        model=model, graph=model, x=x, reference=ref, detections=None, detector=False,
        algorithm=algorithm, settings=settings, base={}, enforce=True, threads=1, path=path))


def test_onnx_parity_checks_the_graph_as_written(tmp_path, trained_fp32, digits, monkeypatch):
    """onnxruntime's conv + BatchNorm fusion rounds differently and flips signs near 0 in
    binarized networks: the parity checks of the ONNX and QONNX forms run the files with graph
    rewrites off, the QONNX check on every parity sample."""
    import bibench.latency.timing as timing
    from bibench.config import load_config

    sessions: list[bool] = []
    real = timing.ort_session

    def recorded(path, **kwargs):
        sessions.append(kwargs.get("optimize", True))
        return real(path, **kwargs)

    monkeypatch.setattr(timing, "ort_session", recorded)
    settings = load_config("config/config.yaml")["export"]
    model, x = trained_fp32[0].eval(), digits.x_test[:8]
    with torch.no_grad():
        ref = model(x).numpy()
    row = _write("onnx", model, x, ref, str(tmp_path / "m.onnx"), settings)
    assert row["status"] == "ok" and sessions == [False]
    row = _write("qonnx", model, x, ref, str(tmp_path / "m.qonnx.onnx"), settings)
    assert row["status"] == "ok" and row["n_samples"] == len(x) and sessions == [False, False]


def test_a_binarized_qonnx_form_is_judged_on_its_answers(tmp_path, trained_fp32, digits,
                                                         monkeypatch):
    """Logits moved by sign flips at rounding distance from 0 (the QONNX graph applies scales
    in its own order) fail a float model's QONNX form, not a binarized model's, unless they
    change its answers."""
    import bibench.export.qonnx as qonnx_module
    from bibench.config import load_config

    settings = load_config("config/config.yaml")["export"]
    model, x = trained_fp32[0].eval(), digits.x_test[:16]
    with torch.no_grad():
        ref = model(x).numpy()
    moved = ref.copy()
    moved[:3] += 0.3 * (moved[:3] == moved[:3].max(1, keepdims=True))  # the winner grows
    monkeypatch.setattr(qonnx_module, "qonnx_onnxruntime_predict", lambda _path, _x: moved)
    path = str(tmp_path / "m.qonnx.onnx")
    assert _write("qonnx", model, x, ref, path, settings, "bnn")["status"] == "ok"
    assert _write("qonnx", model, x, ref, path, settings)["status"].startswith("failed")
    swapped = ref.copy()
    swapped[:3] = swapped[:3, ::-1]  # answers change on 3 of 16: below 0.9 agreement
    monkeypatch.setattr(qonnx_module, "qonnx_onnxruntime_predict", lambda _path, _x: swapped)
    row = _write("qonnx", model, x, ref, path, settings, "bnn")
    assert row["status"].startswith("failed: qonnx disagrees")


def test_a_full_disk_ends_the_job_with_its_message_not_a_traceback(tmp_path, capsys):
    """The job's log and the job's stderr say that the disk is full and which file, as a
    damaged file's message does; the job exits 1."""
    import errno
    from types import SimpleNamespace

    import pytest

    from bibench.io import DiskFullError
    from bibench.jobs import run_from_snakemake

    def job(table: str) -> None:
        raise DiskFullError(table, errno.ENOSPC, 0, OSError(errno.ENOSPC, "No space left"))

    table = str(tmp_path / "eval.parquet")
    smk = SimpleNamespace(params={}, input={}, output={"table": table}, threads=1, log=[])
    with pytest.raises(SystemExit) as info:
        run_from_snakemake(smk, job)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert f"bibench: no space left on device writing {table}" in err
    assert "Traceback" not in err
    log = tmp_path / "job.log"
    with pytest.raises(SystemExit):
        run_from_snakemake(SimpleNamespace(**{**vars(smk), "log": [str(log)]}), job)
    text = log.read_text()
    assert "no space left on device writing" in text and "Traceback" not in text


def test_a_checkpoint_of_another_cell_is_refused(tmp_path, trained_fp32, digits):
    """A checkpoint records its cell: measured under another algorithm's (or architecture's)
    name it would put one cell's numbers in another's rows."""
    import pytest

    from bibench.jobs import evaluate

    meta = {"arch": "resnet20", "algorithm": "fp32", "input_shape": list(digits.input_shape),
            "num_classes": digits.num_classes, "task": "digits", "seed": 0}
    save_checkpoint(trained_fp32[0], tmp_path / "m.pt", meta)
    job = {"task": "digits", "arch": "resnet20", "seed": 0,
           "dataset": {"name": "digits_embedded", "max_train": 64, "max_test": 32},
           "corruptions": {"corruptions": {}, "files": None}, "export_settings": None,
           "threads": 1, "checkpoint": str(tmp_path / "m.pt"),
           "eval_table": str(tmp_path / "eval.parquet"), "code": "c"}
    with pytest.raises(ValueError, match=r"not this cell's checkpoint: it records algorithm "
                                         r"'fp32' \(the cell's: 'bnn'\)"):
        evaluate(**job, algorithm="bnn")
    assert not (tmp_path / "eval.parquet").exists()
    # a binarized cell's checkpoint is its seed's; the FP32 one is every seed's (pretrain_seed)
    from bibench.training.checkpoint import build_cell_model

    bnn = build_cell_model("resnet20", "bnn", digits.input_shape, digits.num_classes)
    save_checkpoint(bnn, tmp_path / "bnn.pt", {**meta, "algorithm": "bnn"})
    with pytest.raises(ValueError, match=r"seed 0 \(the cell's: 1\)"):
        evaluate(**{**job, "seed": 1, "checkpoint": str(tmp_path / "bnn.pt")}, algorithm="bnn")
    assert not (tmp_path / "eval.parquet").exists()
    evaluate(**{**job, "seed": 1}, algorithm="fp32")
    assert (tmp_path / "eval.parquet").exists()
