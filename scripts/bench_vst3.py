"""Rendering through a VST3 instrument (default: the test instrument): prints JSON.

- renders/s with 1 and 2 worker processes (synthmatch dataset render, store logmel, one plugin per
  process) and the scaling between them (goal >= 1.8x), for each reset mode (training.synths.vst3:
  "auto" resets the plugin in place once verified, "reinstantiate" re-creates it per render);
- per render and reset mode, where the time goes: the plugin-path overhead (parameter setting, the
  pedalboard call with its MIDI conversion and reset, mix-down, soxr resampling) beside the plugin's own
  processing, estimated from pedalboard calls of 2, 4 and 8 s (per-second cost = slope, fixed cost =
  intercept);
- the load the machine was under (load average before and after), since the figures depend on it;
- bytes per example and the time and disk per million examples on this machine.

    .venv/bin/python scripts/bench_vst3.py [--plugin build/plugins/SMTest.vst3 --profile smtest]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.training.data.shardrender import render_dataset
from synthmatch.training.synths import SynthSpec
from synthmatch.training.synths import profile as profile_mod
from synthmatch.training.synths.sampling import sample_params
from synthmatch.training.synths.vst3 import Vst3Synth


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def with_reset(c, profile: str, reset: str, folder: str) -> str:
    """A copy of the profile file with [render] reset = `reset` (workers load profiles from files)."""
    prof = profile_mod.load(profile, c)
    if prof.render.reset == reset:
        return prof.source
    path = Path(folder) / f"{prof.name}-{reset}.toml"
    text = Path(prof.source).read_text()
    if "reset =" in text:
        raise SystemExit(f"{prof.source} sets [render] reset itself; pass a profile without it")
    path.write_text(text + ("\n" if "[render]" in text else "\n[render]\n") + f'reset = "{reset}"\n')
    return str(path)


def breakdown(c, plugin: str, profile: str, n: int = 30) -> dict:
    """Per-render milliseconds of each stage, in one process."""
    s = Vst3Synth(plugin, c, profile)
    p = sample_params(c, 0, range(n), s.sampling)
    s.render(p[:1])  # chooses the reset mode
    r = s.profile.render
    raw = _median_time(lambda: [s.raw_values(x) for x in p], 3) / n
    full = _median_time(lambda: s.render(p), 3) / n
    audio = [s.process(x) for x in p]
    process = _median_time(lambda: [s.process(x) for x in p], 3) / n
    post = _median_time(lambda: [s.to_contract(a) for a in audio], 3) / n
    durations = (2.0, 4.0, 8.0)  # pedalboard calls of several lengths: cost = fixed + per_second * d
    costs = []
    for d in durations:
        costs.append(
            _median_time(
                lambda: [
                    s.plugin.process(
                        s._midi,
                        duration=d,
                        sample_rate=r.sample_rate,
                        num_channels=r.channels,
                        buffer_size=r.block_size,
                        reset=True,
                    )
                    for _ in range(10)
                ],
                3,
            )
            / 10
        )
    per_second, fixed = np.polyfit(durations, costs, 1)
    dsp = per_second * c.audio.duration_s
    return {
        "render_ms": round(full * 1e3, 3),
        "plugin_call_ms": round(process * 1e3, 3),
        "plugin_processing_ms_est": round(dsp * 1e3, 3),
        "pedalboard_fixed_ms_per_call_est": round(fixed * 1e3, 3),
        "param_mapping_ms": round(raw * 1e3, 3),
        "mixdown_resample_ms": round(post * 1e3, 3),
        "overhead_ms": round((full - dsp) * 1e3, 3),
        "overhead_share": round((full - dsp) / full, 3),
        "native_rate": r.sample_rate,
        "block_size": r.block_size,
        "reset_mode": s.reset_mode,
        "x_realtime_one_core": round(c.audio.duration_s / full, 1),
    }


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)  # finished (reaped) worker processes
    return r.ru_utime + r.ru_stime


def _render_wall(c, spec: SynthSpec, workers: int, count: int, shard_size: int) -> tuple[float, float, dict]:
    """(wall s, CPU s of the worker processes, summary) of one dataset render."""
    with tempfile.TemporaryDirectory() as d:
        t, cpu = time.perf_counter(), _children_cpu()
        s = render_dataset(c, d, count, seed=1, workers=workers, shard_size=shard_size, progress=False, synth=spec)
        return time.perf_counter() - t, _children_cpu() - cpu, s


def throughput(c, plugin: str, profile: str, workers: int, count: int) -> dict:
    """renders/s of `synthmatch dataset render` (store logmel: render + log-mel per example), whole run
    and steady state: the run's wall time less that of a run of one example per worker (start-up:
    the parent's plugin check, spawning workers that import torch and load the plugin). Also the
    workers' CPU time per render (less start-up), which a loaded machine changes far less than wall
    time: equal at 1 and 2 workers means the workers do not slow each other down, so 2 free cores
    give 2x."""
    spec = SynthSpec("vst3", plugin, profile)
    startup, startup_cpu, _ = _render_wall(c, spec, workers, workers, 1)
    wall, cpu, s = _render_wall(c, spec, workers, count, count // (2 * workers))
    return {
        "workers": workers,
        "count": count,
        "seconds": round(wall, 2),
        "startup_s": round(startup, 2),
        "worker_cpu_ms_per_render": round((cpu - startup_cpu) / count * 1e3, 3),
        "renders_per_s": round(count / wall, 1),
        "steady_renders_per_s": round(count / max(wall - startup, 1e-9), 1),
        "bytes_per_example": s["bytes_per_example"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plugin", default="build/plugins/SMTest.vst3")
    ap.add_argument("--profile", default="smtest")
    ap.add_argument("--count", type=int, default=2048, help="examples per throughput run (default 2048)")
    ap.add_argument("--resets", default="auto,reinstantiate", help="reset modes to measure (default both)")
    args = ap.parse_args()
    c = contract_mod.default()
    load_before = os.getloadavg()
    out: dict = {"plugin": args.plugin, "profile": args.profile, "cpus": os.cpu_count(), "goal_scaling": 1.8}
    with tempfile.TemporaryDirectory() as folder:
        for reset in args.resets.split(","):
            profile = with_reset(c, args.profile, reset, folder)
            runs = [throughput(c, args.plugin, profile, w, args.count) for w in (1, 2)]
            one, two = runs[0]["steady_renders_per_s"], runs[1]["steady_renders_per_s"]
            out[reset] = {
                "throughput": runs,
                "scaling_1_to_2": round(two / one, 2),
                "scaling_1_to_2_whole_run": round(runs[1]["renders_per_s"] / runs[0]["renders_per_s"], 2),
                "cpu_per_render_1_over_2": round(
                    runs[0]["worker_cpu_ms_per_render"] / runs[1]["worker_cpu_ms_per_render"], 3
                ),
                "per_render": breakdown(c, args.plugin, profile),
                "per_million": {
                    "core_hours": round(1e6 / one / 3600, 2),
                    "logmel_GB": round(runs[0]["bytes_per_example"] * 1e6 / 1e9, 1),
                },
            }
    out["loadavg_1min_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
