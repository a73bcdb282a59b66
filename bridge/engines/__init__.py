"""The inference seam: an exported model file in, a backend that maps audio windows to 16 parameters out.

    engine = load_engine("models/default.onnx", backend="auto", contract=c)
    params = engine.infer(audio)   # (B, num_samples) float32 -> (B, 16) float32 in [0, 1]
    params, extras = engine.infer_full(audio)   # + {"pitch_top": (B, 3, 3), "pitch_prob": ...} or {}
    engine.close()

Backends (`BACKENDS`, in the order "auto" tries them):
- "tensorrt"    bridge/engines/tensorrt.py: an fp16 TensorRT 10/11 engine built from the ONNX file and cached on
                disk (bridge/engines/tensorrt_build.py).
- "tensorrt-rtx" the same backend on TensorRT-RTX (PyPI, RTX-class GPUs): an fp32 engine, built ahead of time
                (`synthmatch engine build`) or at start, specialised to the GPU by its JIT.
- "cuda"        bridge/engines/cuda.py: the torch model on the GPU in fp16 (or bf16) with CUDA-graph replay;
                runs the torch.export program export writes beside the ONNX file (model.onnx -> model.pt2).
- "onnxruntime" bridge/engines/ort.py: ONNX Runtime on the CPU, fp32. Always available; the reference.

"auto" takes the first that opens and passes the load check, and logs exactly one line naming the choice and
why the ones before it were skipped (missing: INFO; failed to build or to check: WARNING). The load check
(`_probe`) runs a silent window on every backend and, on the reduced-precision ones (all but onnxruntime),
a loud tone too: that is where precision faults show (bf16 NaN from oneDNN on AMX CPUs, say). An
explicitly named backend that is missing or fails raises BackendError. The seam itself (Engine, errors) is
engines/base.py. Nothing here imports torch or a backend's library until that backend is opened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from synthmatch.bridge.core.contract import Contract
from synthmatch.bridge.core.modelfile import ContractMismatch, ModelError, ModelMeta, check_contract, read_meta
from synthmatch.bridge.engines.base import (
    MAX_BATCH,
    BackendError,
    BackendUnavailable,
    Engine,
    ModelOutputError,
    default_cache_dir,
    nvidia_driver_absent,
    output_problem,
)

__all__ = [
    "BACKENDS",
    "MAX_BATCH",
    "Engine",
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


# ------------------------------------------------------------------------------------------------
# Backend openers: (path, meta, options) -> Engine, raising BackendUnavailable when absent here.

Opener = Callable[[Path, ModelMeta], Engine]


def _open_onnxruntime(path: Path, meta: ModelMeta, threads: int | None = None, **_) -> Engine:
    from synthmatch.bridge.engines.ort import OnnxRuntimeEngine

    return OnnxRuntimeEngine(path, meta, threads=threads)


def _open_tensorrt(
    path: Path, meta: ModelMeta, cache_dir: Path | None = None, flavour: str = "tensorrt", **_
) -> Engine:
    """Either TensorRT flavour ("tensorrt", "tensorrt-rtx"): bridge/engines/tensorrt.py."""
    if nvidia_driver_absent():
        aot = " (its engines can still be built ahead of time: synthmatch engine build)" if "rtx" in flavour else ""
        raise BackendUnavailable(f"{flavour}: no NVIDIA GPU driver on this machine{aot}")
    from synthmatch.bridge.engines import tensorrt as engine_tensorrt

    return engine_tensorrt.TensorRTEngine(
        path, meta, cache_dir=cache_dir or default_cache_dir() / "tensorrt", flavour=flavour
    )


def _open_tensorrt_rtx(path: Path, meta: ModelMeta, **options) -> Engine:
    return _open_tensorrt(path, meta, **{**options, "flavour": "tensorrt-rtx"})


def _open_cuda(path: Path, meta: ModelMeta, **_) -> Engine:
    if nvidia_driver_absent():
        raise BackendUnavailable("cuda: no NVIDIA GPU driver on this machine")
    from synthmatch.bridge.engines import cuda as engine_cuda

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
    for i, (name, opener) in enumerate(candidates):
        try:
            engine = opener(path, meta)
        except BackendUnavailable as e:
            skipped.append(f"{name} unavailable: {_strip(name, e)}")
            continue
        except ModelOutputError as e:
            if i == len(candidates) - 1:  # the last resort's check fails: the model itself is unusable
                raise
            skipped.append(f"{name} failed its load check: {_strip(name, e)}")
            failed = True
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
    performance: bool = False,
) -> Engine:
    """Open an exported model on a backend ("auto" or one of BACKENDS). performance: the model is wanted
    as continuous mode's performance model (bridge.core.modelfile.check_contract), not the full one.

    contract: the contract the caller works with (default: configs/contract.toml); a model exported for
    another contract raises ContractMismatch. threads: ONNX Runtime intra-op threads (default: its own).
    cache_dir: where TensorRT engines are cached (default: default_cache_dir() / "tensorrt").
    Raises ModelError for a missing/corrupt file, BackendError when the backend cannot run the model.
    """
    path = Path(path)
    meta = read_meta(path)
    if contract is None:
        from synthmatch.bridge.core import contract as contract_mod

        contract = contract_mod.default()
    check_contract(meta, contract, performance)
    options = {"threads": threads, "cache_dir": Path(cache_dir) if cache_dir is not None else None}

    def opener(name: str) -> Opener:
        return lambda p, m: OPENERS[name](p, m, **options)

    if backend == "auto":
        return choose(path, meta, [(name, _checked(opener(name))) for name in BACKENDS])
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


def _checked(opener: Opener) -> Opener:
    return lambda p, m: _probe(opener(p, m))


def probe_windows(meta: ModelMeta, loud: bool) -> dict[str, np.ndarray]:
    """The load check's inputs, (1, num_samples) float32 each: a silent window and, if `loud`, a full-scale
    decaying sawtooth at the model's reference note (every harmonic up to Nyquist, peak 0.9)."""
    n, sr = meta.num_samples, meta.sample_rate
    windows = {"a silent window": np.zeros((1, n), np.float32)}
    if loud:
        t = np.arange(n) / sr
        f0 = 440.0 * 2.0 ** ((meta.reference_note - 69) / 12)
        saw = 2.0 * ((t * f0) % 1.0) - 1.0
        windows["a loud tone"] = (0.9 * saw * np.exp(-t / 2.0)).astype(np.float32)[None]
    return windows


def _probe(engine: Engine) -> Engine:
    """Check the outputs once at load: count (infer raises), finiteness and range, on a silent window and
    (reduced-precision backends: every one but onnxruntime, the fp32 reference) on a loud tone. A model
    that fails is closed and refused with ModelOutputError."""
    try:
        for what, window in probe_windows(engine.meta, loud=engine.name != "onnxruntime").items():
            why = output_problem(engine.infer(window))
            if why is not None:
                raise ModelOutputError(
                    f"{engine.meta.path}: on {what} {why} ({engine.name} backend); a synthmatch model outputs "
                    f"{engine.meta.num_params} normalised values in [0, 1]: re-export it with "
                    "`synthmatch export`, or try --backend onnxruntime"
                )
    except BaseException:
        engine.close()
        raise
    return engine
