"""Theoretical complexity of ResNet-18 (ImageNet stem, 1000 classes) against the paper's Table 3.

The paper's figures binarize every conv but the stem (its downsample shortcuts too), and keep
the classifier, BN and scaling factors in full precision: `keep_fp=()` gives that policy.
"""

from __future__ import annotations

import pytest

from bibench.cli import main
from bibench.metrics.complexity import model_summary

# Table 3: (compression r_c, speedup r_s)
TABLE3 = {
    "bnn": (13.27, 12.60), "xnor": (13.20, 12.26), "dorefa": (13.20, 12.37),
    "bireal": (13.20, 12.37), "xnorpp": (13.16, 12.26), "reactnet": (13.20, 12.26),
    "recu": (13.20, 12.37), "fda": (13.20, 12.37),
}
# Documented in docs/complexity.md: XNOR++'s spatial scale costs one multiply per output
# element in our count; the paper's 12.26 implies a larger per-element cost.
SPEEDUP_TOLERANCE = {"xnorpp": 0.02}


@pytest.mark.parametrize("algorithm", sorted(TABLE3))
def test_resnet18_ratios_match_table3(algorithm):
    summary = model_summary("resnet18_imagenet", algorithm, keep_fp=())
    r_c, r_s = TABLE3[algorithm]
    assert summary["compression_ratio"] == pytest.approx(r_c, rel=0.01)
    assert summary["speedup_ratio"] == pytest.approx(r_s, rel=SPEEDUP_TOLERANCE.get(algorithm,
                                                                                    0.01))


def test_summary_cli_prints_layers_and_totals(capsys):
    assert main(["summary", "resnet20", "--algorithm", "bnn"]) == 0
    out = capsys.readouterr().out
    assert "layers.0.conv1" in out and "r_c" in out and "OM_comp" in out
    assert main(["summary", "resnet20", "--algorithm", "bnn", "--json"]) == 0
    import json

    summary = json.loads(capsys.readouterr().out)
    binary = [r for r in summary["layers"] if r["weight_bits"] == 1]
    assert len(binary) == 18 and summary["totals"]["params"] == 272474
    assert main(["summary", "resnet21"]) == 2


@pytest.mark.parametrize("arch,shape", [("resnet20", (1, 28, 28)), ("pointnet_vanilla", (3, 64)),
                                        ("dfsmn", (29, 12))])
def test_full_precision_flops_match_torchs_flop_counter(arch, shape):
    """layer_costs counts conv/linear FLOPs from shapes; torch's own counter must agree."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bibench.metrics.complexity import layer_costs
    from bibench.training.checkpoint import build_cell_model

    model = build_cell_model(arch, "fp32", shape, 10).eval()
    example = torch.randn(1, *shape)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(example)
    counted = {name.split(".", 1)[1]: sum(ops.values())
               for name, ops in counter.get_flop_counts().items() if "." in name}
    layers = [c for c in layer_costs(model, example) if c.layer_type in ("Conv1d", "Conv2d",
                                                                          "Linear")]
    assert len(layers) >= 3
    for cost in layers:
        assert cost.flops == counted[cost.layer] > 0, cost.layer
