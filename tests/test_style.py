"""Code style is part of the suite, so the README's single test command checks it too."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed: pip install -e '.[test]'")
    proc = subprocess.run([ruff, "check", "bibench", "workflow/scripts", "tests", "bench"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _long_functions(root: Path, limit: int) -> list[str]:
    """Functions whose body (docstring aside) is over `limit` lines, without a `# long:` comment
    giving the reason on the line above the def (or its decorators)."""
    import ast

    found = []
    for path in sorted(root.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            body = node.body
            if (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str) and len(body) > 1):
                body = body[1:]
            length = node.end_lineno - body[0].lineno + 1
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            reason = lines[first - 2].strip().startswith("# long:") if first > 1 else False
            if length > limit and not reason:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length})")
    return found


def test_functions_are_short_or_say_why():
    long = [f"{folder}/{f}" for folder in ("bibench", "workflow/scripts", "bench")
            for f in _long_functions(REPO / folder, limit=50)]
    assert not long, "functions over 50 lines need a '# long: reason' line above:\n" + "\n".join(
        long)


def test_the_length_check_can_fail(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(51))
    (tmp_path / "m.py").write_text(f"def f():\n    \"\"\"Doc.\"\"\"\n{body}\n\n\n"
                                   f"# long: a reason\ndef g():\n{body}\n")
    assert _long_functions(tmp_path, limit=50) == ["m.py:1 f (51)"]


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules `path` imports anywhere (functions included), `if TYPE_CHECKING:`
    blocks aside (annotations only: never executed)."""
    import ast

    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
               for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles_but_registries():
    """A module never imports one that imports it back, even inside a function: such a pair
    holds something in the wrong room. The one allowed circle is a registry's: a package whose
    __init__ imports its modules so that they register, and whose modules import the registry
    from it (bibench.models, bibench.data)."""
    package = REPO / "bibench"
    paths = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
             for p in package.rglob("*.py")}
    graph = {m: _imports(p, set(paths)) - {m} for m, p in paths.items()}
    bad = [sorted(c) for c in _cycles(graph)
           if not any(m in c and all(n.startswith(m + ".") for n in c - {m}) for m in c)]
    assert not bad, f"import circles: {bad}"
