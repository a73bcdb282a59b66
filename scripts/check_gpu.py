"""GPU backends check: build each available one, compare with ONNX Runtime fp32, time it; prints JSON.

    python scripts/check_gpu.py [--models ast-paper] [--tol 2e-2] [--runs 3]

Run from the repository root with the package installed (pip install -e .) or PYTHONPATH=. set.
Needs torch (a CUDA build), onnx and onnxruntime; TensorRT 10/11 and TensorRT-RTX are used when
installed. No network. For each model (random weights with spread-out outputs, exported to a temporary
directory; plus models/default.onnx when it exists) and each GPU backend ("tensorrt", "tensorrt-rtx",
"cuda" in fp16, "cuda-bf16": the same torch program in bf16): build it (TensorRT rows: engine build time
and size; cuda rows: the size of the model.pt2 torch program export wrote), run 16 test
sounds through it and through ONNX Runtime fp32 on the CPU, and report the max abs difference of the 16
normalised outputs (pass: < --tol), then p50/p99 latency at batch 1 and throughput at batch 32 (medians
over --runs runs; see bench_inference.py), against the goals in GOAL_P50_MS. A backend that cannot run
here (not installed; a GPU outside TensorRT-RTX's support, such as a datacenter Hopper) is reported
with its reason under "skipped". Exit status 1 when a backend that built fails parity or errors at run
time, else 0. On a machine without an NVIDIA GPU it prints {"gpu": false, ...} and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
from bench_inference import DEFAULT_MODEL, MODELS, export_random, machine, open_backend, test_audio, time_engine

GPU_BACKENDS = ("tensorrt", "tensorrt-rtx", "cuda", "cuda-bf16")
GOAL_P50_MS = {"ast-paper": 1.0, "default": 0.3}  # batch-1 p50 goals (issue 12)


def gpu_absent_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"no CUDA GPU visible to torch {torch.__version__} (torch.cuda.is_available() is False)"
    return None


def open_gpu_backend(path: Path, backend: str, contract, cache_dir: Path):
    """(engine, None) or (None, reason); "cuda-bf16" is the cuda backend (fp16 by default) asked for bf16."""
    if backend != "cuda-bf16":
        return open_backend(path, backend, contract, None, cache_dir)
    from synthmatch.bridge.core.modelfile import ModelError, read_meta
    from synthmatch.bridge.engines.cuda import TorchEngine

    try:
        return TorchEngine(path, read_meta(path), device="cuda", precision="bf16"), None
    except ModelError as e:  # BackendUnavailable / BackendError / a stale or missing model.pt2
        return None, str(e)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="ast-paper", help=f"presets with random weights, of {','.join(MODELS)}")
    ap.add_argument("--tol", type=float, default=2e-2, help="max abs diff vs ONNX Runtime fp32 (outputs in [0, 1])")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--iters", type=int, default=200, help="batch-1 calls per run")
    ap.add_argument("--iters32", type=int, default=20, help="batch-32 calls per run")
    args = ap.parse_args(argv)

    reason = gpu_absent_reason()
    if reason:
        print(
            json.dumps(
                {
                    "gpu": False,
                    "reason": reason,
                    "machine": machine(),
                    "note": "nothing to check; GPU backends are skipped on this machine",
                },
                indent=2,
            )
        )
        return 0

    from synthmatch.bridge.core import contract as contract_mod
    from synthmatch.bridge.core.modelfile import read_meta
    from synthmatch.bridge.engines.ort import OnnxRuntimeEngine

    contract = contract_mod.default()
    audio = test_audio(contract, 16, seed=5)
    report: dict = {"gpu": True, "machine": machine(), "tolerance": args.tol, "results": []}
    failed = False
    with tempfile.TemporaryDirectory(prefix="synthmatch-gpu-") as tmp:
        models = [(name, None) for name in args.models.split(",") if name]
        if DEFAULT_MODEL.is_file():
            models.append(("default", DEFAULT_MODEL))
        for name, path in models:
            path = path or export_random(name, Path(tmp), contract)
            ref_engine = OnnxRuntimeEngine(path, read_meta(path))
            reference = ref_engine.infer(audio)
            ref_engine.close()
            for backend in GPU_BACKENDS:
                row: dict = {"model": name, "backend": backend}
                t0 = time.perf_counter()
                engine, why = open_gpu_backend(path, backend, contract, Path(tmp) / "trt")
                if engine is None:
                    report["results"].append({**row, "skipped": why})
                    continue
                row["build_s"] = round(time.perf_counter() - t0, 1)
                row["detail"] = engine.detail
                engine_file = getattr(engine, "cache_file", None)
                if engine_file is not None:
                    row["engine_mb"] = round(engine_file.stat().st_size / 1e6, 1)
                if backend.startswith("cuda"):
                    row["program_mb"] = round(path.with_suffix(".pt2").stat().st_size / 1e6, 1)
                try:
                    got = engine.infer(audio)
                    diff = float(np.abs(got - reference).max())
                    row.update(max_abs_diff=diff, output_spread=float(reference.std()), parity_ok=diff < args.tol)
                    failed |= not diff < args.tol
                    row.update(time_engine(engine, contract, args.runs, args.iters, args.iters32))
                    if name in GOAL_P50_MS:
                        row.update(goal_p50_ms=GOAL_P50_MS[name], goal_met=row["p50_ms_b1"] <= GOAL_P50_MS[name])
                except Exception as e:  # report every backend, keep going
                    row.update(error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=5))
                    failed = True
                finally:
                    engine.close()
                report["results"].append(row)
                print(json.dumps(row), file=sys.stderr)  # progress
    report["ok"] = not failed
    print(json.dumps(report, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
