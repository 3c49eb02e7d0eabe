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
