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

from bibench import catalog
from bibench.catalog import DEFAULT_DATA_ROOT, FP32, known_algorithms

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

# Bounds on a config, checked before anything walks it. A YAML alias refers to its anchored
# node without copying it, so a few lines of aliases to aliases can stand for billions of
# values, which the first walk over the config (validation, hashing, the jobs' params) would
# expand without bound. Values count every mapping, list and scalar, mapping keys included,
# once each time an alias reaches it. The shipped configs hold under 1,000.
MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_ALIASES = 1_000
MAX_CONFIG_VALUES = 100_000
_LIMITS = "bibench/config.py"  # where the limits are set, for the messages


class _Cycle(Exception):
    """A value contains itself (a YAML alias to an enclosing anchor)."""

    def __init__(self, path: list[str]) -> None:
        super().__init__(path)
        self.path = path


def _node_children(node: Any) -> list[tuple[str, Any]] | None:
    """(key, child) of a composed YAML node: None for a scalar."""
    if isinstance(node, yaml.MappingNode):
        pairs: list[tuple[str, Any]] = []
        for key, value in node.value:
            label = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            pairs += [(label, key), (label, value)]
        return pairs
    if isinstance(node, yaml.SequenceNode):
        return [(str(i), v) for i, v in enumerate(node.value)]
    return None


def _value_children(value: Any) -> list[tuple[str, Any]] | None:
    """(key, child) of a loaded value (a mapping's keys count as values): None for a scalar."""
    if isinstance(value, dict):
        return [(str(k), v) for k in value for v in (k, value[k])]
    if isinstance(value, list | tuple):
        return [(str(i), v) for i, v in enumerate(value)]
    return None


def _expanded_sizes(root: Any, children: Any) -> tuple[dict[int, int], dict[int, int]]:
    """How many values each container reachable from `root` stands for once every alias is
    followed (by id), and how often each node is referred to; shared nodes are measured once,
    so this costs what the document holds, not what it expands to. Raises _Cycle."""
    sizes: dict[int, int] = {}
    refs: dict[int, int] = {id(root): 1}
    stack: list[list[Any]] = [[root, iter(children(root) or ()), 1, "<top level>"]]
    on_path = {id(root)}
    while stack:
        top = stack[-1]
        for key, child in top[1]:
            refs[id(child)] = refs.get(id(child), 0) + 1
            if id(child) in sizes:  # measured already: reached again through an alias
                top[2] += sizes[id(child)]
                continue
            if id(child) in on_path:
                raise _Cycle([str(e[3]) for e in stack[1:]] + [key])
            grandchildren = children(child)
            if grandchildren is None:
                top[2] += 1
            else:
                on_path.add(id(child))
                stack.append([child, iter(grandchildren), 1, key])
                break
        else:
            stack.pop()
            on_path.discard(id(top[0]))
            sizes[id(top[0])] = top[2]
            if stack:
                stack[-1][2] += top[2]
    return sizes, refs


def _largest_key(root: Any, children: Any, sizes: dict[int, int], refs: dict[int, int]
                 ) -> str:
    """The dotted key of the smallest value, not reached through an alias, that alone
    expands past MAX_CONFIG_VALUES (where the expansion is written)."""
    path, node = [], root
    while True:
        own = [(k, c) for k, c in children(node) or () if id(c) in sizes and refs[id(c)] == 1]
        if not own:
            break
        key, child = max(own, key=lambda kc: sizes[id(kc[1])])
        if sizes[id(child)] <= MAX_CONFIG_VALUES:
            break
        path.append(key)
        node = child
    return ".".join(path) or "<top level>"


def size_problems(root: Any, nodes: bool = False) -> list[str]:
    """Problems of a loaded config (or, with `nodes`, of a composed YAML document) whose
    expansion would exceed the limits: 'config key a.b: problem'. Costs what the document
    holds, whatever it expands to."""
    children = _node_children if nodes else _value_children
    if children(root) is None:
        return []
    try:
        sizes, refs = _expanded_sizes(root, children)
    except _Cycle as cycle:
        return [f"config key {'.'.join(cycle.path)}: contains itself (a YAML alias to an "
                "anchor that encloses it)"]
    problems = []
    total = sizes[id(root)]
    if total > MAX_CONFIG_VALUES:
        problems.append(
            f"config key {_largest_key(root, children, sizes, refs)}: the config expands to "
            f"{total:,} values once its YAML aliases are followed, more than the limit of "
            f"{MAX_CONFIG_VALUES:,} (MAX_CONFIG_VALUES in {_LIMITS})")
    aliases = sum(n - 1 for n in refs.values()) if nodes else 0
    if aliases > MAX_CONFIG_ALIASES:
        problems.append(f"config key <top level>: {aliases:,} uses of YAML aliases, more than "
                        f"the limit of {MAX_CONFIG_ALIASES:,} (MAX_CONFIG_ALIASES in {_LIMITS})")
    return problems


def _read_bounded(path: Path) -> str:
    """The text of a config file, refused unread past MAX_CONFIG_BYTES."""
    with open(path, "rb") as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"invalid bibench config:\n  config file {path}: larger than the "
                          f"limit of {MAX_CONFIG_BYTES:,} bytes (MAX_CONFIG_BYTES in {_LIMITS})")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"invalid bibench config:\n  config file {path}: not UTF-8 text "
                          f"({err})") from None


def read_yaml(path: str | Path) -> Any:
    """A YAML file as plain data (safe loader), refused (ConfigError naming the file) when it
    exceeds MAX_CONFIG_BYTES, or its aliases MAX_CONFIG_ALIASES or, expanded,
    MAX_CONFIG_VALUES: the document is composed (aliases stay shared) and measured before
    any value is built."""
    path = Path(path)
    loader = _YAML_LOADER(_read_bounded(path))
    try:
        node = loader.get_single_node()
        problems = size_problems(node, nodes=True) if node is not None else []
        if problems:
            raise ConfigError(f"invalid bibench config:\n  config file {path}: "
                              + f"\n  config file {path}: ".join(problems))
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid bibench config:\n  config file {path}: not valid YAML: "
                          f"{err}") from None
    finally:
        loader.dispose()


@functools.lru_cache(maxsize=4)
def _schema(path: str, mtime_ns: int) -> dict[str, Any]:
    """The schema file, parsed once per content version (the key holds its mtime), with the
    registered names as the only values of the keys that name a registered thing: a device's
    `engines` (bibench.latency.engines), a task's `dataset` and `architectures` (their
    registrations, read by bibench.sources): each registry is the one list of its names."""
    from bibench import sources
    from bibench.latency.engines import engines

    schema = read_yaml(path)
    engine_names = schema.get("$defs", {}).get("device", {}).get("properties", {}).get("engines")
    if engine_names is not None:
        engine_names["items"] = {"enum": list(engines())}
    task = schema.get("properties", {}).get("tasks", {}).get("additionalProperties", {})
    fields = task.get("properties", {})
    if "dataset" in fields:
        fields["dataset"]["enum"] = sorted(name for name, (_, kw) in sources.datasets().items()
                                           if kw.get("task", True))
    if "architectures" in fields:
        fields["architectures"]["items"] = {"enum": sorted(sources.architectures())}
    return schema


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
        if dataset in catalog.EMBEDDED_DATASETS and task.get("root") is not None:
            problems.append(f"config key tasks.{name}.root: dataset {dataset!r} is embedded "
                            "(ships in a PyPI wheel) and takes no root")
        if (dataset not in catalog.EMBEDDED_DATASETS and dataset not in catalog.DOWNLOADABLE
                and task.get("root") is None):
            problems.append(f"config key tasks.{name}.root: dataset {dataset!r} cannot be "
                            "downloaded; set root to the folder holding your copy")
        if task.get("corruptions") and dataset not in catalog.IMAGE_DATASETS:
            problems.append(f"config key tasks.{name}.corruptions: dataset {dataset!r} is not "
                            "an image data set")
        if task.get("corruption_files") is not None and dataset != "cifar10":
            problems.append(f"config key tasks.{name}.corruption_files: official corruption "
                            "files exist for CIFAR-10 only (CIFAR-10-C)")
    for name, device in (config.get("latency") or {}).get("devices", {}).items():
        from bibench.latency.engines import engines

        for i, engine in enumerate(device.get("engines", [])):
            if device.get("kind") == "ssh" and not engines()[engine].board_engine:
                problems.append(f"config key latency.devices.{name}.engines.{i}: engine "
                                f"{engine!r} does not run on remote boards")
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
    """Insert the schema's `default` values, in place, wherever a key is absent.

    Not snakemake.utils.validate(set_default=True): its default setter takes every subschema
    for a mapping and fails (TypeError) on the boolean subschemas this schema's if/then rules
    use (`properties: {kind: true, ...}` for local devices)."""
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
    """Raise ConfigError listing every problem; else fill in defaults (in place) and return it.

    Its size is checked first, before anything walks it (size_problems)."""
    if not isinstance(config, dict):
        raise ConfigError("invalid bibench config:\n  config key <top level>: a config is a "
                          f"mapping of keys, not {type(config).__name__}")
    problems = (size_problems(config) or schema_errors(config, schema_path)
                or semantic_errors(config))
    if problems:
        raise ConfigError("invalid bibench config:\n  " + "\n  ".join(problems))
    schema = load_schema(schema_path)
    _fill_defaults(config, schema, schema)
    return config


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and check a config file (for `bibench status`; the workflow uses check_config)."""
    config = read_yaml(path)
    if not config:
        raise ConfigError(_empty(path))
    return check_config(config)


def _empty(path: str | Path) -> str:
    return (f"invalid bibench config:\n  config file {path}: empty (it sets no key); leave "
            "--configfile out to run the default grid, config/config.yaml")


def check_config_files(paths: list[str | Path]) -> None:
    """Refuse, naming the file, a given config file that is empty or exceeds the limits.

    For the Snakefile, before anything walks the config: Snakemake has loaded these files
    itself (JSON first, then YAML); they are read again here, bounded, for their names and
    their size as written. An empty mapping is not taken for "no --configfile given"."""
    import json

    for path in paths:
        text = _read_bounded(Path(path))
        try:
            config = json.loads(text)
        except ValueError:
            config = read_yaml(path)
        if not config:
            raise ConfigError(_empty(path))


def data_path_problems(config: dict[str, Any]) -> list[str]:
    """Data folders of a checked config that do not exist (relative paths: from the working
    directory), each with its key; the download rule's folder (resources) is not required."""
    problems = []
    for name, task in config.get("tasks", {}).items():
        for key, dataset in (("root", task["dataset"]), ("corruption_files", "cifar10c")):
            folder = task.get(key)
            if folder is None or task["dataset"] in catalog.EMBEDDED_DATASETS:
                continue
            if folder == DEFAULT_DATA_ROOT and dataset in catalog.DOWNLOADABLE:
                continue
            if not Path(folder).expanduser().is_dir():
                fix = {"root": ", or leave it null to have the download rule fill resources/",
                       "corruption_files": ", or set it to 'resources' to have the download "
                                           "rule fill it"}[key]
                problems.append(f"config key tasks.{name}.{key}: no folder {folder!r} "
                                f"(from {Path.cwd()}): {dataset} is read from it; point it at "
                                "your copy" + (fix if dataset in catalog.DOWNLOADABLE else
                                               " (it cannot be downloaded)"))
    return problems


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
    if task["dataset"] in catalog.EMBEDDED_DATASETS:
        return None
    return task["root"] or DEFAULT_DATA_ROOT


def timed_seed(config: dict[str, Any]) -> int:
    """The seed whose cells are timed: the first of `seeds`. Every seed's export forms have the
    same graph, shapes and kernels, so latency is measured once per (task, arch, algorithm)
    (docs/design.md, "What a seed varies")."""
    return config["seeds"][0]


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
