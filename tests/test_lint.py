"""The house style holds: ruff's linter and formatter (configured in pyproject.toml) find nothing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["bridge", "training", "tests", "scripts", "configs", "models"]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ruff") is None, reason="needs ruff (bash scripts/setup.sh --dev installs it)"
)


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_finds_nothing(command):
    r = subprocess.run(
        [sys.executable, "-m", "ruff", *command, *PATHS], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, (
        f"ruff {' '.join(command)}: fix with `ruff check --fix` / `ruff format`\n{r.stdout}{r.stderr}"
    )
