"""The QONNX and OpenVINO binary-engine forms of binarized models, for every algorithm.

Parity is judged on a small CNN trained for a few dozen steps on an easy synthetic task (which
quadrant of the image is bright): untrained sign networks are chaotic, trained ones have
margins, so the engines must agree on the argmax and on the logits to float rounding.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from export_reference import count_bipolar_quant, openvino_predict, qonnx_predict
from torch import nn

import bibench.export.openvino as eo
from bibench.algorithms import available, get_algorithm
from bibench.binarize import binarize, update_schedules
from bibench.export.onnx import export_onnx
from bibench.export.openvino import (
    IR_FILE,
    IR_WEIGHTS_FILE,
    LOWERING_FILE,
    MODEL_FILE,
    NOT_DEPLOYABLE_FILE,
    BinaryFallbackError,
    computed_packed_bytes,
    export_openvino_binary,
)
from bibench.export.qonnx import QONNX_DOMAIN, export_qonnx, qonnx_onnxruntime_predict
from bibench.latency.timing import count_binary_convolutions, openvino_compile, time_openvino
from bibench.models import build_model

# Paper Table 4: XNOR (activation re-scaling) and XNOR++ (spatial scale) are not deployable.
PAPER_NOT_DEPLOYABLE = {"xnor", "xnorpp"}


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU()
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.bn(self.conv(x))
        return self.act(y + x if self.residual else y)


class TinyNet(nn.Module):
    """Stem (FP), three 3x3 blocks (one strided, two residual), a 1x1 conv, FC (FP): four
    binarizable convs with 16-32 input channels, zero padding, stride 2 and a residual Add."""

    def __init__(self, classes: int = 4, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.b1 = Block(width, width, 1)
        self.b2 = Block(width, 2 * width, 2)
        self.b3 = Block(2 * width, 2 * width, 1)
        self.pw = nn.Sequential(nn.Conv2d(2 * width, 2 * width, 1, bias=False),
                                nn.BatchNorm2d(2 * width), nn.ReLU())
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.pw(self.b3(self.b2(self.b1(self.stem(x)))))
        return self.fc(x.mean((2, 3)))


N_BINARIZED = 4


def quadrant_data(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(0, 4, (n,), generator=gen)
    x = 0.3 * torch.randn(n, 3, 8, 8, generator=gen)
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 1.5
    return x, y


@pytest.fixture(scope="module")
def trained(one_thread) -> tuple[dict[str, nn.Module], torch.Tensor]:
    """Every algorithm's TinyNet after 60 Adam steps (eval mode), and 64 test images."""
    gen = torch.Generator().manual_seed(0)
    x_train, y_train = quadrant_data(1024, gen)
    x_test, _ = quadrant_data(64, gen)
    torch.manual_seed(0)
    fp = TinyNet()
    models = {}
    for algo in available():
        model = binarize(fp, algo, example_input=x_test[:2])
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        steps = 60
        for step in range(steps):
            update_schedules(model, step, steps)
            idx = torch.randint(0, len(x_train), (64,), generator=gen)
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        models[algo] = model.eval()
    return models, x_test


@pytest.fixture(scope="module")
def forms(trained, tmp_path_factory) -> dict[str, tuple[eo.BinaryForm, Path]]:
    models, x = trained
    root = tmp_path_factory.mktemp("openvino")
    return {algo: (export_openvino_binary(m, x[:2], root / algo, algo, batch=len(x)),
                   root / algo)
            for algo, m in models.items()}


def torch_logits(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).numpy()


def assert_agrees(got: np.ndarray, ref: np.ndarray) -> None:
    """Same argmax on (nearly) every sample, logits equal to float rounding on most."""
    agreement = float((got.argmax(1) == ref.argmax(1)).mean())
    assert agreement >= 0.95, agreement
    per_sample = np.abs(got - ref).max(axis=1)
    assert np.median(per_sample) < 1e-3 * max(1.0, float(np.abs(ref).max())), per_sample


def test_models_learned_the_task(trained):
    models, x = trained
    gen = torch.Generator().manual_seed(0)
    quadrant_data(1024, gen)
    _, y = quadrant_data(64, gen)
    for algo, model in models.items():
        acc = float((torch_logits(model, x).argmax(1) == y.numpy()).mean())
        assert acc >= 0.9, (algo, acc)  # margins, so parity below is meaningful


@pytest.mark.parametrize("algo", available())
def test_qonnx_form_matches_pytorch(trained, tmp_path, algo):
    models, x = trained
    path = tmp_path / "model.qonnx.onnx"
    export_qonnx(models[algo], x[:2], path)
    graph = onnx.load(str(path)).graph
    quant = [n for n in graph.node if n.op_type == "BipolarQuant"]
    assert {n.domain for n in quant} == {QONNX_DOMAIN}
    assert count_bipolar_quant(path) == 2 * N_BINARIZED  # one for inputs, one for weights
    # every weight BipolarQuant reads a +-1 initializer that feeds a standard Conv
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    weight_quant = [n for n in quant if n.input[0] in inits]
    assert len(weight_quant) == N_BINARIZED
    for n in weight_quant:
        assert set(np.unique(inits[n.input[0]])) <= {-1.0, 1.0}
        consumers = [c.op_type for c in graph.node if n.output[0] in c.input]
        assert consumers == ["Conv"]
    reference = qonnx_predict(path, x.numpy())
    assert_agrees(reference, torch_logits(models[algo], x))
    # the export check's runner gives qonnx's answers (BipolarQuant as an ONNX function)
    np.testing.assert_allclose(qonnx_onnxruntime_predict(path, x.numpy()), reference,
                               rtol=1e-5, atol=1e-5)


def test_the_qonnx_runner_matches_qonnx_on_bi_attention(tmp_path, one_thread):
    """BERT's bi-attention puts BipolarQuant on both operands of a MatMul; the evaluate job's
    onnxruntime runner and qonnx's executor agree on a binarized TinyBERT's QONNX form."""
    from bibench.models import get_architecture

    torch.manual_seed(0)
    x = torch.randint(1, 100, (4, 12))
    x[:, 9:] = 0  # padding
    fp = get_architecture("bert_tiny4").build((12,), 2, num_hidden_layers=1, hidden_size=32,
                                              num_attention_heads=2, intermediate_size=64,
                                              vocab_size=100)
    model = binarize(fp, "bnn", example_input=x).eval()
    path = tmp_path / "bert.qonnx.onnx"
    export_qonnx(model, x[:1], path)
    graph = onnx.load(str(path)).graph
    quant_inputs = {i for n in graph.node if n.op_type == "BipolarQuant" for i in n.output}
    assert any(n.op_type == "MatMul" and set(n.input) <= quant_inputs for n in graph.node)
    reference = qonnx_predict(path, x.numpy())
    np.testing.assert_allclose(reference, torch_logits(model, x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(qonnx_onnxruntime_predict(path, x.numpy()), reference,
                               rtol=1e-5, atol=1e-5)


def test_qonnx_predict_leaves_the_environment_as_it_found_it(trained, tmp_path, monkeypatch):
    models, x = trained
    path = tmp_path / "model.qonnx.onnx"
    export_qonnx(models["bnn"], x[:2], path)
    monkeypatch.delenv("SANITIZE_QUANT_TENSORS", raising=False)
    qonnx_predict(path, x[:2].numpy())
    assert "SANITIZE_QUANT_TENSORS" not in os.environ
    monkeypatch.setenv("SANITIZE_QUANT_TENSORS", "1")
    qonnx_predict(path, x[:2].numpy())
    assert os.environ["SANITIZE_QUANT_TENSORS"] == "1"


def test_onnx_newer_than_onnxruntime_is_named_as_the_cause(trained, tmp_path, monkeypatch):
    # Seen on a GPU machine whose onnx wrote IR 14 and onnxruntime read 13 (docs/gpu.md).
    import onnx

    models, x = trained
    path = tmp_path / "model.qonnx.onnx"
    export_qonnx(models["bnn"], x[:2], path)
    monkeypatch.setattr(onnx, "IR_VERSION", 99)  # qonnx writes a model per node with it
    written = onnx.load(str(path))
    written.ir_version = 99  # the exporter writes the file with it
    onnx.save(written, str(path))
    for run in (qonnx_predict, qonnx_onnxruntime_predict):
        with pytest.raises(RuntimeError, match=r"writes ONNX IR version 99, which "
                           r"onnxruntime .* cannot load .*matching releases"):
            run(path, x[:2].numpy())


def test_deployability_decided_by_trying_matches_paper(forms):
    for algo, (form, out_dir) in forms.items():
        facts = get_algorithm(algo).deployment
        assert form.deployable == (algo not in PAPER_NOT_DEPLOYABLE), (algo, form.reason)
        assert form.deployable == facts.deployable, algo  # the declared facts agree
        assert form.n_binarized_layers == N_BINARIZED
        if form.deployable:
            assert form.reason == ""
            assert not (out_dir / NOT_DEPLOYABLE_FILE).exists()
            assert (out_dir / MODEL_FILE).stat().st_size == form.onnx_bytes
        else:
            assert form.reason and form.n_binary_conv == 0 and form.onnx_bytes == 0
            assert (out_dir / NOT_DEPLOYABLE_FILE).read_text().strip() == form.reason
            assert not (out_dir / MODEL_FILE).exists()
    assert "run time" in forms["xnor"][0].reason
    assert "output positions" in forms["xnorpp"][0].reason


def test_every_binarized_conv_runs_as_binary_convolution(forms):
    for algo, (form, out_dir) in forms.items():
        if not form.deployable:
            continue
        assert form.n_binary_conv == N_BINARIZED, algo
        for name in (MODEL_FILE, IR_FILE):  # counted again here, from the runtime model
            compiled = openvino_compile(out_dir / name, threads=1)
            assert count_binary_convolutions(compiled) == N_BINARIZED, (algo, name)
        record = json.loads((out_dir / LOWERING_FILE).read_text())
        assert all(layer["binary"] for layer in record["layers"])
    shifted = json.loads((forms["reactnet"][1] / LOWERING_FILE).read_text())
    assert any(layer["threshold_shift"] for layer in shifted["layers"])  # learned thresholds


def test_openvino_forms_match_pytorch(trained, forms):
    models, x = trained
    for algo, (form, out_dir) in forms.items():
        if not form.deployable:
            continue
        ref = torch_logits(models[algo], x)
        for name in (MODEL_FILE, IR_FILE):
            assert_agrees(openvino_predict(out_dir / name, x.numpy()), ref)
        # the IR as compiled by the export's check, which the evaluate job's parity runs on
        assert_agrees(np.asarray(form.compiled(x.numpy())[0]), ref)


def test_packed_storage_is_far_below_fp32(tmp_path, one_thread):
    torch.manual_seed(0)
    shape = (3, 16, 16)
    fp = build_model("resnet20", shape, 10).eval()
    x = torch.rand(2, *shape)
    model = binarize(fp, "bnn", example_input=x, keep_fp=("*.shortcut.*",)).eval()
    form = export_openvino_binary(model, x, tmp_path / "bnn", "bnn")
    export_onnx(fp, x, tmp_path / "fp32.onnx")
    fp32_bytes = (tmp_path / "fp32.onnx").stat().st_size
    assert form.packed_bytes == (tmp_path / "bnn" / IR_WEIGHTS_FILE).stat().st_size
    assert form.packed_bytes * 15 < fp32_bytes, (form.packed_bytes, fp32_bytes)
    # the IR stores each binary conv's weights as u1, nothing else holds them in float
    layers = ET.parse(tmp_path / "bnn" / IR_FILE).getroot().iter("layer")
    binconv = [la for la in layers if la.get("type") == "BinaryConvolution"]
    assert len(binconv) == form.n_binary_conv == 18
    n_weights = sum(m.weight.numel() for m in model.modules()
                    if type(m).__name__ == "BinaryConv2d")
    assert form.packed_bytes < 4 * n_weights / 8, "binary weights are not stored packed"
    assert form.packed_bytes <= 1.5 * computed_packed_bytes(model)


def test_computed_packed_bytes_counts_bits_and_floats():
    model = binarize(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 16, 3), nn.BatchNorm2d(16),
                                   nn.Conv2d(16, 4, 1)), "bireal")
    # first/last convs float (weights + bias), middle: 8*16*9 bits + 16 alpha + 16 bias floats,
    # BatchNorm: weight, bias, running mean and var
    want = 4 * (3 * 8 * 9 + 8) + math.ceil(16 * 8 * 9 / 8) + 4 * (16 + 16) + 4 * 4 * 16
    want += 4 * (16 * 4 + 4)
    assert computed_packed_bytes(model) == want


def test_sign_of_zero_is_plus_one_in_every_form(tmp_path, one_thread):
    """Activations that are exactly 0 must binarize to +1 (bibench's sign), not -1."""
    stem = nn.Conv2d(8, 16, 1, bias=False)
    with torch.no_grad():
        stem.weight.zero_()
        stem.weight[:8, :, 0, 0] = torch.eye(8)  # channels 8..15 are exactly 0
    net = nn.Sequential(stem, nn.Conv2d(16, 16, 3, padding=1, bias=False),
                        nn.Conv2d(16, 4, 1, bias=False))
    x = torch.randn(4, 8, 6, 6)
    model = binarize(net, "bnn", example_input=x).eval()
    ref = torch_logits(model, x)
    form = export_openvino_binary(model, x, tmp_path / "ov", "bnn")
    assert form.n_binary_conv == 1
    export_qonnx(model, x, tmp_path / "q.onnx")
    for got in (openvino_predict(tmp_path / "ov" / IR_FILE, x.numpy()),
                openvino_predict(tmp_path / "ov" / MODEL_FILE, x.numpy()),
                qonnx_predict(tmp_path / "q.onnx", x.numpy()),
                qonnx_onnxruntime_predict(tmp_path / "q.onnx", x.numpy())):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
    # the same comparison with sign(0) = -1 differs: the test above can fail
    flipped = model[2](F.conv2d(torch.where(model[0](x) > 0, 1.0, -1.0),
                                model[1].binary_weight(), padding=1))
    assert np.abs(flipped.detach().numpy() - ref).max() > 1.0


@pytest.mark.parametrize("conv", [
    dict(padding="same", dilation=2),
    dict(padding=(1, 2), padding_mode="circular"),
    dict(padding=2, stride=2, dilation=2),
    dict(padding=0),
])
def test_padding_modes_strides_and_dilations(tmp_path, one_thread, conv):
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, **conv),
                        nn.Conv2d(16, 4, 1))
    x = torch.randn(2, 3, 9, 9)
    model = binarize(net, "bnn", example_input=x).eval()
    form = export_openvino_binary(model, x, tmp_path / "ov", "bnn")
    assert form.n_binary_conv == 1
    ref = torch_logits(model, x)
    for name in (MODEL_FILE, IR_FILE):
        got = openvino_predict(tmp_path / "ov" / name, x.numpy())
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


class Siblings(nn.Module):
    """Three binarized convs reading one tensor (like BERT's query, key and value)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.q, self.k, self.v = (nn.Conv2d(16, 16, 3, padding=1) for _ in range(3))
        self.head = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        h = self.stem(x)
        return self.head(self.q(h) + self.k(h) - self.v(h)).mean((2, 3))


def test_layers_sharing_an_input_all_run_binary(tmp_path, one_thread):
    x = torch.randn(2, 3, 8, 8)
    model = binarize(Siblings(), "bnn", example_input=x).eval()
    form = export_openvino_binary(model, x, tmp_path / "ok", "bnn")
    assert form.n_binary_conv == 3
    np.testing.assert_allclose(openvino_predict(tmp_path / "ok" / IR_FILE, x.numpy()),
                               torch_logits(model, x), rtol=1e-5, atol=1e-4)


def test_silent_float_fallback_is_a_failure(tmp_path, monkeypatch, one_thread):
    """Identical FakeQuantize nodes on one input are merged by OpenVINO, which then runs the
    convs in float: the export must fail, naming the layers, instead of reporting a result."""
    x = torch.randn(2, 3, 8, 8)
    model = binarize(Siblings(), "bnn", example_input=x).eval()
    lowering = eo.OpenVINOBinaryConv
    monkeypatch.setattr(eo, "OpenVINOBinaryConv", lambda plan, variant=0: lowering(plan, 0))
    with pytest.raises(BinaryFallbackError, match=r"0 BinaryConvolution .* 3 binary.* q, k, v"):
        export_openvino_binary(model, x, tmp_path / "bad", "bnn")


class PointLike(nn.Module):
    """Conv1d (kernel 1 and 3), a depthwise Conv1d and Linear layers, PointNet/FSMN style."""

    def __init__(self) -> None:
        super().__init__()
        self.c0 = nn.Conv1d(3, 32, 1)
        self.c1 = nn.Conv1d(32, 32, 1)
        self.dw = nn.Conv1d(32, 32, 5, padding=2, groups=32, bias=False)
        self.c2 = nn.Conv1d(32, 64, 3, padding=1)
        self.f1 = nn.Linear(64, 32)
        self.f2 = nn.Linear(32, 5)

    def forward(self, x):
        x = torch.tanh(self.c1(torch.relu(self.c0(x))))
        x = self.c2(x + self.dw(x)).amax(-1)
        return self.f2(self.f1(x))


def test_conv1d_and_linear_lower_to_binary_convolutions(tmp_path, one_thread):
    x = torch.randn(4, 3, 16)
    model = binarize(PointLike(), "reactnet", example_input=x).eval()
    form = export_openvino_binary(model, x, tmp_path / "ov", "reactnet")
    assert form.deployable and form.n_binarized_layers == 4
    layers = json.loads((tmp_path / "ov" / LOWERING_FILE).read_text())["layers"]
    floats = {la["layer"]: la["float_reason"] for la in layers if not la["binary"]}
    assert list(floats) == ["dw"] and "groups" in floats["dw"]  # grouped: float, with reason
    assert form.n_binary_conv == 3  # c1, c2 (Conv1d) and f1 (Linear) run binary
    ref = torch_logits(model, x)
    for name in (MODEL_FILE, IR_FILE):
        np.testing.assert_allclose(openvino_predict(tmp_path / "ov" / name, x.numpy()), ref,
                                   rtol=1e-4, atol=1e-4)


def test_time_openvino_interleaves_and_summarises(forms):
    form, out_dir = forms["bnn"]
    x = np.zeros((1, 3, 8, 8), dtype=np.float32)
    timings = time_openvino([out_dir / MODEL_FILE, out_dir / IR_FILE], x, threads=1, warmup=1,
                            repeats=3)
    assert [t.repeats for t in timings] == [3, 3]
    assert all(0 < t.p10_ms <= t.median_ms <= t.p90_ms for t in timings)


def test_openvino_telemetry_is_off(forms):
    """`import openvino` starts a telemetry session that sends an "import" event unless the
    user opted out; bibench.export.openvino blocks the telemetry package first (or, if
    OpenVINO was imported before, withdraws the session's consent)."""
    assert forms  # OpenVINO has compiled and run models in this module by now
    telemetry = sys.modules.get("openvino_telemetry")
    if telemetry is not None:  # OpenVINO was imported before bibench.export.openvino
        session = telemetry.Telemetry._SingletonMetaClass__single_instance
        assert session is None or session.consent is False
    code = ("import sys, bibench.latency.timing as e; e.openvino_core(); "
            "assert sys.modules['openvino_telemetry'] is None; "
            "from openvino.tools.ovc import telemetry; print(type(telemetry).__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "openvino.tools.ovc.telemetry_stub"


def _negate_first_binary_weights(path: Path) -> None:
    """Corrupt a written form: the weights of its first binarized layer change sign."""
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    quant = next(n for n in model.graph.node if n.op_type in ("BipolarQuant", "Conv")
                 and any(name in inits and len(inits[name].dims) == 4 for name in n.input))
    weight = next(inits[name] for name in quant.input if name in inits)
    weight.CopyFrom(onnx.numpy_helper.from_array(-onnx.numpy_helper.to_array(weight),
                                                 weight.name))
    onnx.save(model, str(path))


@pytest.mark.parametrize("form", ["onnx", "qonnx"])
def test_a_corrupted_form_fails_with_the_default_sample_counts(trained, tmp_path, monkeypatch,
                                                               form):
    """A form that disagrees with PyTorch is caught with the default config's parity sample
    count, by the checks the evaluate job runs."""
    import bibench.export.onnx as export_onnx_module
    import bibench.export.qonnx as export_qonnx_module
    from bibench.config import load_config
    from bibench.export.forms import EXPORT_FORMS, FormInput

    settings = load_config(Path(__file__).parents[1] / "config" / "config.yaml")["export"]
    models, x = trained
    model = models["bnn"]
    x = x[: settings["max_samples"]]
    ref = torch_logits(model, x)
    module, name = ((export_onnx_module, "export_onnx") if form == "onnx"
                    else (export_qonnx_module, "export_qonnx"))
    real = getattr(module, name)

    def corrupted(net, example, path, **kwargs):
        real(net, example, path, **kwargs)
        _negate_first_binary_weights(Path(path))

    form_object = next(f for f in EXPORT_FORMS if f.name == form)

    def write(path: str) -> dict:
        # a binarized model's QONNX form is judged on the argmax alone (qonnx.write_form)
        return form_object.write(FormInput(
            model=model, graph=model, x=x, reference=ref, detections=None, detector=False,
            algorithm="bnn", settings=settings, base={"form": form}, enforce=True, threads=1,
            path=path))

    good = write(str(tmp_path / "good.onnx"))
    assert good["status"] == "ok", good
    monkeypatch.setattr(module, name, corrupted)
    bad = write(str(tmp_path / "bad.onnx"))
    assert bad["status"].startswith(f"failed: {form} disagrees with PyTorch"), bad
