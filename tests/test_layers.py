"""The dependency rules of bridge/__init__.py and training/__init__.py, checked on every import statement of the
packages (module level and inside functions). bridge: each layer imports only those below it; audio, engines,
match and outputs do not import one another; only the GPU engines import torch; no import cycle, inside a package
or across packages. training: synths < model < data < run < the commands on top, each importing only those below
it; no import cycle; of the runtime, core, audio, engines and match only; commands.py imports no torch and no
other training module. Neither training nor scripts/ edit sys.path; training makes no relative import and never
imports a script."""

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


def _module_of(rel: str) -> str:
    """'bridge/outputs/midi.py' -> 'synthmatch.bridge.outputs.midi'; 'bridge/outputs/__init__.py' -> '...outputs'."""
    parts = ["synthmatch", *Path(rel).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(folder: str) -> set[str]:
    return {_module_of(p.relative_to(ROOT).as_posix()) for p in (ROOT / folder).rglob("*.py")}


def _resolve(module: str, known: set[str]) -> str | None:
    """The module of `known` an import names ('synthmatch.training.run.loop.ValSet' -> '...run.loop'), or None."""
    while module and module not in known:
        module = module.rpartition(".")[0]
    return module or None


def _graph(folder: str, skip: frozenset[str] = frozenset()) -> dict[str, set[str]]:
    """module -> the modules of the same folder it imports (every import statement, module level and in
    functions; `from pkg import name` of a name that is no module counts as pkg, its __init__)."""
    known = _modules(folder)
    graph: dict[str, set[str]] = {m: set() for m in known}
    for path in (ROOT / folder).rglob("*.py"):
        own = _module_of(path.relative_to(ROOT).as_posix())
        for _, module in _imports(path):
            target = _resolve(module, known)
            if target and target != own and target not in skip:
                graph[own].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """Every cycle a depth-first walk meets, as 'a -> b -> a'."""
    state: dict[str, str] = {}
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


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


@pytest.mark.parametrize("package", ["core", "audio", "engines", "match", "outputs", "live"])
def test_no_runtime_package_has_an_import_cycle(package):
    """Among a package's own modules, its __init__ included (a factory in the package imports the modules that
    implement the seam; they import the seam's module, never the package)."""
    assert _cycles(_graph(f"bridge/{package}")) == []


def test_the_runtime_has_no_import_cycle():
    assert _cycles(_graph("bridge")) == []


@pytest.mark.parametrize("layer", ["core", "audio", "engines", "match", "outputs", "live"])
def test_every_layer_is_a_package_with_its_job_written(layer):
    init = ROOT / "bridge" / layer / "__init__.py"
    assert init.is_file() and ast.get_docstring(ast.parse(init.read_text())), f"{init} must say what the layer does"


# ------------------------------------------------------------------------------------------------
# The rule of training/__init__.py

TRAINING_RANK = {"synths": 0, "model": 1, "data": 2, "run": 3}  # and the top: the commands (rank 4)
TOP = 4
MAY_IMPORT_FROM_BRIDGE = ("core", "audio", "engines", "match")
SCRIPTS = {p.stem for p in (ROOT / "scripts").glob("*.py")}


def _training_module(rel: str) -> str:
    """'training/run/loop.py' -> 'synthmatch.training.run.loop'; 'training/synths/__init__.py' -> '...synths'."""
    return _module_of(rel)


TRAINING_MODULES = _modules("training")


def _target(module: str) -> str | None:
    """The training module an import names ('synthmatch.training.run.loop.ValSet' -> '...run.loop'), or None."""
    return _resolve(module, TRAINING_MODULES)


def _wing_rank(module: str) -> int | None:
    """synthmatch.training.<wing>... -> the wing's rank; a top module (synthmatch.training.match) -> TOP."""
    parts = module.split(".")
    if len(parts) < 3:
        return None  # synthmatch.training itself
    return TRAINING_RANK.get(parts[2], TOP)


def _training_graph() -> dict[str, set[str]]:
    return _graph("training", skip=frozenset({"synthmatch.training"}))


def test_training_wings_import_only_below():
    def check(rel: str, module: str) -> str | None:
        own = _wing_rank(_training_module(rel))
        target = _target(module)
        if own is None or target is None:
            return None
        other = _wing_rank(target)
        if other is not None and other > own:
            return f"{target} is above {_training_module(rel)} (synths < model < data < run < commands)"
        return None

    assert _violations("training", check) == []


def test_training_imports_only_core_audio_engines_and_match_of_the_runtime():
    def check(rel: str, module: str) -> str | None:
        layer = _layer(module)
        if layer is not None and layer not in MAY_IMPORT_FROM_BRIDGE:
            return f"training may import bridge.{', bridge.'.join(MAY_IMPORT_FROM_BRIDGE)} only"
        return None

    assert _violations("training", check) == []


def test_training_has_no_import_cycle():
    assert _cycles(_training_graph()) == []


def test_training_commands_register_with_argparse_only():
    """bridge/cli.py imports training/commands.py on a runtime-only install: no torch, no other training module."""
    found = [m for _, m in _imports(ROOT / "training" / "commands.py") if m.split(".")[0] == "torch" or _target(m)]
    assert found == []


def test_no_sys_path_edits_relative_imports_or_script_imports():
    """training imports the package only; scripts import it too, never one another through sys.path. Allowed:
    compare_pitch.py's --libs, a folder of third-party pitch libraries outside the virtualenv."""
    allowed = {"scripts/compare_pitch.py"}
    found = []
    for path in sorted([*(ROOT / "training").rglob("*.py"), *(ROOT / "scripts").glob("*.py")]):
        rel, tree = path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
                if rel not in allowed:
                    found.append(f"{rel}:{node.lineno} uses sys.path: import the package instead")
            if isinstance(node, ast.ImportFrom) and node.level and rel.startswith("training/"):
                found.append(f"{rel}:{node.lineno} relative import: write it absolute, so the rule sees it")
        if rel.startswith("training/"):
            found += [f"{rel}:{n} imports {m}: a script" for n, m in _imports(path) if m.split(".")[0] in SCRIPTS]
    assert found == []


@pytest.mark.parametrize("wing", [*TRAINING_RANK])
def test_every_training_wing_is_a_package_with_its_job_written(wing):
    init = ROOT / "training" / wing / "__init__.py"
    assert init.is_file() and ast.get_docstring(ast.parse(init.read_text())), f"{init} must say what the wing does"
