"""The ONNX export (bibench.export.onnx): both exporters give a file that agrees with PyTorch."""

from __future__ import annotations

import pytest
from export_reference import check_parity

from bibench.export.onnx import export_onnx
from bibench.training.checkpoint import build_cell_model


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
