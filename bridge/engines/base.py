"""The engine seam: `Engine` (a loaded model on one backend), its errors and the output check.

Every backend subclasses Engine and implements `_run` on a validated (B, num_samples) float32 batch; `infer`
checks shapes and notes on the way in and the output shape on the way out. `infer_full` also returns the
model's extra outputs (ModelMeta.extra_outputs: the pitch head's top classes) from backends that implement
`_run_full`; the others return none, and callers work without them. Imports numpy and core only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from synthmatch.bridge.core.modelfile import ModelError, ModelMeta

MAX_BATCH = 32  # GPU backends: largest batch of one launch (TensorRT profile 1..32); bigger inputs are chunked


class BackendError(ModelError):
    """A backend failed to build or run the model (the message says which and why)."""


class BackendUnavailable(BackendError):
    """A backend's dependency or hardware is absent here (TensorRT not installed, no NVIDIA GPU, ...)."""


class ModelOutputError(ModelError):
    """The model's outputs are unusable: wrong count per window, or (at load) not finite / outside [0, 1]."""


OUTPUT_TOLERANCE = 1e-3  # outputs may overshoot [0, 1] this much (fp16 rounding); callers clip them


def output_problem(values: np.ndarray) -> str | None:
    """Why model outputs ((P,) or (B, P) normalised values) cannot be used, or None when they can.

    Cheap enough for every update (16 floats: a few microseconds)."""
    finite = np.isfinite(values)
    if not finite.all():
        return f"{int(values.size - finite.sum())} of {values.size} outputs are not finite (NaN or infinity)"
    lo, hi = float(values.min()), float(values.max())
    if lo < -OUTPUT_TOLERANCE or hi > 1.0 + OUTPUT_TOLERANCE:
        return f"outputs range over {lo:.4g}..{hi:.4g}, outside the normalised [0, 1]"
    return None


class Engine:
    """One loaded model on one backend. Subclasses implement `_run` on a validated (B, num_samples) batch."""

    name = "base"

    def __init__(self, meta: ModelMeta):
        self.meta = meta
        self.detail = ""  # backend specifics for logs: threads, precision, device

    def infer(self, audio: np.ndarray, notes=None) -> np.ndarray:
        """(B, num_samples) float32 audio at meta.sample_rate [, (B,) MIDI notes played] -> (B, 16) float32
        normalised parameters. A model told the note (meta.takes_note) gets `notes` (default: the
        contract's note); a C4-only model ignores them."""
        audio, played = self._inputs(audio, notes)
        if audio.shape[0] == 0:
            return np.zeros((0, self.meta.num_params), np.float32)
        return self._values(self._run(audio, played), audio.shape[0])

    def infer_full(self, audio: np.ndarray, notes=None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """As `infer`, plus the model's extra outputs: {name: (B, rows, k) float32} for the names in
        meta.extra_outputs (graph order), or {} when the model has none or this backend cannot return
        them (then the values are infer's)."""
        audio, played = self._inputs(audio, notes)
        if audio.shape[0] == 0:
            return np.zeros((0, self.meta.num_params), np.float32), {}
        values, extras = self._run_full(audio, played) if self.meta.extra_outputs else (self._run(audio, played), {})
        b = audio.shape[0]
        out = {}
        for name, x in extras.items():
            x = np.asarray(x, dtype=np.float32)
            want = (b, *self.meta.extra_shapes.get(name, ()))
            if name not in self.meta.extra_outputs or x.shape != want:
                raise ModelOutputError(
                    f"{self.meta.path}: extra output {name!r} has shape {tuple(x.shape)}, its metadata says "
                    f"{want}; re-export the model with `synthmatch export`"
                )
            out[name] = x
        return self._values(values, b), out

    def _inputs(self, audio, notes) -> tuple[np.ndarray, np.ndarray | None]:
        """Checked (B, num_samples) float32 audio and, for a model told the note, (B,) float32 notes."""
        audio = np.asarray(audio)
        n = self.meta.num_samples
        if audio.ndim != 2 or audio.shape[1] != n:
            raise ValueError(f"{self.name} engine: audio must have shape (batch, {n}), got {audio.shape}")
        played = None
        if self.meta.takes_note and audio.shape[0]:  # an empty batch returns before its notes matter
            played = np.broadcast_to(
                np.asarray(self.meta.reference_note if notes is None else notes, np.float32), (audio.shape[0],)
            ).copy()
            if not np.all(np.isfinite(played)) or played.min() < 0 or played.max() > 127:
                raise ValueError(f"{self.name} engine: notes must be MIDI notes 0..127, got {played}")
        return np.ascontiguousarray(audio, dtype=np.float32), played

    def _values(self, out, b: int) -> np.ndarray:
        """The (b, 16) float32 values, or ModelOutputError when the model gave another shape."""
        out = np.asarray(out, dtype=np.float32)
        if out.shape != (b, self.meta.num_params):
            raise ModelOutputError(
                f"{self.meta.path}: the model outputs shape {tuple(out.shape)} for {b} window(s); "
                f"the contract has {self.meta.num_params} parameters, so it must be ({b}, "
                f"{self.meta.num_params}): this file is not a synthmatch export for this contract; re-export it "
                "with `synthmatch export`"
            )
        return out

    def _run(self, audio: np.ndarray, notes: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError  # notes: (B,) float32 for a model that takes them, else None

    def _run_full(self, audio: np.ndarray, notes: np.ndarray | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(B, 16) values and {name: (B, rows, k)} extra outputs; a backend that cannot return them keeps
        this default (values alone)."""
        return self._run(audio, notes), {}

    def close(self) -> None:
        """Release sessions and device memory. Idempotent."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.meta.path} {self.detail}>"


def default_cache_dir() -> Path:
    """Where built TensorRT engines are kept: $SYNTHMATCH_CACHE or $XDG_CACHE_HOME/synthmatch (~/.cache)."""
    if os.environ.get("SYNTHMATCH_CACHE"):
        return Path(os.environ["SYNTHMATCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "synthmatch"


def nvidia_driver_absent() -> bool:
    """True when this is Linux and no NVIDIA kernel driver is loaded: GPU backends are skipped without
    importing torch or TensorRT (which costs seconds). Elsewhere the backends probe for themselves."""
    return sys.platform.startswith("linux") and not Path("/proc/driver/nvidia/version").exists()
