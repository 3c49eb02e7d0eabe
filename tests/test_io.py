from __future__ import annotations

import pandas as pd
import pytest

from bibench.config import config_hash
from bibench.io import SCHEMAS, atomic_write, read_table, write_table


def _eval_row(**over):
    row = {"task": "t", "arch": "a", "algorithm": "bnn", "seed": 0, "condition": "clean",
           "severity": 0, "metric": "accuracy", "value": 0.5, "n_samples": 10,
           "chance_value": 0.1, "embedded": True,
           "stands_in_for": "CIFAR-10", "cell_config_hash": "h", "bibench_version": "v",
           "torch_version": "t", "device": "cpu", "precision": "fp32", "threads": 1}
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
    with pytest.raises(ValueError, match="schema differs"):
        read_table(path, "eval")


def test_config_hash_is_stable_and_order_independent():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
