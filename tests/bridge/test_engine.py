"""The inference engine: ONNX Runtime results, backend choice and fallback, the torch backend's weights
file, and a static check of the TensorRT backend against its stubs (tests/bridge/test_engine_tensorrt.py
builds real TensorRT-RTX engines)."""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.modelfile import ModelError, read_meta
from synthmatch.bridge.engines import (
    BackendError,
    BackendUnavailable,
    choose,
    load_engine,
    nvidia_driver_absent,
)
from synthmatch.bridge.engines.ort import OnnxRuntimeEngine

ROOT = Path(__file__).resolve().parents[2]
C = contract_mod.default()


def _audio(batch: int, seed: int = 0) -> np.ndarray:
    """Decaying harmonic tones at different pitches + a little noise: (batch, 64000) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(C.audio.num_samples) / C.audio.sample_rate
    rows = [
        sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * 0.3 * np.exp(-2 * t)
        + 0.01 * rng.standard_normal(t.size)
        for f0 in 110 * 2 ** (np.arange(batch) / 5)
    ]
    return np.stack(rows).astype(np.float32)


def test_onnxruntime_engine_infers(tiny_onnx):
    with load_engine(tiny_onnx, "onnxruntime", contract=C, threads=1) as engine:
        assert engine.name == "onnxruntime" and engine.meta.names == C.names
        audio = _audio(4)
        out = engine.infer(audio)
        assert out.shape == (4, 16) and out.dtype == np.float32
        assert np.all((out >= 0) & (out <= 1)) and np.all(np.isfinite(out))
        assert np.ptp(out, axis=0).max() > 1e-6  # different sounds, different predictions (random init: ~0.5)
        # batching does not change a row's result
        np.testing.assert_allclose(engine.infer(audio[2:3])[0], out[2], atol=1e-5)
        assert engine.infer(np.zeros((0, 64000), np.float32)).shape == (0, 16)
        with pytest.raises(ValueError, match=r"shape \(batch, 64000\)"):
            engine.infer(audio[:, :16000])
        with pytest.raises(ValueError):
            engine.infer(audio[0])  # 1-D: the caller must say batch 1
        # float64 input is converted
        np.testing.assert_allclose(engine.infer(audio[:1].astype(np.float64)), out[:1], atol=1e-6)


def test_torch_backend_matches_onnxruntime_on_cpu(tiny_onnx):
    """The "cuda" backend's code path (weights file -> rebuilt torch model), run on the CPU in fp32."""
    from synthmatch.bridge.engines.cuda import TorchEngine

    meta = read_meta(tiny_onnx)
    ort = OnnxRuntimeEngine(tiny_onnx, meta)
    with TorchEngine(tiny_onnx, meta, device="cpu") as torch_engine:
        assert torch_engine.precision == "fp32" and not torch_engine.use_graphs
        audio = _audio(3, seed=1)
        assert np.abs(torch_engine.infer(audio) - ort.infer(audio)).max() < 1e-4


def test_torch_backend_refuses_a_stale_weights_file(tiny_onnx, tmp_path):
    import torch

    from synthmatch.bridge.engines.cuda import TorchEngine

    model = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, model)
    meta = read_meta(model)
    with pytest.raises(BackendUnavailable, match=r"no weights file .*m\.pt"):
        TorchEngine(model, meta, device="cpu")
    w = torch.load(tiny_onnx.with_suffix(".pt"), weights_only=True)
    w["export_id"] = "0123456789abcdef"
    torch.save(w, model.with_suffix(".pt"))
    with pytest.raises(ModelError, match="do not belong to"):
        TorchEngine(model, meta, device="cpu")


def test_auto_picks_onnxruntime_here_and_logs_one_line(tiny_onnx, caplog):
    if not nvidia_driver_absent():
        pytest.skip("this machine has an NVIDIA driver: auto may pick a GPU backend")
    with caplog.at_level(logging.INFO, logger="synthmatch.engine"):
        engine = load_engine(tiny_onnx)  # default: auto, repository contract
    lines = [r for r in caplog.records if r.name == "synthmatch.engine"]
    assert engine.name == "onnxruntime" and len(lines) == 1 and lines[0].levelno == logging.INFO
    msg = lines[0].getMessage()
    assert "onnxruntime" in msg and "tensorrt unavailable" in msg and "cuda unavailable" in msg


def test_explicit_missing_backend_raises(tiny_onnx):
    if importlib.util.find_spec("tensorrt") is not None and not nvidia_driver_absent():
        pytest.skip("TensorRT and a GPU may be present")
    with pytest.raises(BackendUnavailable, match="tensorrt: .*--backend onnxruntime"):
        load_engine(tiny_onnx, "tensorrt")
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        load_engine(tiny_onnx, "gpu")


def test_fallback_when_a_backend_fails_to_build(tiny_onnx, tmp_path, caplog):
    """A backend that is present but cannot build the model falls back, with one WARNING line."""
    from synthmatch.bridge.engines import _open_onnxruntime, _open_tensorrt
    from synthmatch.bridge.engines.cuda import TorchEngine

    model = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, model)
    model.with_suffix(".pt").write_bytes(b"PK\x03\x04 not a torch file")  # damaged weights file
    meta = read_meta(model)
    candidates = [
        ("tensorrt", partial(_open_tensorrt, cache_dir=tmp_path)),
        ("cuda", partial(TorchEngine, device="cpu")),  # the torch backend, really built
        ("onnxruntime", _open_onnxruntime),
    ]
    with caplog.at_level(logging.INFO, logger="synthmatch.engine"):
        engine = choose(model, meta, candidates)
    lines = [r for r in caplog.records if r.name == "synthmatch.engine"]
    assert engine.name == "onnxruntime" and len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "cuda failed to build" in lines[0].getMessage() and "m.pt" in lines[0].getMessage()
    # nothing opens -> BackendError listing every reason
    with pytest.raises(BackendError, match="no inference backend.*cuda failed to build"):
        choose(model, meta, candidates[:2])
    # a working cuda candidate is taken before onnxruntime
    with_weights = choose(tiny_onnx, read_meta(tiny_onnx), [("cuda", partial(TorchEngine, device="cpu"))])
    assert with_weights.name == "cuda"


def test_runtime_modules_do_not_import_torch(tiny_onnx):
    code = (
        "import sys, numpy as np\n"
        "import synthmatch.bridge.engines, synthmatch.bridge.engines.tensorrt\n"
        "import synthmatch.bridge.engines.cuda, synthmatch.bridge.core.modelfile\n"
        f"e = synthmatch.bridge.engines.load_engine({str(tiny_onnx)!r}, 'onnxruntime')\n"
        "assert e.infer(np.zeros((1, 64000), np.float32)).shape == (1, 16)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mypy", "tensorrt_stubs", "tensorrt_rtx")),
    reason="needs mypy, tensorrt-stubs and tensorrt_rtx (bash scripts/setup.sh --dev installs them)",
)
def test_tensorrt_backend_type_checks_against_stubs():
    r = subprocess.run(
        [sys.executable, "scripts/typecheck_tensorrt.py"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_gpu_script_without_gpu_says_so():
    import json
    import os

    if not nvidia_driver_absent():
        pytest.skip("this machine has an NVIDIA driver: check_gpu.py would really run")
    pytest.importorskip("torch")  # without it the script's reason is that torch is missing, not the GPU
    r = subprocess.run(
        [sys.executable, "scripts/check_gpu.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["gpu"] is False and "CUDA" in report["reason"]


def test_cuda_graph_batch_buckets():
    from synthmatch.bridge.engines.cuda import graph_batch

    sizes = {b: graph_batch(b) for b in range(1, 33)}
    assert all(b <= g <= 32 and g & (g - 1) == 0 for b, g in sizes.items())
    assert set(sizes.values()) == {1, 2, 4, 8, 16, 32} and sizes[1] == 1 and sizes[17] == 32
