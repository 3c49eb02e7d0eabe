from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bibench.catalog import FP32, algorithm_sources, known_algorithms
from bibench.config import ConfigError, check_config

REPO = Path(__file__).resolve().parent.parent


def _tiny():
    return yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())


@pytest.mark.parametrize("path", ["config/config.yaml", "tests/configs/tiny.yaml"])
def test_shipped_configs_are_valid(path):
    config = check_config(yaml.safe_load((REPO / path).read_text()))
    assert FP32 in config["algorithms"]


def test_defaults_are_filled_in():
    config = check_config(_tiny())
    assert config["tasks"]["mnist"]["pretrain"]["scheduler"] == "cosine"
    assert config["latency"]["threads"] == [1]
    assert config["latency"]["devices"]["local-cpu"]["kind"] == "local"
    assert config["export"]["opset"] == 18


def test_every_problem_is_reported_with_its_key():
    config = _tiny()
    config["tasks"]["mnist"]["pretrain"]["epochs"] = -1
    config["tasks"]["digits"]["finetune"]["optimiser"] = "sgd"
    with pytest.raises(ConfigError) as err:
        check_config(config)
    message = str(err.value)
    assert "tasks.mnist.pretrain.epochs: -1 is less than the minimum of 1" in message
    assert "tasks.digits.finetune" in message and "'optimiser' was unexpected" in message
    assert "allowed keys" in message


def test_unknown_algorithm_is_named():
    config = _tiny()
    config["algorithms"] = ["fp32", "bnnn"]
    with pytest.raises(ConfigError, match="algorithms.1: unknown algorithm 'bnnn'"):
        check_config(config)


def test_fp32_reference_is_required():
    config = _tiny()
    config["algorithms"] = ["bnn"]
    with pytest.raises(ConfigError, match="algorithms"):
        check_config(config)


def test_catalog_names_are_module_files():
    sources = algorithm_sources()
    assert "bnn" in sources and "base" not in sources and FP32 not in sources
    for name, path in sources.items():
        assert path.stem == name and path.exists()
    assert known_algorithms()[0] == FP32


def test_catalog_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, bibench.config, bibench.catalog, bibench.io; "
            "bibench.catalog.known_algorithms(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_latency_devices_are_checked_before_any_job():
    config = _tiny()
    config["latency"]["devices"] = {
        "board": {"kind": "ssh", "engines": ["openvino_binary"], "host": "pi@board",
                  "command": "{python} -m bibench.latency.board {model} --threads {thread}"},
        "here": {"kind": "local", "engines": ["onnxruntime"], "host": "localhost"},
        "nothing": {"kind": "local", "engines": ["tensorrt"]},
    }
    with pytest.raises(ConfigError) as err:
        check_config(config)
    text = str(err.value)
    assert "latency.devices.here" in text and "host" in text
    assert "latency.devices.nothing.engines.0" in text
    config["latency"]["devices"] = {"board": config["latency"]["devices"]["board"]}
    with pytest.raises(ConfigError, match=r"latency\.devices\.board: .*thread"):
        check_config(config)


def test_too_few_timed_runs_are_refused():
    config = _tiny()
    config["latency"]["repeats"] = 10
    with pytest.raises(ConfigError, match=r"latency\.repeats"):
        check_config(config)
