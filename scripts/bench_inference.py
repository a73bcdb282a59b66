"""Inference latency and throughput of every available backend, for each model size; prints JSON.

    python scripts/bench_inference.py [--models ast-tiny,ast-small,ast-paper] [--backends auto-list]
                                      [--runs 3] [--iters 30] [--threads N]

For each model (random weights, exported to a temporary directory; plus models/default.onnx when it
exists) and each backend that opens here (onnxruntime always; cuda and tensorrt with an NVIDIA GPU):
p50 and p99 latency of one 4 s window (batch 1) and throughput at batch 32 (windows per second).
Each run times `--iters` batch-1 calls and `--iters32` batch-32 calls after a warm-up; the figures are
medians over `--runs` runs. Timings include the host<->device copies (what the daemon pays).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "models" / "default.onnx"
MODELS = ("ast-tiny", "ast-small", "ast-paper")


def test_audio(contract, batch: int, seed: int = 0) -> np.ndarray:
    """(batch, num_samples) float32: decaying harmonic tones at different pitches with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(contract.audio.num_samples) / contract.audio.sample_rate
    f0 = 55.0 * 2 ** (rng.uniform(0, 5, batch))[:, None]
    tone = sum(np.sin(2 * np.pi * f0 * k * t[None]) / k for k in range(1, 8)) * np.exp(
        -rng.uniform(0.2, 3, (batch, 1)) * t
    )
    return (0.3 * tone + 0.01 * rng.standard_normal((batch, t.size))).astype(np.float32)


def export_random(name: str, out_dir: Path, contract, spread: bool = True, seed: int = 0) -> Path:
    """Export preset `name` with random weights to out_dir/name.onnx (+ .pt2 and .pt). With `spread`, the last linear
    layer is rescaled so outputs cover [0, 1] (logit std ~2) instead of all sitting near 0.5: parity
    checks then compare outputs that differ. Returns the ONNX path."""
    import torch
    from torch import nn

    from synthmatch.training.export import export_model
    from synthmatch.training.model.models import build_model, resolve_config

    cfg = resolve_config(name)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(cfg, contract).eval()
    if spread:
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        with torch.no_grad():
            y = model(torch.from_numpy(test_audio(contract, 4, seed=99))).clamp(1e-6, 1 - 1e-6)
            scale = 2.0 / float(torch.logit(y).std().clamp_min(1e-6))
            last.weight.mul_(scale), last.bias.mul_(scale)
    path = out_dir / f"{name}.onnx"
    export_model(model, contract, path, cfg.to_dict(), {"note": "random weights (benchmark)"}, check=False)
    return path


def time_engine(engine, contract, runs: int, iters: int, iters32: int, batch: int = 32) -> dict:
    """Median over runs of: p50/p99 batch-1 latency (ms) and batch-`batch` throughput (windows/s)."""
    one, many = test_audio(contract, 1, seed=1), test_audio(contract, batch, seed=2)
    engine.infer(one), engine.infer(many)  # warm-up (CUDA graphs are captured per batch size here)
    p50s, p99s, thr = [], [], []
    for _ in range(runs):
        lat = []
        for _ in range(iters):
            t0 = time.perf_counter()
            engine.infer(one)
            lat.append((time.perf_counter() - t0) * 1e3)
        p50s.append(float(np.percentile(lat, 50)))
        p99s.append(float(np.percentile(lat, 99)))
        t0 = time.perf_counter()
        for _ in range(iters32):
            engine.infer(many)
        thr.append(batch * iters32 / (time.perf_counter() - t0))
    return {
        "p50_ms_b1": round(statistics.median(p50s), 3),
        "p99_ms_b1": round(statistics.median(p99s), 3),
        f"throughput_b{batch}_per_s": round(statistics.median(thr), 1),
        "runs": runs,
        "iters_b1": iters,
        "iters_b32": iters32,
    }


def open_backend(path: Path, backend: str, contract, threads: int | None, cache_dir: Path):
    """(engine, None) or (None, reason) for one explicitly named backend."""
    from synthmatch.bridge.core.modelfile import ModelError
    from synthmatch.bridge.engines import load_engine

    try:
        return load_engine(path, backend, contract=contract, threads=threads, cache_dir=cache_dir), None
    except ModelError as e:  # BackendUnavailable / BackendError: report and go on
        return None, str(e)


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated presets (random weights)")
    ap.add_argument("--backends", default="tensorrt,tensorrt-rtx,cuda,onnxruntime")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--iters", type=int, default=30, help="batch-1 calls per run")
    ap.add_argument("--iters32", type=int, default=2, help="batch-32 calls per run")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: its own)")
    ap.add_argument("--no-default", action="store_true", help="skip models/default.onnx")
    args = ap.parse_args(argv)

    from synthmatch.bridge.core import contract as contract_mod

    contract = contract_mod.default()
    report: dict = {"machine": machine(), "results": []}
    with tempfile.TemporaryDirectory(prefix="synthmatch-bench-") as tmp:
        models = [(name, None) for name in args.models.split(",") if name]
        if DEFAULT_MODEL.is_file() and not args.no_default:
            models.append(("default", DEFAULT_MODEL))
        for name, path in models:
            t0 = time.perf_counter()
            path = path or export_random(name, Path(tmp), contract)
            export_s = time.perf_counter() - t0
            for backend in args.backends.split(","):
                engine, reason = open_backend(path, backend, contract, args.threads, Path(tmp) / "trt")
                row = {"model": name, "backend": backend}
                if engine is None:
                    report["results"].append({**row, "skipped": reason})
                    continue
                try:
                    row.update(
                        detail=engine.detail, **time_engine(engine, contract, args.runs, args.iters, args.iters32)
                    )
                finally:
                    engine.close()
                row["model_mb"] = round(path.stat().st_size / 1e6, 1)
                row["export_s"] = round(export_s, 1)
                report["results"].append(row)
                print(json.dumps(row), file=sys.stderr)  # progress
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
