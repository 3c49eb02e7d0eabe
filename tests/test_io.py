from __future__ import annotations

import pandas as pd
import pytest

from bibench.config import config_hash
from bibench.io import SCHEMAS, DamagedFileError, atomic_write, read_table, write_table


def _eval_row(**over):
    row = {"task": "t", "arch": "a", "algorithm": "bnn", "seed": 0, "condition": "clean",
           "severity": 0, "metric": "accuracy", "value": 0.5, "n_samples": 10,
           "chance_value": 0.1, "embedded": True,
           "stands_in_for": "CIFAR-10", "cell_config_hash": "h", "code_fingerprint": "c",
           "bibench_version": "v", "torch_version": "t", "device": "cpu", "device_model": "m",
           "precision": "fp32", "threads": 1}
    row.update(over)
    return row


def test_write_then_read_round_trips_with_schema(tmp_path):
    path = tmp_path / "sub" / "eval.parquet"
    write_table([_eval_row(), _eval_row(condition="gaussian_noise", severity=3)], path, "eval")
    frame = read_table(path, "eval")
    assert list(frame.columns) == SCHEMAS["eval"].names
    assert frame["severity"].tolist() == [0, 3]


def test_missing_or_extra_columns_are_rejected_and_nothing_is_written(tmp_path):
    path = tmp_path / "eval.parquet"
    row = _eval_row()
    del row["value"]
    with pytest.raises(ValueError, match="missing columns \\['value'\\]"):
        write_table([row], path, "eval")
    with pytest.raises(ValueError, match="unexpected columns \\['oops'\\]"):
        write_table([_eval_row(oops=1)], path, "eval")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "eval.parquet"
    write_table([_eval_row(value=0.25)], path, "eval")

    def explode(tmp):
        open(tmp, "w").write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, explode)
    assert read_table(path, "eval")["value"].tolist() == [0.25]
    assert [p.name for p in tmp_path.iterdir()] == ["eval.parquet"]


def test_read_table_rejects_another_schema(tmp_path):
    path = tmp_path / "x.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(path)
    with pytest.raises(ValueError, match="its columns are not those of table .eval."):
        read_table(path, "eval")


def test_config_hash_is_stable_and_order_independent():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


@pytest.mark.parametrize(("damage", "problem"), [
    (lambda data: data[: len(data) // 2], "truncated Parquet file"),
    (lambda data: b"name,value\nx,1\n", "not a Parquet file"),
    (lambda data: b"", "not a Parquet file (0 bytes"),
])
def test_a_damaged_table_names_the_file_the_problem_and_the_command(tmp_path, damage, problem):
    path = tmp_path / "eval.parquet"
    write_table([_eval_row()], path, "eval")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DamagedFileError) as info:
        read_table(path, "eval")
    message = str(info.value)
    assert message.startswith(f"damaged result {path}: {problem}")
    assert message.endswith(f"with: snakemake --cores all --forcerun {path}")


def test_a_table_with_the_wrong_columns_says_which(tmp_path):
    path = tmp_path / "eval.parquet"
    write_table([_eval_row()], path, "eval")
    frame = read_table(path, "eval").drop(columns=["value"]).assign(severity="3")
    frame.to_parquet(path)
    with pytest.raises(DamagedFileError, match=r"missing \['value'\]; severity: string "
                                               r"instead of int64"):
        read_table(path, "eval")
