"""Checkpoints: atomic save, safe load (`torch.load(weights_only=True)`), exact model rebuild.

A checkpoint is a plain dict of tensors and JSON-like values (no pickled classes), so it loads with
weights_only=True on any machine:

    format, version        "synthmatch-checkpoint", 1
    model_config           ModelConfig.to_dict(): enough to rebuild the architecture
    model_state            state_dict (weights; CPU tensors)
    contract_hash          the contract the model was trained with ...
    contract               ... and its hashed content, to explain a mismatch
    step                   optimizer steps done
    optimizer, scheduler   their state_dicts (or None)
    train_config           the resolved training config (dict) or None
    synth                  identity of the synth the training data came from (training.synths):
                           "reference", or a plugin's; absent in older checkpoints (= "reference")
    metrics, extra         free-form dicts of plain values
    rng                    torch / cuda / numpy / python RNG states as tensors, for exact resume

Writes go to a temporary file in the destination directory, are fsync'ed, then os.replace'd over the
target, so a crash (kill -9, power loss) leaves either the old or the new checkpoint, never half of one.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.atomic import write_atomic
from synthmatch.bridge.core.contract import Contract
from synthmatch.bridge.core.errors import UsageError
from synthmatch.training.model.models import ModelConfig, build_model
from synthmatch.training.synths import REFERENCE

FORMAT = "synthmatch-checkpoint"
VERSION = 1


class CheckpointError(UsageError):
    """A checkpoint is missing, unreadable, or belongs to another contract. The message names the file."""


# ------------------------------------------------------------------------------------------------
# RNG states as plain tensors


def rng_state() -> dict[str, Any]:
    """Every RNG a training step may touch, as tensors / ints (weights_only-loadable)."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    np_keys = np.asarray(np_keys)
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {"version": int(py_version), "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of rng_state. CUDA states are restored only if as many devices are visible."""
    torch.set_rng_state(state["torch"].cpu())  # RNG states are CPU byte tensors, whatever map_location did
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss"]))


# ------------------------------------------------------------------------------------------------
# Save / load


def _plain(x: Any, where: str) -> Any:
    """Check that x holds only weights_only-loadable values; tensors are moved to CPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, dict):
        return {k: _plain(v, f"{where}.{k}") for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v, f"{where}[{i}]") for i, v in enumerate(x))
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x.copy())
    raise TypeError(
        f"checkpoint field {where} holds a {type(x).__name__}; only tensors and plain "
        "dicts/lists/str/int/float/bool/None can be stored"
    )


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    model_config: ModelConfig,
    contract: Contract,
    step: int,
    optimizer=None,
    scheduler=None,
    train_config: dict | None = None,
    metrics: dict | None = None,
    extra: dict | None = None,
    synth: str = REFERENCE,
) -> Path:
    """Write a checkpoint atomically (tmp file in the same directory, fsync, os.replace). Returns path.
    synth: the training data's synth identity (training.synths): the trainer passes its data's
    (training.run.traindata.data_synth); the default is the reference synth, whose data is rendered on the fly."""
    path = Path(path)
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": model_config.to_dict(),
        "model_state": _unwrap(model).state_dict(),
        "contract_hash": contract.hash,
        "contract": contract.hashed_content(),
        "step": int(step),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "train_config": train_config,
        "synth": synth,
        "metrics": metrics or {},
        "extra": extra or {},
        "rng": rng_state(),
    }
    ckpt = _plain(ckpt, "checkpoint")
    return write_atomic(path, lambda f: torch.save(ckpt, f), durable=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load with weights_only=True. Missing, truncated, corrupt or foreign files raise CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupt: {e}); "
            "use another checkpoint (e.g. best.pt / last.pt) or retrain"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a synthmatch checkpoint (no format = {FORMAT!r} field)")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {ckpt.get('version')} is not supported (this code reads version {VERSION})"
        )
    return ckpt


def checkpoint_synth(ckpt: dict) -> str:
    """The synth identity a checkpoint's model was trained on ("reference" for older checkpoints)."""
    return str(ckpt.get("synth") or "reference")


def _diff(a: Any, b: Any, where: str = "") -> list[str]:
    """Keys (dotted) where two hashed-content dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            name = x.get("name") if isinstance(x, dict) else None
            out += _diff(x, y, f"{where}[{name or i}]")
        return out
    return [] if a == b else [where or "<root>"]


def check_contract(ckpt: dict, contract: Contract, path: str | Path) -> None:
    """Refuse a checkpoint trained with another contract; say what differs and what to do."""
    if ckpt["contract_hash"] == contract.hash:
        return
    keys = _diff(ckpt.get("contract", {}), contract.hashed_content())
    raise CheckpointError(
        f"{path}: trained with contract hash {ckpt['contract_hash']}, but {contract.source} has hash "
        f"{contract.hash} (differs at {', '.join(keys[:8]) or 'unknown keys'}). Either pass the contract "
        "the model was trained with (--contract), or retrain the model with this contract; "
        "predictions would not mean the same parameters otherwise"
    )


def load_model(
    path: str | Path, contract: Contract | None = None, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the exact model stored in a checkpoint, in eval mode. contract defaults to the
    repository's (configs/contract.toml); a checkpoint of another contract is refused."""
    ckpt = load_checkpoint(path, map_location)
    contract = contract if contract is not None else contract_mod.default()
    check_contract(ckpt, contract, path)
    try:
        config = ModelConfig.from_dict(ckpt["model_config"], where=f"{path}: model_config")
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: stored model config is not valid for this code ({e})") from None
    model = build_model(config, contract)
    try:
        model.load_state_dict(ckpt["model_state"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the stored model config ({e})") from None
    return model.eval(), ckpt
