"""Theoretical complexity (bibench.metrics.complexity): binary layers counted from the model, and
ResNet-18 (ImageNet stem, 1000 classes) against the paper's Table 3.

The paper's figures binarize every conv but the stem (its downsample shortcuts too), and keep
the classifier, BN and scaling factors in full precision: `keep_fp=()` gives that policy.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bibench.cli import main
from bibench.metrics.complexity import (
    compression_ratio,
    layer_costs,
    model_summary,
    speedup_ratio,
    totals,
)
from bibench.models import build_model
from bibench.training.checkpoint import build_cell_model

# Table 3 spans only 0.8% in r_c (13.16 - 13.27), so a 1% tolerance would accept any
# algorithm's figure for any other's. Each algorithm is checked against its own value as
# documented in docs/complexity.md to 0.1%, with the paper's value and the documented reason
# for the difference beside it.
# algorithm: (r_c ours, r_c paper, r_s ours, r_s paper, why ours differs)
SCALE_COST = "r_s: as BNN's, plus one multiply per output element for the scale"
TABLE3 = {
    "bnn": (13.27, 13.27, 12.51, 12.60, "r_s: FP FLOPs of stem and classifier, uncounted BN"),
    "xnor": (13.20, 13.20, 12.27, 12.26, "(agrees)"),
    "dorefa": (13.27, 13.20, 12.44, 12.37, "one scale per layer (Table 6); r_s as Bi-Real"),
    "bireal": (13.20, 13.20, 12.44, 12.37, SCALE_COST),
    "xnorpp": (13.19, 13.16, 12.44, 12.26, "Gamma costs one multiply per output element"),
    "reactnet": (13.15, 13.20, 12.35, 12.26, "thresholds counted: C_in params, one add each"),
    "recu": (13.20, 13.20, 12.44, 12.37, SCALE_COST),
    "fda": (13.20, 13.20, 12.44, 12.37, SCALE_COST),
}
OURS_TOLERANCE = 0.001  # docs give two decimals: rounding is at most 0.04%


@pytest.mark.parametrize("algorithm", sorted(TABLE3))
def test_resnet18_ratios_match_their_documented_values(algorithm):
    summary = model_summary("resnet18_imagenet", algorithm, keep_fp=())
    r_c, _r_c_paper, r_s, _r_s_paper, _why = TABLE3[algorithm]
    assert summary["compression_ratio"] == pytest.approx(r_c, rel=OURS_TOLERANCE)
    assert summary["speedup_ratio"] == pytest.approx(r_s, rel=OURS_TOLERANCE)


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
