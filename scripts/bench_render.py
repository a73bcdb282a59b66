"""Reference-synth rendering speed: renders/s and x-realtime at batch 1 and 256, CPU (and CUDA).

Beside it, in the same run, the same 4 s signal through pedalboard's LadderFilter + Reverb as a yardstick
(pedalboard processes one signal at a time: a batch of N is N calls). Prints JSON; medians of --repeats runs.
Usage: python scripts/bench_render.py [--repeats 5] [--batches 1 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.training.synths.reference import ReferenceSynth
from synthmatch.training.synths.sampling import sample_params


def median_seconds(fn, repeats: int, sync=lambda: None) -> float:
    fn()
    sync()  # warm-up: caches, FFT plans, CUDA kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def row(what: str, device: str, batch: int, seconds: float, duration_s: float) -> dict:
    return {
        "what": what,
        "device": device,
        "batch": batch,
        "median_s": round(seconds, 5),
        "ms_per_sound": round(1000 * seconds / batch, 3),
        "renders_per_s": round(batch / seconds, 1),
        "x_realtime": round(batch * duration_s / seconds, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    args = ap.parse_args()
    c = contract_mod.default()
    synth = ReferenceSynth(c)
    dur = c.audio.duration_s
    results = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        for batch in args.batches + ([4096] if device == "cuda" else []):
            v = torch.from_numpy(sample_params(c, 0, range(batch))).to(device)
            results.append(
                row("reference_synth", device, batch, median_seconds(lambda: synth.render(v), args.repeats, sync), dur)
            )

    try:
        import pedalboard

        audio = synth.render(torch.from_numpy(sample_params(c, 0, range(1))))[0].numpy()
        board = pedalboard.Pedalboard(
            [pedalboard.LadderFilter(cutoff_hz=1000, resonance=0.5), pedalboard.Reverb(room_size=0.6, wet_level=0.4)]
        )
        for batch in args.batches:

            def run():
                for _ in range(batch):
                    board.process(audio, c.audio.sample_rate, reset=True)

            results.append(
                row(
                    "pedalboard LadderFilter+Reverb (effects only)",
                    "cpu",
                    batch,
                    median_seconds(run, args.repeats),
                    dur,
                )
            )
    except ImportError:
        results.append({"what": "pedalboard", "skipped": "pedalboard not installed"})

    print(
        json.dumps(
            {
                "benchmark": "render",
                "contract": c.hash,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(),
                "machine": platform.machine(),
                "repeats": args.repeats,
                "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                "results": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
