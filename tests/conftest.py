"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory):
    """Path of an exported "ast-tiny" model (random weights, seed 0) for the repository contract, with its
    model.pt2 (the cuda backend's program) and model.pt beside it. Exported once per test session (a few
    seconds); treat the files as read-only."""
    torch = pytest.importorskip("torch")
    from synthmatch.bridge.core import contract
    from synthmatch.training.export import export_model
    from synthmatch.training.model.models import build_model, resolve_config

    c = contract.default()
    cfg = resolve_config("ast-tiny")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(cfg, c)
    path = tmp_path_factory.mktemp("tiny_onnx") / "ast-tiny.onnx"
    export_model(model, c, path, cfg.to_dict(), {"step": 0, "note": "random weights (test fixture)"})
    return path


@pytest.fixture(scope="session")
def tiny_notes_onnx(tmp_path_factory):
    """Path of an exported small "ast-tiny-notes" model (told the note; random weights, seed 0)."""
    torch = pytest.importorskip("torch")
    from synthmatch.bridge.core import contract
    from synthmatch.training.export import export_model
    from synthmatch.training.model.models import build_model, resolve_config

    c = contract.default()
    cfg = resolve_config({"base": "ast-tiny-notes", "depth": 1, "dim": 32, "heads": 2, "head_hidden": 32})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(cfg, c)
        with torch.no_grad():
            model.note_embed.weight.mul_(30.0)  # random weights barely listen: make the note move the answer
    path = tmp_path_factory.mktemp("tiny_notes_onnx") / "ast-tiny-notes.onnx"
    export_model(model, c, path, cfg.to_dict(), {"step": 0, "note": "random weights (test fixture)"})
    return path
