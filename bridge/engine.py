"""The inference seam: an exported model file in, a backend that maps audio windows to 16 parameters out.

    engine = load_engine("models/default.onnx", backend="auto", contract=c)
    params = engine.infer(audio)   # (B, num_samples) float32 -> (B, 16) float32 in [0, 1]
    engine.close()

Backends (`BACKENDS`, in the order "auto" tries them):
- "tensorrt"    bridge/engine_tensorrt.py: an fp16 TensorRT 10/11 engine built from the ONNX file, cached on disk.
- "tensorrt-rtx" the same backend on TensorRT-RTX (PyPI, RTX-class GPUs): an fp32 engine, built ahead of time
                (`synthmatch engine build`) or at start, specialised to the GPU by its JIT.
- "cuda"        bridge/engine_cuda.py: the torch model on the GPU in fp16 (or bf16) with CUDA-graph replay;
                reads the weights file export writes beside the ONNX file (model.onnx -> model.pt).
- "onnxruntime" this module: ONNX Runtime on the CPU, fp32. Always available; the reference.

"auto" takes the first that opens and logs exactly one line naming the choice and why the ones before it
were skipped (missing: INFO; failed to build: WARNING). An explicitly named backend that is missing or
fails raises BackendError. This module never imports torch; the GPU backends import it lazily.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from synthmatch.bridge.contract import Contract
from synthmatch.bridge.modelfile import (
    INPUT_NAME,
    NOTE_NAME,
    OUTPUT_NAME,
    ContractMismatch,
    ModelError,
    ModelMeta,
    check_contract,
    read_meta,
)

__all__ = [
    "BACKENDS",
    "Engine",
    "OnnxRuntimeEngine",
    "BackendError",
    "BackendUnavailable",
    "ModelError",
    "ContractMismatch",
    "ModelMeta",
    "ModelOutputError",
    "load_engine",
    "default_cache_dir",
    "output_problem",
]

log = logging.getLogger("synthmatch.engine")

BACKENDS = ("tensorrt", "tensorrt-rtx", "cuda", "onnxruntime")
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
        audio = np.asarray(audio)
        n = self.meta.num_samples
        if audio.ndim != 2 or audio.shape[1] != n:
            raise ValueError(f"{self.name} engine: audio must have shape (batch, {n}), got {audio.shape}")
        if audio.shape[0] == 0:
            return np.zeros((0, self.meta.num_params), np.float32)
        played = None
        if self.meta.takes_note:
            played = np.broadcast_to(
                np.asarray(self.meta.reference_note if notes is None else notes, np.float32), (audio.shape[0],)
            ).copy()
            if not np.all(np.isfinite(played)) or played.min() < 0 or played.max() > 127:
                raise ValueError(f"{self.name} engine: notes must be MIDI notes 0..127, got {played}")
        out = np.asarray(self._run(np.ascontiguousarray(audio, dtype=np.float32), played), dtype=np.float32)
        if out.shape != (audio.shape[0], self.meta.num_params):
            raise ModelOutputError(
                f"{self.meta.path}: the model outputs shape {tuple(out.shape)} for {audio.shape[0]} window(s); "
                f"the contract has {self.meta.num_params} parameters, so it must be ({audio.shape[0]}, "
                f"{self.meta.num_params}): this file is not a synthmatch export for this contract; re-export it "
                "with `synthmatch export`"
            )
        return out

    def _run(self, audio: np.ndarray, notes: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError  # notes: (B,) float32 for a model that takes them, else None

    def close(self) -> None:
        """Release sessions and device memory. Idempotent."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.meta.path} {self.detail}>"


class OnnxRuntimeEngine(Engine):
    """ONNX Runtime, CPUExecutionProvider, fp32, full graph optimisation."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, meta: ModelMeta, threads: int | None = None):
        super().__init__(meta)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        if threads is not None:
            if threads < 1:
                raise ValueError(f"onnxruntime threads must be >= 1, got {threads}")
            opts.intra_op_num_threads = threads  # 0 (default) = one per physical core
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise BackendError(
                f"{path}: ONNX Runtime could not load the model ({type(e).__name__}: {e}); "
                f"re-export it with `synthmatch export`"
            ) from None
        self.threads = threads
        self.detail = f"cpu fp32 threads={threads or 'default'}"

    def _run(self, audio: np.ndarray, notes: np.ndarray | None) -> np.ndarray:
        feed = {INPUT_NAME: audio} if notes is None else {INPUT_NAME: audio, NOTE_NAME: notes}
        return self._session.run([OUTPUT_NAME], feed)[0]

    def close(self) -> None:
        self._session = None


# ------------------------------------------------------------------------------------------------
# Backend openers: (path, meta, options) -> Engine, raising BackendUnavailable when absent here.

Opener = Callable[[Path, ModelMeta], Engine]


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


def _open_onnxruntime(path: Path, meta: ModelMeta, threads: int | None = None, **_) -> Engine:
    return OnnxRuntimeEngine(path, meta, threads=threads)


def _open_tensorrt(
    path: Path, meta: ModelMeta, cache_dir: Path | None = None, flavour: str = "tensorrt", **_
) -> Engine:
    """Either TensorRT flavour ("tensorrt", "tensorrt-rtx"): bridge/engine_tensorrt.py."""
    if nvidia_driver_absent():
        aot = " (its engines can still be built ahead of time: synthmatch engine build)" if "rtx" in flavour else ""
        raise BackendUnavailable(f"{flavour}: no NVIDIA GPU driver on this machine{aot}")
    from synthmatch.bridge import engine_tensorrt

    return engine_tensorrt.TensorRTEngine(
        path, meta, cache_dir=cache_dir or default_cache_dir() / "tensorrt", flavour=flavour
    )


def _open_tensorrt_rtx(path: Path, meta: ModelMeta, **options) -> Engine:
    return _open_tensorrt(path, meta, **{**options, "flavour": "tensorrt-rtx"})


def _open_cuda(path: Path, meta: ModelMeta, **_) -> Engine:
    if nvidia_driver_absent():
        raise BackendUnavailable("cuda: no NVIDIA GPU driver on this machine")
    from synthmatch.bridge import engine_cuda

    return engine_cuda.TorchEngine(path, meta, device="cuda")


OPENERS: dict[str, Callable[..., Engine]] = {
    "tensorrt": _open_tensorrt,
    "tensorrt-rtx": _open_tensorrt_rtx,
    "cuda": _open_cuda,
    "onnxruntime": _open_onnxruntime,
}


def choose(path: Path, meta: ModelMeta, candidates: list[tuple[str, Opener]]) -> Engine:
    """Open the first candidate that works; log one line with the choice and the reasons for skipping the
    others. A candidate that is merely unavailable is skipped quietly (INFO); one that fails to build makes
    the line a WARNING. Raises BackendError when none opens."""
    skipped: list[str] = []
    failed = False
    for name, opener in candidates:
        try:
            engine = opener(path, meta)
        except BackendUnavailable as e:
            skipped.append(f"{name} unavailable: {_strip(name, e)}")
            continue
        except Exception as e:  # any build failure of an optional backend falls back; reported below
            skipped.append(f"{name} failed to build: {type(e).__name__}: {_strip(name, e)}")
            failed = True
            continue
        why = f" ({'; '.join(skipped)})" if skipped else ""
        log.log(
            logging.WARNING if failed else logging.INFO, "inference backend: %s [%s]%s", engine.name, engine.detail, why
        )
        return engine
    raise BackendError(f"{path}: no inference backend could open the model: {'; '.join(skipped)}")


def _strip(name: str, e: Exception) -> str:
    msg = str(e)
    return msg[len(name) + 2 :] if msg.startswith(f"{name}: ") else msg


def load_engine(
    path: str | Path,
    backend: str = "auto",
    contract: Contract | None = None,
    threads: int | None = None,
    cache_dir: str | Path | None = None,
) -> Engine:
    """Open an exported model on a backend ("auto" or one of BACKENDS).

    contract: the contract the caller works with (default: configs/contract.toml); a model exported for
    another contract raises ContractMismatch. threads: ONNX Runtime intra-op threads (default: its own).
    cache_dir: where TensorRT engines are cached (default: default_cache_dir() / "tensorrt").
    Raises ModelError for a missing/corrupt file, BackendError when the backend cannot run the model.
    """
    path = Path(path)
    meta = read_meta(path)
    if contract is None:
        from synthmatch.bridge import contract as contract_mod

        contract = contract_mod.default()
    check_contract(meta, contract)
    options = {"threads": threads, "cache_dir": Path(cache_dir) if cache_dir is not None else None}

    def opener(name: str) -> Opener:
        return lambda p, m: OPENERS[name](p, m, **options)

    if backend == "auto":
        return _probe(choose(path, meta, [(name, opener(name)) for name in BACKENDS]))
    if backend not in OPENERS:
        raise ValueError(f"unknown backend {backend!r}; choose auto or one of {', '.join(BACKENDS)}")
    try:
        engine = opener(backend)(path, meta)
    except BackendUnavailable as e:
        raise BackendUnavailable(f"{e}; use --backend auto to fall back, or --backend onnxruntime") from None
    except ModelError:
        raise
    except Exception as e:
        raise BackendError(
            f"{backend}: could not build an engine for {path} ({type(e).__name__}: {e}); "
            f"use --backend onnxruntime (CPU) or fix the error above"
        ) from e
    log.info("inference backend: %s [%s]", engine.name, engine.detail)
    return _probe(engine)


def _probe(engine: Engine) -> Engine:
    """Check the outputs once at load, on a silent window: count (infer raises), finiteness and range.
    A model that fails is closed and refused with ModelOutputError."""
    try:
        out = engine.infer(np.zeros((1, engine.meta.num_samples), np.float32))
        why = output_problem(out)
        if why is not None:
            raise ModelOutputError(
                f"{engine.meta.path}: on a silent window {why}; a synthmatch model outputs "
                f"{engine.meta.num_params} normalised values in [0, 1]: re-export it with "
                "`synthmatch export`"
            )
    except BaseException:
        engine.close()
        raise
    return engine
