"""Ahead-of-time TensorRT engine builds: build time (median of --runs) and engine size; prints JSON.

    python scripts/bench_engine_build.py [--models default,ast-paper] [--flavour tensorrt-rtx] [--runs 3]

Run from the repository root (PYTHONPATH=. or the package installed). "default" is models/default.onnx;
any other name is a preset from training/model/models.py exported with random weights to a temporary folder
(needs torch; the full ast-paper export takes ~30 s on 2 cores and writes ~350 MB). Each run rebuilds
the engine from scratch (ensure_engine(rebuild=True)) into a temporary cache. No GPU needed for
tensorrt-rtx; "tensorrt" builds on the GPU it is for.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_inference import DEFAULT_MODEL, export_random, machine


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="default,ast-paper")
    ap.add_argument("--flavour", default="tensorrt-rtx")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)

    from synthmatch.bridge.core import contract as contract_mod
    from synthmatch.bridge.engines.tensorrt_build import ensure_engine, gpu_if_any

    report: dict = {"machine": machine(), "flavour": args.flavour, "runs": args.runs, "results": []}
    with tempfile.TemporaryDirectory(prefix="synthmatch-engine-") as tmp:
        for name in args.models.split(","):
            row: dict = {"model": name}
            if name == "default":
                path = DEFAULT_MODEL
            else:
                t0 = time.perf_counter()
                path = export_random(name, Path(tmp), contract_mod.default(), spread=False)
                row["export_s"] = round(time.perf_counter() - t0, 1)
            times, built = [], None
            for _ in range(args.runs):
                built = ensure_engine(path, args.flavour, cache_dir=Path(tmp) / "cache", rebuild=True, gpu=gpu_if_any())
                times.append(built.build_s or 0.0)
            assert built is not None
            row.update(
                onnx_mb=round(path.stat().st_size / 1e6, 1),
                engine_mb=round(built.size / 1e6, 1),
                build_s_median=round(statistics.median(times), 2),
                build_s=[round(t, 2) for t in times],
                flavour_version=built.spec.flavour_version,
                precision=built.spec.precision,
            )
            report["results"].append(row)
            print(json.dumps(row), file=sys.stderr)  # progress
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
