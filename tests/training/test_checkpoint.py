"""Checkpoints: weights_only round trip, atomic writes, clear errors, contract checks."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.training.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    save_checkpoint,
    set_rng_state,
)
from synthmatch.training.model.models import build_model, resolve_config

C = contract_mod.default()
CFG = resolve_config({"base": "ast-tiny", "depth": 1, "dim": 32, "heads": 2, "head_hidden": 32})


def _trained(tmp_path):
    torch.manual_seed(0)
    model = build_model(CFG, C)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10))
    x = torch.randn(2, C.audio.num_samples) * 0.1
    model(x).mean().backward()
    opt.step(), sched.step()
    path = save_checkpoint(
        tmp_path / "run" / "last.pt",
        model=model,
        model_config=CFG,
        contract=C,
        step=1,
        optimizer=opt,
        scheduler=sched,
        train_config={"lr": 1e-3, "model": "x"},
        metrics={"val_loss": np.float32(0.5)},
    )
    return model, opt, path, x


def test_round_trip_weights_only(tmp_path):
    model, opt, path, x = _trained(tmp_path)
    ckpt = torch.load(path, weights_only=True)  # the file must hold plain values only
    assert ckpt["step"] == 1 and ckpt["contract_hash"] == C.hash
    assert ckpt["contract"] == C.hashed_content()
    assert ckpt["train_config"] == {"lr": 1e-3, "model": "x"} and ckpt["metrics"]["val_loss"] == 0.5
    loaded, _ = load_model(path)
    assert not loaded.training
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    opt2 = torch.optim.Adam(loaded.parameters(), lr=1e-3)
    opt2.load_state_dict(ckpt["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert list(tmp_path.joinpath("run").iterdir()) == [path]  # no temporary files left behind


def test_rng_states_restore(tmp_path):
    _, _, path, _ = _trained(tmp_path)
    ckpt = load_checkpoint(path)
    expect = (torch.rand(4), np.random.rand(3), random.random())
    set_rng_state(ckpt["rng"])
    got = (torch.rand(4), np.random.rand(3), random.random())
    assert torch.equal(expect[0], got[0]) and np.array_equal(expect[1], got[1]) and expect[2] == got[2]


def test_truncated_file_names_the_file(tmp_path):
    _, _, path, _ = _trained(tmp_path)
    bad = tmp_path / "cut.pt"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: not a readable checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match=r"missing\.pt: no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(2)}, junk)
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a synthmatch checkpoint"):
        load_checkpoint(junk)


def test_contract_mismatch_refused(tmp_path):
    _, _, path, _ = _trained(tmp_path)
    other = dataclasses.replace(C, frontend=dataclasses.replace(C.frontend, n_mels=80), source="other.toml")
    with pytest.raises(CheckpointError, match=r"frontend\.n_mels.*retrain") as e:
        load_model(path, other)
    assert str(path) in str(e.value) and "other.toml" in str(e.value)
