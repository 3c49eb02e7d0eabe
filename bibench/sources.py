"""Which source files each architecture and dataset comes from, read from the files themselves.

The Snakefile hashes every cell's code at parse time, without importing torch (bibench.cache), so
it must know which modules an architecture's model or a dataset's data pass through. The
registrations say it: each `register_architecture(Architecture(name=...))` and each
`register_dataset(name, ...)` call is found in the package's files by its syntax tree, and the
code of a registered name is the module that registers it, the `__init__.py` of the packages
above it (Python runs them to import it) and, transitively, the bibench modules it imports at
module level (an import inside a function is a dispatch, not a dependency of the model: the
dataset front door `load_dataset` imports every loader that way). This is timm's
`_model_to_module`, found without importing. A registration must therefore name what it
registers literally; `registrations` refuses one that does not, saying where.
tests/test_cache_map.py holds the scan to the registries that importing the package builds.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
_ROOT = "bibench"


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _module_file(dotted: str) -> Path | None:
    """bibench.models.resnet -> models/resnet.py (or the package's __init__.py); None outside."""
    parts = dotted.split(".")
    if parts[0] != _ROOT:
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _dotted(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [_ROOT, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_inits(path: Path) -> list[Path]:
    """The __init__.py of every package between bibench/ (excluded) and `path`."""
    inits, folder = [], path.parent
    while folder != PACKAGE and folder.is_relative_to(PACKAGE):
        init = folder / "__init__.py"
        if init.is_file() and init != path:
            inits.append(init)
        folder = folder.parent
    return inits


def module_imports(path: Path) -> list[Path]:
    """The bibench modules `path` imports at module level: `import bibench.x`, `from bibench.x
    import y` (module x, and x.y too where y is a submodule), relative imports alike."""
    found: list[Path] = []
    package = _dotted(path) if path.name == "__init__.py" else _dotted(path).rpartition(".")[0]
    for node in _tree(path).body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found += [f for f in map(_module_file, names) if f is not None]
    return list(dict.fromkeys(f for f in found if f != path))


@cache
def module_closure(path: Path) -> tuple[Path, ...]:
    """`path`, its packages' __init__.py and the bibench modules it imports at module level,
    transitively (the packages' own imports are not followed: they register, they are not
    what a model or loader computes with)."""
    seen: dict[Path, None] = {}
    todo = [path]
    while todo:
        file = todo.pop()
        if file in seen:
            continue
        seen[file] = None
        todo.extend(module_imports(file))
    for file in list(seen):
        for init in _package_inits(file):
            seen.setdefault(init, None)
    return tuple(sorted(seen, key=str))


def _literal(node: ast.AST | None) -> Any:
    try:
        return ast.literal_eval(node) if node is not None else None
    except ValueError:
        return None


def _registered(call: ast.Call) -> tuple[str | None, dict[str, Any]]:
    """(name, literal keyword arguments) of a registration call; the name is the first
    positional argument or `name=`, looked for inside a nested call (Architecture(...))."""
    target = call
    if call.args and isinstance(call.args[0], ast.Call):
        target = call.args[0]
    keywords = {k.arg: _literal(k.value) for k in target.keywords if k.arg}
    first = target.args[0] if target.args else None
    name = _literal(first) if first is not None else keywords.get("name")
    return (name if isinstance(name, str) else None), keywords


def _calls_to(tree: ast.Module, function: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id == function)
        or (isinstance(node.func, ast.Attribute) and node.func.attr == function))]


@cache
def registrations(function: str, under: str) -> dict[str, tuple[Path, dict[str, Any]]]:
    """name -> (the file that registers it, its literal keyword arguments) for every call of
    `function` in the package's files under `under`."""
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in sorted((PACKAGE / under).rglob("*.py")):
        if "__pycache__" in path.parts or f"{function}(" not in path.read_text():
            continue  # (parsing only the files that call it: the scan runs at parse time)
        for call in _calls_to(_tree(path), function):
            name, keywords = _registered(call)
            if name is None:
                raise ValueError(f"{path.relative_to(PACKAGE)}:{call.lineno}: {function}(...) "
                                 "must name what it registers literally (bibench.sources "
                                 "reads the registrations without importing them)")
            if name in found:
                raise ValueError(f"{name!r} is registered twice: in "
                                 f"{found[name][0].relative_to(PACKAGE)} and "
                                 f"{path.relative_to(PACKAGE)}:{call.lineno}")
            found[name] = (path, keywords)
    return found


def architectures() -> dict[str, tuple[Path, dict[str, Any]]]:
    """Every architecture registered in bibench/models/."""
    return registrations("register_architecture", "models")


def datasets() -> dict[str, tuple[Path, dict[str, Any]]]:
    """Every dataset registered in bibench/data/ (embedded and official)."""
    return registrations("register_dataset", "data")


def _files(registry: dict[str, tuple[Path, dict[str, Any]]], kind: str, name: str
           ) -> tuple[str, ...]:
    if name not in registry:
        raise KeyError(f"unknown {kind} {name!r}; known: {', '.join(sorted(registry))}")
    return tuple(f.relative_to(PACKAGE).as_posix() for f in module_closure(registry[name][0]))


def architecture_files(arch: str) -> tuple[str, ...]:
    """The package files (relative) an architecture's model comes from."""
    return _files(architectures(), "architecture", arch)


def dataset_files(dataset: str) -> tuple[str, ...]:
    """The package files (relative) a dataset's data pass through."""
    return _files(datasets(), "dataset", dataset)


def download_rules() -> frozenset[str]:
    """The datasets with a download rule: the literal keys of bibench/data/downloads.py's
    DOWNLOADS (single archives) and GROUPS (several) that name a registered dataset."""
    keys: set[str] = set()
    for node in _tree(PACKAGE / "data" / "downloads.py").body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id in ("DOWNLOADS", "GROUPS") and isinstance(
                node.value, ast.Dict):
            keys |= {k.value for k in node.value.keys
                     if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return frozenset(keys & set(datasets()))
