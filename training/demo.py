"""`synthmatch demo`: what synthmatch does, with no audio hardware and no training.

1. The reference synth plays a random patch (target.wav).
2. `synthmatch match` hears it and re-creates it (match/params.json, match/match.wav, match/compare.png).
3. `synthmatch bridge --input file:... --fast --print` streams three notes through the live daemon and
   prints the parameter updates it would send to a synth as MIDI CC or OSC.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import numpy as np

AUDIBLE_DBFS = -24.0  # peak level a demo patch must reach: well above the daemon's onset threshold


def main(args) -> int:
    from synthmatch.bridge.core.outpaths import writable_dir

    out = writable_dir(args.out_dir, "--out-dir")  # before rendering anything
    import torch

    from synthmatch.bridge.core import audiofile
    from synthmatch.bridge.core import contract as contract_mod
    from synthmatch.training import match as match_mod
    from synthmatch.training.synths.reference import ReferenceSynth
    from synthmatch.training.synths.sampling import mean_patch, sample_params

    c = contract_mod.default()
    synth = ReferenceSynth(c)
    sr = c.audio.sample_rate

    # random patches can be near-silent (a low cutoff under a quiet mix): show three that are audible
    candidates = sample_params(c, args.seed, range(24))
    rendered = synth.render(torch.from_numpy(candidates)).numpy()
    audible = np.flatnonzero(20 * np.log10(np.abs(rendered).max(1) + 1e-12) > AUDIBLE_DBFS)[:3]
    truth, audio = candidates[audible], rendered[audible]
    audiofile.write(out / "target.wav", audio[0], sr)
    print(f"1. rendered a random patch (seed {args.seed}, example {audible[0]}) -> {out / 'target.wav'}")

    result = match_mod.match_file(out / "target.wav", contract=c)  # the matcher the live daemon uses
    (out / "match").mkdir(exist_ok=True)
    match_mod.write_match(result, out / "match", c)
    found, refinement = result.values, result.report["refinement"]
    print(f"\n2. matched it -> {out / 'match'} (params.json, match.wav, compare.png)")
    print(f"   {'parameter':<18} {'target':>7} {'match':>7}   physical target -> match")
    for p, t in zip(c.params, truth[0]):
        m = found[p.name]
        print(
            f"   {p.name:<18} {t:7.3f} {m:7.3f}   {p.to_physical(float(t)):9.4g} -> "
            f"{p.to_physical(float(m)):9.4g} {p.unit}"
        )
    mse = float(np.mean((np.array([found[n] for n in c.names]) - truth[0]) ** 2))
    model_mse = float(np.mean((np.array([refinement["model_values"][n] for n in c.names]) - truth[0]) ** 2))
    mean_mse = float(np.mean((mean_patch(c) - truth[0]) ** 2))
    print(f"   parameter MSE {mse:.4f}; the network alone {model_mse:.4f}; the mean patch {mean_mse:.4f}")
    print(
        f"   spectral distance to the target: network {refinement['distance_model']:.3f} -> matched "
        f"{refinement['distance_refined']:.3f} ({refinement['judged']} candidates judged, "
        f"{refinement['renders']} rendered, {refinement['seconds'] * 1000:.0f} ms)"
    )

    # three patches, one after another with silence between: the daemon's trigger mode sees three notes
    gap = np.zeros(sr // 2, dtype=np.float32)
    performance = np.concatenate([np.concatenate([a, gap]) for a in audio])
    audiofile.write(out / "performance.wav", performance, sr)
    cmd = [
        sys.executable,
        "-m",
        "synthmatch.bridge.cli",
        "bridge",
        "--input",
        f"file:{out / 'performance.wav'}",
        "--fast",
        "--print",
        "--mode",
        "trigger",
    ]
    print(f"\n3. streaming three notes through the daemon:\n   synthmatch {shlex.join(cmd[3:])}")
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    updates = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    for i, u in enumerate(updates):
        values = u.get("values", {})
        shown = ", ".join(f"{k}={values[k]:.2f}" for k in list(values)[:4])
        print(f"   update {i + 1}: {shown}, ... latency {u.get('latency_ms', '?')} ms")
    if run.returncode != 0 or not updates:
        print(run.stderr, file=sys.stderr)
        return run.returncode or 1
    print(
        f"\n   {len(updates)} snapshots for 3 notes. Live: synthmatch bridge --input DEVICE --midi-port NAME "
        f"(see README and docs/daw-guide.md)"
    )
    return 0
