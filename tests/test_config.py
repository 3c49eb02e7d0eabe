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


# --------------------------------------------------------------------------- bounded configs


def _bomb(kind: str, depth: int = 9) -> str:
    """A YAML anchor bomb: `depth` levels of 10 aliases to the level below (10**depth values)."""
    lines = []
    for d in range(depth):
        items = ["x"] * 10 if d == 0 else [f"*l{d - 1}"] * 10
        body = (f"[{', '.join(items)}]" if kind == "list"
                else "{" + ", ".join(f"k{i}: {v}" for i, v in enumerate(items)) + "}")
        lines.append(f"      l{d}: &l{d} {body}")
    return "\n".join(lines)


def _tiny_with_options(options: str) -> str:
    text = (REPO / "tests" / "configs" / "tiny.yaml").read_text()
    marker = "    dataset: mnist_embedded\n"
    assert marker in text
    return text.replace(marker, marker + "    options:\n" + options + "\n", 1)


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_anchor_bomb_is_refused_before_it_is_expanded(tmp_path, kind):
    from bibench.config import MAX_CONFIG_VALUES, load_config

    path = tmp_path / "bomb.yaml"
    path.write_text(_tiny_with_options(_bomb(kind)))
    with pytest.raises(ConfigError) as err:  # measured on the composed document: instant
        load_config(path)
    message = str(err.value)
    assert str(path) in message and "tasks.mnist.options.l8" in message
    assert f"limit of {MAX_CONFIG_VALUES:,}" in message and "MAX_CONFIG_VALUES" in message
    # an already loaded config (as Snakemake hands it over, aliases shared) is measured too
    config = yaml.load(path.read_text(), Loader=yaml.SafeLoader)
    with pytest.raises(ConfigError, match=r"tasks\.mnist\.options\.l8: .* limit of 100,000"):
        check_config(config)


def test_config_size_aliases_and_self_reference_are_bounded(tmp_path):
    from bibench.config import MAX_CONFIG_ALIASES, MAX_CONFIG_BYTES, load_config

    big = tmp_path / "big.yaml"
    big.write_text(_tiny_with_options("      blob: " + "x" * MAX_CONFIG_BYTES))
    with pytest.raises(ConfigError, match=rf"big.yaml: larger than the limit of "
                                          rf"{MAX_CONFIG_BYTES:,} bytes \(MAX_CONFIG_BYTES"):
        load_config(big)
    aliases = tmp_path / "aliases.yaml"
    uses = ", ".join(["*one"] * (MAX_CONFIG_ALIASES + 1))
    aliases.write_text(_tiny_with_options(f"      one: &one 1\n      many: [{uses}]"))
    with pytest.raises(ConfigError, match=rf"{MAX_CONFIG_ALIASES + 1:,} uses of YAML aliases, "
                                          rf"more than the limit of {MAX_CONFIG_ALIASES:,}"):
        load_config(aliases)
    loop = tmp_path / "loop.yaml"
    loop.write_text(_tiny_with_options("      a: &a {b: [1, *a]}"))
    with pytest.raises(ConfigError, match=r"tasks\.mnist\.options\.a\.b\.1: contains itself"):
        load_config(loop)
    broken = tmp_path / "broken.yaml"
    broken.write_text("tasks: [1\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(broken)


def test_shipped_configs_are_well_within_the_limits():
    from bibench.config import MAX_CONFIG_VALUES, read_yaml, size_problems

    for path in ["config/config.yaml", "config/paper.yaml", "config/detection.yaml"]:
        config = read_yaml(REPO / path)
        assert not size_problems(config)
        assert not size_problems({"x": [config] * (MAX_CONFIG_VALUES // 10_000)}), path


def test_empty_config_file_is_refused_naming_it(tmp_path, capsys):
    from bibench import cli

    path = tmp_path / "empty.yaml"
    path.write_text("{}\n")
    assert cli.main(["status", "--configfile", str(path), "-d", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"config file {path}: empty" in err and "--configfile" in err


def test_missing_official_data_folder_is_named(tmp_path, monkeypatch):
    from bibench.config import data_path_problems

    monkeypatch.chdir(tmp_path)
    config = _tiny()
    config["tasks"]["mnist"].update(dataset="cifar10", root="nowhere", corruption_files="gone")
    config["tasks"]["digits"].update(dataset="imagenet", root="imagenet")
    problems = sorted(data_path_problems(check_config(config)))
    assert len(problems) == 3
    assert problems[0].startswith("config key tasks.digits.root: no folder 'imagenet'")
    assert "cannot be downloaded" in problems[0]
    assert problems[1].startswith("config key tasks.mnist.corruption_files: no folder 'gone'")
    assert "set it to 'resources'" in problems[1]
    assert problems[2].startswith("config key tasks.mnist.root: no folder 'nowhere'")
    assert "leave it null" in problems[2]
    for folder in ("nowhere", "gone", "imagenet"):
        (tmp_path / folder).mkdir()
    config["tasks"]["mnist"]["corruption_files"] = "resources"  # the download rule's
    assert data_path_problems(check_config(config)) == []


def _limited_memory():  # a run that would expand a bomb fails fast instead of taking the host
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


@pytest.mark.parametrize("case", ["empty-mapping", "anchor-bomb", "missing-root"])
def test_config_problems_stop_the_workflow_before_any_job(workflow_copy, case):
    import subprocess
    import sys

    config = workflow_copy.root / "bad.yaml"
    if case == "empty-mapping":
        config.write_text("{}\n")
        names = [f"config file {config}: empty"]
    elif case == "anchor-bomb":
        config.write_text(_tiny_with_options(_bomb("list")))
        names = [f"config file {config}", "tasks.mnist.options.l8", "limit of 100,000"]
    else:
        tiny = _tiny()
        tiny["tasks"]["mnist"].update(dataset="cifar10", root="/no/such/cifar")
        config.write_text(yaml.safe_dump(tiny))
        names = ["tasks.mnist.root: no folder '/no/such/cifar'"]
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "results/report.html",
           "--configfile", str(config)]
    proc = subprocess.run(cmd, cwd=workflow_copy.root, env=workflow_copy.env, text=True,
                          capture_output=True, timeout=300, preexec_fn=_limited_memory)
    message = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "invalid bibench config" in message, message
    for name in names:
        assert name in message, message
    assert not (workflow_copy.root / "results").exists()
    assert not (workflow_copy.root / "logs").exists()
    if case == "missing-root":  # a dry run plans the grid and says what a run would refuse
        dry = subprocess.run([*cmd[:5], "-n", *cmd[5:]], cwd=workflow_copy.root,
                             env=workflow_copy.env, text=True, capture_output=True, timeout=300)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        planned = dry.stdout + dry.stderr
        assert names[0] in planned and "dry run: a real run stops here" in planned
