"""Training speed of every model preset: samples/s per precision, and the share of a step spent on data.

For each model and precision: the trainer's own step (training.run.loop.TrainStep: forward, the head's loss,
backward, clip, Adam update, schedule) on a batch rendered once and turned into front-end views once
(compute only, median of --steps timed steps after warm-up); the front-end on that batch (training.run.loop.
batch_views, as the trainer calls it); then the time to render one batch of the same size with
training.data.onthefly.OnTheFly on the same device, as the trainer does with workers = 0.
train_samples_per_s = batch / (front-end + step): the rate when data costs nothing (render workers).
data_share = (render + front-end) / (render + front-end + step): the fraction of wall time a
single-process run spends on data, as the trainer's "train" records count it.
On CUDA it also times one batch rendered on the CPU in one thread (as one DataLoader worker does) and
reports cpu_workers_needed = ceil(that / (front-end + step)): render workers (`workers` in the train
config) that keep the GPU fed without waiting.
ast-paper on the CPU runs at batch 2 and one timed step (about 10 s each). Prints JSON.

    python scripts/bench_train.py [--device cpu|cuda|auto] [--batch 16] [--steps 5] [--models ast-tiny mlp]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time

import torch

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.training.data.onthefly import OnTheFly
from synthmatch.training.model.models import MODEL_CONFIGS, build_model, count_params
from synthmatch.training.run.loop import TrainStep, batch_views


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_worker_render_s(batch: int) -> float:
    """Seconds for one CPU worker (one thread) to render a batch."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = OnTheFly(contract_mod.default(), seed=0, batch_size=batch)
        data.batch(0)
        times = []
        for s in range(1, 3):
            t = time.perf_counter()
            data.batch(s)
            times.append(time.perf_counter() - t)
        return statistics.median(times)
    finally:
        torch.set_num_threads(threads)


def _median_s(fn, device: torch.device, times: int) -> float:
    """Median wall seconds of fn() over `times` calls, waiting for the GPU after each."""
    spans = []
    for _ in range(times):
        t = time.perf_counter()
        fn()
        _sync(device)
        spans.append(time.perf_counter() - t)
    return statistics.median(spans)


def bench_model(
    name: str, device: torch.device, batch: int, steps: int, amps: list[str], worker_s: float | None = None
) -> list[dict]:
    c = contract_mod.default()
    data = OnTheFly(c, seed=0, batch_size=batch, device=device)
    first = next(iter(data))  # audio (B, T), params (B, 16), notes (B,): the batch every timed step trains on
    _sync(device)
    later = itertools.count(1)  # each timed render a new batch: steps 1, 2, ...
    render_s = _median_s(lambda: data.batch(next(later)), device, 2 if device.type == "cpu" else 5)
    rows = []
    for amp in amps:
        torch.manual_seed(0)
        model = build_model(name, c).to(device).train()
        views, target, note = batch_views(first, model, device)
        frontend_s = _median_s(lambda: batch_views(first, model, device), device, 3)
        trainer = TrainStep(model, lr=5e-5, amp="none" if amp == "fp32" else amp, grad_clip=1.0)
        for _ in range(1 if device.type == "cpu" else 3):  # warm-up
            trainer(views, target, note)
        _sync(device)
        step_s = _median_s(lambda: trainer(views, target, note), device, steps)
        data_s = render_s + frontend_s
        rows.append(
            {
                "model": name,
                "device": device.type,
                "amp": amp,
                "batch": batch,
                "params": count_params(model),
                "step_ms": round(1000 * step_s, 2),
                "frontend_ms_per_batch": round(1000 * frontend_s, 2),
                "train_samples_per_s": round(batch / (frontend_s + step_s), 1),
                "render_ms_per_batch": round(1000 * render_s, 2),
                "data_share": round(data_s / (data_s + step_s), 3),
            }
        )
        if worker_s is not None:
            rows[-1]["cpu_worker_render_ms_per_batch"] = round(1000 * worker_s, 1)
            rows[-1]["cpu_workers_needed"] = math.ceil(worker_s / (frontend_s + step_s))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    ap.add_argument("--batch", type=int, default=None, help="default 16 on the CPU, 64 on CUDA")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 3 CPU, 20 CUDA)")
    ap.add_argument("--models", nargs="+", default=list(MODEL_CONFIGS), choices=list(MODEL_CONFIGS))
    args = ap.parse_args()
    devices = (["cpu"] + (["cuda"] if torch.cuda.is_available() else [])) if args.device == "auto" else [args.device]
    results, worker_cache = [], {}
    for dev_name in devices:
        device = torch.device(dev_name)
        amps = ["fp32", "bf16"] + (["fp16"] if dev_name == "cuda" else [])
        for name in args.models:
            batch = args.batch or (16 if dev_name == "cpu" else 64)
            steps = args.steps or (3 if dev_name == "cpu" else 20)
            model_amps = amps
            if dev_name == "cpu" and name == "ast-paper":  # ~10 s per step even at batch 2
                batch, steps, model_amps = 2, 1, ["fp32"]
            worker_s = None
            if dev_name == "cuda":
                if batch not in worker_cache:
                    worker_cache[batch] = cpu_worker_render_s(batch)
                worker_s = worker_cache[batch]
            results += bench_model(name, device, batch, steps, model_amps, worker_s)
            print(json.dumps(results[-1]), flush=True, file=sys.stderr)
    info = {
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    print(json.dumps({"info": info, "results": results}, indent=1))


if __name__ == "__main__":
    main()
