"""Validate a workflow config before any job starts (no torch import: runs at parse time).

Every schema violation is reported at once, each with the dotted path of the offending key,
then names that the schema cannot know (algorithms, which plugins may add) are checked.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from bibench.catalog import (
    DEFAULT_DATA_ROOT,
    DOWNLOADABLE,
    EMBEDDED_DATASETS,
    FP32,
    IMAGE_DATASETS,
    known_algorithms,
)

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The config is invalid; the message lists every problem with the key it concerns."""


def _where(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "<top level>"


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        hint = f" (allowed keys: {', '.join(allowed)})" if allowed else ""
        return f"{error.message}{hint}"
    return error.message


# libyaml's loader where PyYAML has it: the schema is read at every Snakemake parse (dry runs).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: str | Path) -> Any:
    """A YAML file as plain data (safe loader)."""
    return yaml.load(Path(path).read_text(), Loader=_YAML_LOADER)


@functools.lru_cache(maxsize=4)
def _schema(path: str, mtime_ns: int) -> dict[str, Any]:
    """The schema file, parsed once per content version (the key holds its mtime)."""
    return read_yaml(path)


def load_schema(schema_path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """The config schema (shared: treat as read-only)."""
    return _schema(str(schema_path), Path(schema_path).stat().st_mtime_ns)


def schema_errors(config: dict[str, Any], schema_path: str | Path = SCHEMA_PATH) -> list[str]:
    """Every schema violation as 'config key a.b.c: problem'."""
    validator = jsonschema.Draft202012Validator(load_schema(schema_path))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    return [f"config key {_where(e)}: {_message(e)}" for e in errors]


def semantic_errors(config: dict[str, Any]) -> list[str]:
    """Problems the schema cannot see: unknown algorithms, data that cannot be had."""
    known = known_algorithms()
    problems = [
        f"config key algorithms.{i}: unknown algorithm {name!r} (known: {', '.join(known)})"
        for i, name in enumerate(config.get("algorithms", []))
        if name not in known
    ]
    for name, task in config.get("tasks", {}).items():
        dataset = task["dataset"]
        if dataset in EMBEDDED_DATASETS and task.get("root") is not None:
            problems.append(f"config key tasks.{name}.root: dataset {dataset!r} is embedded "
                            "(ships in a PyPI wheel) and takes no root")
        if (dataset not in EMBEDDED_DATASETS and dataset not in DOWNLOADABLE
                and task.get("root") is None):
            problems.append(f"config key tasks.{name}.root: dataset {dataset!r} cannot be "
                            "downloaded; set root to the folder holding your copy")
        if task.get("corruptions") and dataset not in IMAGE_DATASETS:
            problems.append(f"config key tasks.{name}.corruptions: dataset {dataset!r} is not "
                            "an image data set")
        if task.get("corruption_files") is not None and dataset != "cifar10":
            problems.append(f"config key tasks.{name}.corruption_files: official corruption "
                            "files exist for CIFAR-10 only (CIFAR-10-C)")
    for name, device in (config.get("latency") or {}).get("devices", {}).items():
        if device.get("kind") == "ssh":
            from bibench.latency.remote import validate_device

            try:
                validate_device(remote_spec(name, device))
            except ValueError as err:
                problems.append(f"config key latency.devices.{name}: {err}")
    grid = config.get("sensitivity") or {}
    for i, name in enumerate(grid.get("tasks", [])):
        if name not in config.get("tasks", {}):
            problems.append(f"config key sensitivity.tasks.{i}: no task named {name!r}")
    runs = len(grid.get("settings", {})) * len(grid.get("seeds", [0]))
    if grid.get("tasks") and runs < 2:
        problems.append("config key sensitivity.settings: a spread needs at least two runs "
                        "(settings x seeds)")
    return problems


def remote_spec(name: str, device: dict[str, Any]) -> dict[str, Any]:
    """A config device as bibench.latency.remote reads it (engines, threads: the workflow's)."""
    return {"name": name, **{k: v for k, v in device.items() if k not in ("engines", "threads")}}


def _fill_defaults(instance: Any, schema: dict[str, Any], root: dict[str, Any]) -> None:
    """Insert the schema's `default` values, in place, wherever a key is absent."""
    if "$ref" in schema:
        ref = schema["$ref"].removeprefix("#/").split("/")
        target: Any = root
        for part in ref:
            target = target[part]
        schema = target
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(value, extra, root)


def check_config(config: dict[str, Any], schema_path: str | Path = SCHEMA_PATH
                 ) -> dict[str, Any]:
    """Raise ConfigError listing every problem; else fill in defaults (in place) and return it."""
    problems = schema_errors(config, schema_path) or semantic_errors(config)
    if problems:
        raise ConfigError("invalid bibench config:\n  " + "\n  ".join(problems))
    schema = load_schema(schema_path)
    _fill_defaults(config, schema, schema)
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and check a config file (for `bibench status`; the workflow uses check_config)."""
    return check_config(read_yaml(path) or {})


def config_hash(settings: Any) -> str:
    """A short stable hash of JSON-able settings (provenance of a cell or of a whole config)."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def canonical(value: Any) -> Any:
    """A copy with every mapping's keys sorted, recursively.

    Snakemake compares a job's params with those of its last run as written, key order
    included: sorting makes reordering keys in a YAML file change nothing.
    """
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


# --- the settings each job of a cell receives (the workflow's params; `bibench status`) -------


def data_root(task: dict[str, Any]) -> str | None:
    """Official datasets default to resources/, where the download rule puts them."""
    if task["dataset"] in EMBEDDED_DATASETS:
        return None
    return task["root"] or DEFAULT_DATA_ROOT


def dataset_settings(task: dict[str, Any]) -> dict[str, Any]:
    """What a job needs to load the task's data."""
    return {"name": task["dataset"], "root": data_root(task), "options": task["options"],
            "max_train": task["max_train"], "max_test": task["max_test"]}


def corruption_settings(task: dict[str, Any]) -> dict[str, Any]:
    return {"corruptions": task["corruptions"], "files": task["corruption_files"]}


def training_settings(task: dict[str, Any], algorithm: str) -> dict[str, Any]:
    """FP32 cells are the pretrained models; the others are finetuned."""
    return task["pretrain"] if algorithm == FP32 else task["finetune"]


def sensitivity_run_settings(config: dict[str, Any], task: str, algorithm: str, setting: str
                             ) -> dict[str, Any]:
    """The task's pretrain (FP32) or finetune (binarized) settings with the setting's overrides."""
    base = training_settings(config["tasks"][task], algorithm)
    return canonical({**base, **config["sensitivity"]["settings"][setting]})
