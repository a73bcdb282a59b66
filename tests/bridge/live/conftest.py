"""Fixtures shared by the live daemon's tests: the repository's contract and the tiny model on ONNX Runtime."""

from __future__ import annotations

import pytest

from synthmatch.bridge.core import contract as contract_mod


@pytest.fixture(scope="module")
def c():
    return contract_mod.default()


@pytest.fixture(scope="module")
def engine(tiny_onnx, c):
    """The session's random-weight "ast-tiny" export on ONNX Runtime, one thread."""
    from synthmatch.bridge.engines import load_engine

    e = load_engine(tiny_onnx, backend="onnxruntime", contract=c, threads=1)
    yield e
    e.close()
