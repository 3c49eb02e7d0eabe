"""The plugin interface: an algorithm package written against bibench.algorithms, built and
installed by pip in a temporary folder, is found through its entry point, listed by
`bibench algorithms`, named as its cells' source file, and binarizes and trains a model.

The package is installed with `pip install --target` into the test's temporary folder and used
by subprocesses that put that folder on sys.path: the running interpreter and the venv are
never changed, and removing the folder removes the install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, install_package

PLUGIN = "gain_sign"  # entry-point name = the class's `name`
MODULE = '''
"""A plugin algorithm: sign of weights and inputs, a learned per-channel output gain."""

import torch
from torch import Tensor, nn

from bibench.algorithms import Algorithm, DeploymentFacts
from bibench.algorithms.base import (
    BinarizedLayer,
    channel_view,
    per_channel_mean_abs,
    sign_clip_ste,
)


class GainSign(Algorithm):
    name = "gain_sign"
    title = "GainSign"
    reference = "a test plugin"
    deployment = DeploymentFacts(
        weight_scale="per-channel", weight_scale_form="learned", bn_foldable=True,
        activation_rescaling=False, activation_mean_shift=False,
    )

    def setup_layer(self, layer: BinarizedLayer, output_shape: tuple[int, ...]) -> None:
        layer.plugin_gain = nn.Parameter(torch.ones(layer.weight.shape[0]))

    def binarize_weight(self, layer: BinarizedLayer, weight: Tensor) -> Tensor:
        return sign_clip_ste(weight) * per_channel_mean_abs(weight).detach()

    def scale_output(self, layer: BinarizedLayer, x: Tensor, y: Tensor) -> Tensor:
        return y * channel_view(layer, layer.plugin_gain)

    def extra_fp_params(self, layer: BinarizedLayer) -> int:
        return layer.weight.shape[0]
'''
CHECK = '''
import json, sys
import torch
from torch import nn
from bibench.algorithms import get_algorithm
from bibench.binarize import binarize, binarized_layers
from bibench.catalog import algorithm_sources, known_algorithms

model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                      nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.Flatten(),
                      nn.Linear(8 * 6 * 6, 4))
model = binarize(model, "gain_sign")
layers = dict(binarized_layers(model))
x = torch.randn(5, 3, 6, 6)
model(x).square().mean().backward()
conv = layers["2"]
print(json.dumps({
    "known": "gain_sign" in known_algorithms(),
    "source": str(algorithm_sources()["gain_sign"]),
    "algorithm": type(get_algorithm("gain_sign")).__module__,
    "layers": sorted(layers),
    "weight_values": sorted({round(abs(v), 6) for v in conv.binary_weight()[0].flatten().tolist()}),
    "gain_is_learnable": any(p is conv.plugin_gain for p in model.parameters()),
    "weight_grad": float(conv.weight.grad.abs().sum()),
    "gain_grad": float(conv.plugin_gain.grad.abs().sum()),
}))
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The plugin package built and pip-installed into a temporary target folder."""
    site = install_package(tmp_path_factory.mktemp("plugin"), "bibench_test_plugin",
                           {"gain_sign.py": MODULE},
                           {PLUGIN: "gain_sign:GainSign"})
    assert list(site.glob("bibench_test_plugin-*.dist-info/entry_points.txt"))
    return site


def _run(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    return subprocess.run([sys.executable, *args], cwd=site.parent, env=env,
                          capture_output=True, text=True, timeout=300)


def test_bibench_algorithms_lists_the_installed_plugin(plugin_site):
    proc = _run(plugin_site, "-m", "bibench.cli", "algorithms")
    assert proc.returncode == 0, proc.stderr
    line = next(row for row in proc.stdout.splitlines() if row.startswith(PLUGIN + " "))
    assert "GainSign" in line and " learned " in line
    assert "\nbnn " in proc.stdout  # the built-ins are still there


def test_the_plugin_binarizes_and_trains_a_model(plugin_site):
    proc = _run(plugin_site, "-c", textwrap.dedent(CHECK))
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert facts["known"]
    assert facts["source"] == str(plugin_site / "bibench_test_plugin" / "gain_sign.py")
    assert facts["algorithm"] == "bibench_test_plugin.gain_sign"
    assert facts["layers"] == ["2", "4"]  # first and last layers stay full precision
    assert len(facts["weight_values"]) == 1  # exactly +-scale per output channel
    assert facts["gain_is_learnable"]
    assert facts["weight_grad"] > 0 and facts["gain_grad"] > 0


def test_without_the_install_the_plugin_is_unknown(plugin_site):
    proc = _run(plugin_site.parent / "elsewhere", "-m", "bibench.cli", "algorithms")
    assert proc.returncode == 0, proc.stderr
    assert not any(row.startswith(PLUGIN + " ") for row in proc.stdout.splitlines())
