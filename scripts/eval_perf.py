"""The performance model on held-note windows it never saw (issue 19), through the shipped ONNX file.

    .venv/bin/python scripts/eval_perf.py [--model models/performance.onnx] [--count 512]

Prints one JSON object:

    mse             per carried parameter and their mean, on `count` test windows (training/data/held.py's
                    windows of the test seed 2000003 at MIDI 36-84: half hold a change of timbre, labelled
                    with the new sound) beside the mean patch's (every value 0.5: what knowing nothing scores)
    held_only_mse   the same on the windows without a change
    switch_mse      on the windows with one, by the share of the window the new sound fills
    crop_spread     the model's answer on CROPS windows of one held patch (ending 1.0-2.9 s into the note,
                    the sustain): per parameter the standard deviation across crops, median over patches,
                    beside the spread of the answers across patches (what the model tells apart)
    ms_per_window   ONNX Runtime, batch 1, one thread: median of 200 calls
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.engines import load_engine
from synthmatch.bridge.live.config import DEFAULT_PERF_MODEL, resolve_path
from synthmatch.training.data.held import HeldRenderer
from synthmatch.training.data.onthefly import Renderer, split_seed

NOTES = (36, 84)
CROPS = 6
SHARE_BINS = (0.3, 0.5, 0.7, 1.0)


def infer(engine, x: np.ndarray, notes: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [engine.infer(x[i : i + 64], notes[i : i + 64].astype(np.float32)) for i in range(0, len(x), 64)]
    )


def test_windows(c, engine, count: int) -> dict:
    r = HeldRenderer(c, split_seed("test"), engine.meta.num_samples, notes=NOTES)
    x, p = r.render(0, count)
    x, p, notes = x.numpy(), p.numpy(), r.notes(0, count).numpy()
    pred = infer(engine, x, notes)
    carried = [i for i, n in enumerate(c.names) if n in engine.meta.carried]
    names = [c.names[i] for i in carried]
    err = (pred[:, carried] - p[:, carried]) ** 2
    plans = [r.crop_plan(i) for i in range(count)]
    switch = np.array([s >= 0 for _, s in plans])
    share = np.array([(e - s) / r.window_n if s >= 0 else 1.0 for e, s in plans])
    by_share = {}
    for lo, hi in zip(SHARE_BINS[:-1], SHARE_BINS[1:]):
        m = switch & (share >= lo) & (share < hi)
        by_share[f"{lo:.1f}-{hi:.1f}"] = {"n": int(m.sum()), "mse": round(float(err[m].mean()), 4) if m.any() else None}
    return {
        "count": count,
        "mse": {**{n: round(float(e), 4) for n, e in zip(names, err.mean(0))}, "mean": round(float(err.mean()), 4)},
        "mean_patch_mse": round(float(((0.5 - p[:, carried]) ** 2).mean()), 4),
        "held_only_mse": round(float(err[~switch].mean()), 4),
        "switch_mse": by_share,
    }


def crop_spread(c, engine, patches: int = 32) -> dict:
    """Answers on CROPS sustain windows of each of `patches` held test patches at their notes."""
    one = Renderer(c, split_seed("test") + 1, notes=NOTES)
    audio, _ = one.render(0, patches)
    notes = one.notes(0, patches).numpy()
    n, sr = engine.meta.num_samples, c.audio.sample_rate
    ends = np.linspace(1.0 * sr, 2.9 * sr, CROPS).astype(int)
    x = np.stack([audio[i, e - n : e].numpy() for i in range(patches) for e in ends])
    pred = infer(engine, x, np.repeat(notes, CROPS)).reshape(patches, CROPS, -1)
    carried = [i for i, name in enumerate(c.names) if name in engine.meta.carried]
    within = np.median(pred[:, :, carried].std(axis=1), axis=0)  # (13,) median over patches
    across = pred[:, :, carried].mean(axis=1).std(axis=0)  # (13,)
    return {
        "within_patch_std_median": round(float(np.median(within)), 4),
        "within_patch_std_max": round(float(within.max()), 4),
        "across_patch_std_median": round(float(np.median(across)), 4),
    }


def latency_ms(engine, c) -> float:
    x = np.random.default_rng(0).standard_normal((1, engine.meta.num_samples)).astype(np.float32) * 0.1
    note = np.array([60.0], np.float32)
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        engine.infer(x, note)
        times.append((time.perf_counter() - t0) * 1000)
    return round(float(np.median(times)), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(resolve_path(DEFAULT_PERF_MODEL)))
    ap.add_argument("--count", type=int, default=512)
    args = ap.parse_args()
    torch.set_num_threads(1)
    c = contract_mod.default()
    engine = load_engine(args.model, "onnxruntime", c, threads=1, performance=True)
    out = {
        "model": args.model,
        "window_s": engine.meta.window_s,
        "step": engine.meta.summary.get("step"),
        **test_windows(c, engine, args.count),
        "crop_spread": crop_spread(c, engine),
        "ms_per_window": latency_ms(engine, c),
    }
    engine.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
