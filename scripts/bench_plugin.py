"""CPU cost of synthmatch-synth (build/plugins/synthmatch-synth.vst3), hosted by pedalboard; JSON on stdout.

    .venv/bin/python scripts/bench_plugin.py [--plugin PATH] [--rate 48000] [--seconds 20] [--repeats 3]

Figures (median of --repeats, wall-clock time of the plugin's process calls over the audio's duration, one
thread; the plugin has one mono-legato voice, so "per voice" is the whole plugin):
  held_note_percent     a note held for the whole render, random patches, the reverb running
  idle_percent          no note: the reverb's tail has ended and the plugin only writes zeros
  automation_percent    a held note while all 16 parameters move (a CC every 5 ms): table rebuilds and
                        cross-fades on the audio thread, the limiter's gain on the worker thread (not counted)
  note_on_ms            extra time of a fresh note-on with a new patch (tables built and the limiter's
                        canonical note rendered on the audio thread)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plugin", type=Path, default=ROOT / "build" / "plugins" / "synthmatch-synth.vst3")
    ap.add_argument("--rate", type=int, default=48000, help="host sample rate, Hz")
    ap.add_argument("--seconds", type=float, default=20.0, help="audio per measurement")
    ap.add_argument("--block", type=int, default=256, help="host block size, samples")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not args.plugin.exists():
        raise SystemExit(f"bench_plugin: {args.plugin} not found; run bash scripts/build_synth_plugin.sh")
    import mido
    import pedalboard

    from synthmatch.bridge.core.contract import default

    c = default()
    plugin = pedalboard.load_plugin(str(args.plugin))
    # its reset clears its sound (training.synths.vst3 verifies this and does the same): reset in place
    # instead of re-creating the instance before every render, whose set-up is not what is measured here
    plugin._reload_type = pedalboard.ExternalPluginReloadType.ClearsAudioOnReset
    rng = np.random.default_rng(0)

    def set_patch(v):
        params = {p.name: p for p in plugin._parameters}
        for i, name in enumerate(c.names):
            params[name].raw_value = float(v[i])

    def timed(midi, seconds) -> float:
        t = time.perf_counter()
        plugin.process(
            midi, duration=seconds, sample_rate=args.rate, num_channels=2, buffer_size=args.block, reset=True
        )
        return time.perf_counter() - t

    def percent(make_midi) -> float:
        runs = []
        for _ in range(args.repeats):
            set_patch(rng.random(16))
            runs.append(timed(make_midi(), args.seconds) / args.seconds * 100)
        return float(np.median(runs))

    held = percent(lambda: [mido.Message("note_on", note=60, velocity=100, time=0.0)])
    idle = percent(lambda: [])

    def automation():
        msgs = [mido.Message("note_on", note=60, velocity=100, time=0.0)]
        for k, t in enumerate(np.arange(0.1, args.seconds, 0.005)):
            p = c.params[k % 16]
            msgs.append(mido.Message("control_change", control=p.cc, value=int(rng.integers(0, 128)), time=float(t)))
        return msgs

    moving = percent(automation)

    short = args.block / args.rate  # one block
    note_on, silent = [], []
    for _ in range(max(5, args.repeats * 3)):
        set_patch(rng.random(16))  # a new patch: no cached gain
        note_on.append(timed([mido.Message("note_on", note=60, velocity=100, time=0.0)], short))
        set_patch(rng.random(16))
        silent.append(timed([], short))
    note_on_ms = float(np.median(note_on) - np.median(silent)) * 1000

    print(
        json.dumps(
            {
                "plugin": str(args.plugin),
                "sample_rate": args.rate,
                "block": args.block,
                "seconds": args.seconds,
                "repeats": args.repeats,
                "held_note_percent": round(held, 3),
                "idle_percent": round(idle, 3),
                "automation_percent": round(moving, 3),
                "note_on_ms": round(note_on_ms, 2),
                "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
