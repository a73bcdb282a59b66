"""No function in the packages over MAX_LINES lines (the house style: functions short enough to read
at once).

Every module of bridge/ and training/ is parsed; a function's length is its span in the file, from its `def`
line to its last line (docstring, comments and nested functions included, decorators not)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bridge", "training")
MAX_LINES = 80


def _long_functions(folder: str) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_LINES:
                    found.append(f"{rel}:{node.lineno} {node.name}: {lines} lines")
    return found


def test_no_function_over_max_lines():
    found = [f for folder in PACKAGES for f in _long_functions(folder)]
    assert not found, f"functions over {MAX_LINES} lines; split each into parts that read at once:\n" + "\n".join(found)


def test_the_check_sees_the_packages():
    """Guards against a vacuous pass (a wrong ROOT or folder): each package has modules and functions."""
    for folder in PACKAGES:
        paths = list((ROOT / folder).rglob("*.py"))
        assert paths, folder
        assert any(isinstance(n, ast.FunctionDef) for p in paths for n in ast.walk(ast.parse(p.read_text(), str(p)))), (
            folder
        )
