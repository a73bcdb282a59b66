"""mypy over the runtime as installed (scripts/typecheck.py): every module of synthmatch.bridge, and the
TensorRT backend against both TensorRT flavours' signatures, without a GPU."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mypy", "tensorrt_stubs", "tensorrt_rtx")),
    reason="needs mypy, tensorrt-stubs and tensorrt_rtx (bash scripts/setup.sh --dev installs them)",
)
def test_runtime_type_checks():
    r = subprocess.run([sys.executable, "scripts/typecheck.py"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success: no issues found in 2 source files" in r.stdout  # the TensorRT-RTX pass ran too
