"""The dependency rule of bridge/__init__.py, checked on every import statement of the package (module level
and inside functions): each layer imports only those below it; audio, engines, match and outputs do not import
one another; training never imports live/ or the CLI (it may import core, audio, engines and match); only the
GPU engines import torch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RANK = {"core": 0, "audio": 1, "engines": 1, "match": 1, "outputs": 1, "live": 2, "cli": 3, "devices": 3}
# The reaches into training, by design:
ALLOWED = {
    ("bridge/cli.py", "synthmatch.training.commands"),  # training registers its subcommands (argparse only)
}


def _layer(module: str) -> str | None:
    """'synthmatch.bridge.audio.ring' -> 'audio'; 'synthmatch.bridge.cli' -> 'cli'; else None."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["synthmatch", "bridge"] else None


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file; `from pkg import mod` counts as pkg.mod."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _violations(folder: str, check) -> list[str]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for line, module in _imports(path):
            why = check(rel, module)
            if why and (rel, module.rsplit(".", 1)[0]) not in ALLOWED and (rel, module) not in ALLOWED:
                found.append(f"{rel}:{line} imports {module}: {why}")
    return found


def test_runtime_layers_import_only_below():
    def check(rel: str, module: str) -> str | None:
        parts = rel.split("/")
        own = parts[1] if len(parts) > 2 else parts[1].removesuffix(".py")
        if own == "__init__.py":
            return None
        if module.split(".")[0] == "torch" and own != "engines":
            return "only the GPU engines import torch (lazily, when opened)"
        if module.startswith("synthmatch.training"):
            return "the runtime does not import training"
        other = _layer(module)
        if other is None or other == own or other not in RANK:
            return None
        if RANK[other] >= RANK[own]:
            return f"{other} is not below {own}"
        return None

    assert _violations("bridge", check) == []


def test_training_imports_neither_live_nor_cli():
    def check(rel: str, module: str) -> str | None:
        layer = _layer(module)
        return f"training may not import bridge.{layer}" if layer in ("live", "cli", "devices") else None

    assert _violations("training", check) == []


@pytest.mark.parametrize("layer", ["core", "audio", "engines", "match", "outputs", "live"])
def test_every_layer_is_a_package_with_its_job_written(layer):
    init = ROOT / "bridge" / layer / "__init__.py"
    assert init.is_file() and ast.get_docstring(ast.parse(init.read_text())), f"{init} must say what the layer does"
