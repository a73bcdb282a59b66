"""Rendering through a VST3 instrument (default: the test instrument): prints JSON.

- renders/s with 1 and 2 worker processes (synthmatch dataset render, store logmel, one plugin per
  process) and the scaling between them (goal >= 1.8x);
- per render, where the time goes: the plugin-path overhead (parameter setting, the pedalboard call
  with its MIDI conversion and reset, mix-down, soxr resampling) beside the plugin's own processing,
  estimated from pedalboard calls of 2, 4 and 8 s (per-second cost = slope, fixed cost = intercept);
- bytes per example and the time and disk per million examples on this machine.

    .venv/bin/python scripts/bench_vst3.py [--plugin build/plugins/SMTest.vst3 --profile smtest]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge import contract as contract_mod  # noqa: E402
from training.sampling import sample_params  # noqa: E402
from training.shards import render_dataset  # noqa: E402
from training.synths import SynthSpec  # noqa: E402
from training.synths.vst3 import Vst3Synth  # noqa: E402


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def breakdown(c, plugin: str, profile: str, n: int = 30) -> dict:
    """Per-render milliseconds of each stage, in one process."""
    s = Vst3Synth(plugin, c, profile)
    p = sample_params(c, 0, range(n), s.sampling)
    r = s.profile.render
    raw = _median_time(lambda: [s.raw_values(x) for x in p], 3) / n
    full = _median_time(lambda: s.render(p), 3) / n
    audio = [s.process(x) for x in p]
    process = _median_time(lambda: [s.process(x) for x in p], 3) / n
    post = _median_time(lambda: [s.to_contract(a) for a in audio], 3) / n
    durations = (2.0, 4.0, 8.0)  # pedalboard calls of several lengths: cost = fixed + per_second * d
    costs = []
    for d in durations:
        costs.append(_median_time(lambda: [s.plugin.process(s._midi, duration=d, sample_rate=r.sample_rate,
                                                            num_channels=r.channels, buffer_size=r.block_size,
                                                            reset=True) for _ in range(10)], 3) / 10)
    per_second, fixed = np.polyfit(durations, costs, 1)
    dsp = per_second * c.audio.duration_s
    return {"render_ms": round(full * 1e3, 3), "plugin_call_ms": round(process * 1e3, 3),
            "plugin_processing_ms_est": round(dsp * 1e3, 3),
            "pedalboard_fixed_ms_per_call_est": round(fixed * 1e3, 3),
            "param_mapping_ms": round(raw * 1e3, 3), "mixdown_resample_ms": round(post * 1e3, 3),
            "overhead_ms": round((full - dsp) * 1e3, 3), "overhead_share": round((full - dsp) / full, 3),
            "native_rate": r.sample_rate, "block_size": r.block_size, "x_realtime_one_core": round(c.audio.duration_s / full, 1)}


def throughput(c, plugin: str, profile: str, workers: int, count: int) -> dict:
    spec = SynthSpec("vst3", plugin, profile)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        s = render_dataset(c, d, count, seed=1, workers=workers, shard_size=count // (2 * workers),
                           progress=False, synth=spec)
        wall = time.perf_counter() - t
    return {"workers": workers, "count": count, "seconds": round(wall, 2), "renders_per_s": round(count / wall, 1),
            "bytes_per_example": s["bytes_per_example"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plugin", default="build/plugins/SMTest.vst3")
    ap.add_argument("--profile", default="smtest")
    ap.add_argument("--count", type=int, default=512, help="examples per throughput run (default 512)")
    args = ap.parse_args()
    c = contract_mod.default()
    runs = [throughput(c, args.plugin, args.profile, w, args.count) for w in (1, 2)]
    one, two = runs[0]["renders_per_s"], runs[1]["renders_per_s"]
    per_core = one
    million_s = 1e6 / per_core
    print(json.dumps({
        "plugin": args.plugin, "profile": args.profile, "cpus": os.cpu_count(),
        "throughput": runs, "scaling_1_to_2": round(two / one, 2), "goal_scaling": 1.8,
        "per_render": breakdown(c, args.plugin, args.profile),
        "per_million": {"core_hours": round(million_s / 3600, 1),
                        "logmel_GB": round(runs[0]["bytes_per_example"] * 1e6 / 1e9, 1)},
    }, indent=1))


if __name__ == "__main__":
    main()
