"""The `bibench` command: listing algorithms and writing a new-algorithm template."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from bibench import cli
from bibench.algorithms import _REGISTRY, get_algorithm
from bibench.binarize import binarize


def test_algorithms_lists_every_algorithm_with_deployment_facts(capsys):
    assert cli.main(["algorithms", "-v"]) == 0
    out = capsys.readouterr().out
    for name in ("bnn", "xnor", "dorefa", "bireal", "xnorpp", "reactnet", "recu", "fda"):
        assert f"\n{name} " in out
    xnor_line = next(line for line in out.splitlines() if line.startswith("xnor "))
    assert " no " in xnor_line
    assert "not deployable" in out


def test_new_algorithm_writes_a_working_template(tmp_path):
    name = "my_test_algo"
    assert cli.main(["new-algorithm", name, "--dir", str(tmp_path)]) == 0
    path = tmp_path / f"{name}.py"
    text = path.read_text()
    assert f'name = "{name}"' in text and "@register" in text
    for method in (
        "setup_layer",
        "activation_sign",
        "binarize_input",
        "binarize_weight",
        "scale_output",
        "update_schedule",
        "extra_fp_params",
        "extra_fp_ops",
    ):
        assert f"def {method}(" in text, method
    # the template imports, registers and binarizes a model
    spec = importlib.util.spec_from_file_location(f"_bibench_test_{name}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        assert get_algorithm(name).name == name
        model = binarize(nn.Sequential(nn.Linear(4, 3)), name, keep_first_last=False)
        model(torch.randn(2, 4)).sum().backward()
        bw = model[0].binary_weight()
        assert torch.allclose(bw.abs(), bw.abs()[:, :1].expand_as(bw))
    finally:
        _REGISTRY.pop(name, None)


def test_new_algorithm_refuses_to_overwrite(tmp_path, capsys):
    (tmp_path / "mine.py").write_text("# mine\n")
    assert cli.main(["new-algorithm", "mine", "--dir", str(tmp_path)]) == 1
    assert (tmp_path / "mine.py").read_text() == "# mine\n"
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["bnn", "fda", "fp32", "base", "1abc", "My", "a-b", "class", "_x"])
def test_new_algorithm_refuses_invalid_or_taken_names(name, tmp_path, capsys):
    assert cli.main(["new-algorithm", name, "--dir", str(tmp_path)]) == 1
    assert list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err


def test_parser_uses_subcommands():
    with pytest.raises(SystemExit):
        cli.main([])
    parser = cli.build_parser()
    assert parser.parse_args(["algorithms"]).command == "algorithms"
