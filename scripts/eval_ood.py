"""Out-of-domain matching: General MIDI instruments (fluidsynth + FluidR3 soundfont) played at C4, or at
other notes with --notes.

Each instrument holds C4 for the synth's note length, is rendered to 16 kHz, aligned at its onset like
any input, matched by the model, re-rendered by the reference synth, and scored against two baselines:
the mean patch (every parameter at its sampling mean) and the best of 100 random patches (an oracle
choice: the one closest to the target by spectral convergence). With --refine-passes (default 3) the
match refined by re-rendering (training.refine, what `synthmatch match` writes) is scored too.
With --notes 36,48,... every instrument plays every note; as in `synthmatch match` and the daemon,
bridge.pitch detects the note, the model is told it (a model told the note; a C4-only model ignores
it) and the match, the mean patch and the random patches are all played at the detected note
(refinement only at C4). Prints JSON (and --markdown a table).

Needs Debian's fluidsynth and fluid-soundfont-gm (scripts/setup.sh installs them).
Usage: python scripts/eval_ood.py [--model models/default.onnx] [--out-dir out/ood] [--notes 60] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from synthmatch.bridge.audio.pitch import detect
from synthmatch.bridge.core import audiofile
from synthmatch.bridge.core import contract as contract_mod
from synthmatch.training.data.gm import INSTRUMENTS, SOUNDFONT, render_gm
from synthmatch.training.match import DEFAULT_MODEL, aligned_window, predict
from synthmatch.training.model.metrics import multiscale_spectral_distance, spectral_convergence
from synthmatch.training.refine import RefineConfig, refine
from synthmatch.training.synths.reference import ReferenceSynth
from synthmatch.training.synths.sampling import mean_patch, sample_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--out-dir", default="out/ood", help="target and match WAVs go here")
    ap.add_argument("--random", type=int, default=100, help="random patches for the best-of-N baseline")
    ap.add_argument(
        "--refine-passes",
        type=int,
        default=3,
        help="also score the match refined by re-rendering, as `synthmatch match` does (0: off)",
    )
    ap.add_argument("--notes", default="60", help="comma-separated MIDI notes each instrument plays (default 60)")
    ap.add_argument("--markdown", action="store_true", help="also print a markdown table")
    args = ap.parse_args()
    notes = [int(n) for n in args.notes.split(",")]
    if notes != [60]:
        args.refine_passes = 0  # refinement re-renders at the contract's note
    if not shutil.which("fluidsynth") or not SOUNDFONT.exists():
        raise SystemExit("eval_ood: needs fluidsynth and fluid-soundfont-gm (bash scripts/setup.sh installs them)")

    c = contract_mod.default()
    sr, synth = c.audio.sample_rate, ReferenceSynth(c)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    randoms = torch.from_numpy(sample_params(c, 99, range(args.random)))
    mean = torch.from_numpy(mean_patch(c)[None])

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        targets, cases = [], [(name, program, note) for note in notes for name, program in INSTRUMENTS.items()]
        for name, program, note in cases:
            raw = render_gm(program, note, c.synth.note_off_s, c.audio.duration_s + 0.5, sr, Path(tmp))
            window, _ = aligned_window(raw, c, where=name)
            targets.append(window)
            audiofile.write(out / f"{name.replace(' ', '_')}-{note}.target.wav", window, sr)
        targets_t = torch.from_numpy(np.stack(targets))
        heard = np.array([detect(w, sr).note for w in targets], np.float64)
        values = predict(args.model, np.stack(targets), c, notes=heard.astype(np.float32))
        at = torch.from_numpy(heard)
        matched = synth.render(torch.from_numpy(values), note=at)
        mean_audio = synth.render(mean.expand(len(cases), -1).contiguous(), note=at)
        refined_audio = None
        if args.refine_passes:
            refined = refine(c, targets_t, values, RefineConfig(passes=args.refine_passes), synth=synth)[0]
            refined_audio = synth.render(torch.from_numpy(refined))
        randoms_at: dict[float, torch.Tensor] = {}
        for i, (name, program, note) in enumerate(cases):
            audiofile.write(out / f"{name.replace(' ', '_')}-{note}.match.wav", matched[i].numpy(), sr)
            target = targets_t[i : i + 1]
            if heard[i] not in randoms_at:  # the random patches at this heard note, rendered once
                randoms_at[heard[i]] = synth.render(randoms, note=float(heard[i]))
            random_audio = randoms_at[heard[i]]
            sc_random = spectral_convergence(target.expand(len(random_audio), -1), random_audio)
            best = int(torch.argmin(sc_random))
            score = lambda audio: {  # noqa: E731
                "sc": round(float(spectral_convergence(target, audio[None] if audio.dim() == 1 else audio)), 3),
                "msd": round(
                    float(multiscale_spectral_distance(target, audio[None] if audio.dim() == 1 else audio)), 3
                ),
            }
            rows.append(
                {
                    "instrument": name,
                    "program": program,
                    "note": note,
                    "heard": int(heard[i]),
                    "model": score(matched[i]),
                    "mean_patch": score(mean_audio[i]),
                    "best_of_random": score(random_audio[best]),
                }
            )
            if refined_audio is not None:
                rows[-1]["refined"] = score(refined_audio[i])
                audiofile.write(out / f"{name.replace(' ', '_')}-{note}.refined.wav", refined_audio[i].numpy(), sr)

    systems = ["model", "refined"] if args.refine_passes else ["model"]
    med = lambda key, m: float(np.median([r[key][m] for r in rows]))  # noqa: E731
    summary = {
        "cases": len(rows),
        "notes": notes,
        "heard_within_1_semitone": sum(abs(r["heard"] - r["note"]) <= 1 for r in rows),
    }
    for s in systems:
        for base in ("mean_patch", "best_of_random"):
            for m in ("sc", "msd"):
                summary[f"{s}_beats_{base}_{m}"] = sum(r[s][m] < r[base][m] for r in rows)
    summary["median"] = {
        k: {"sc": med(k, "sc"), "msd": med(k, "msd")} for k in systems + ["mean_patch", "best_of_random"]
    }
    print(
        json.dumps(
            {
                "benchmark": "ood_gm",
                "model": args.model,
                "contract": c.hash,
                "random_patches": args.random,
                "rows": rows,
                "summary": summary,
            },
            indent=1,
        )
    )
    if args.markdown:
        cols = systems + ["mean_patch", "best_of_random"]
        names = {"model": "model", "refined": "refined", "mean_patch": "mean patch", "best_of_random": "best of 100"}
        print("\n| instrument | " + " | ".join(f"{names[k]} {m}" for m in ("SC", "MSD") for k in cols) + " |")
        print("|---" * (1 + 2 * len(cols)) + "|")
        for r in rows + [{"instrument": "**median**", **summary["median"]}]:
            label = r["instrument"] + (f" {r['note']}" if "note" in r and len(notes) > 1 else "")
            print(f"| {label} | " + " | ".join(f"{r[k][m]:.3f}" for m in ("sc", "msd") for k in cols) + " |")


if __name__ == "__main__":
    main()
