"""Any note in: note detection accuracy, detection + inference latency, and what note normalisation
buys the network alone at random notes. Prints JSON.

- detection: bridge.pitch on training.notesets' lead patches (the loudest oscillator at unison; kept
  where the patch sounds at its played note) at random notes 36-84, and on FluidR3 instruments at keys
  36..84 scored against the note each sounds at (training.notesets.gm_sounding_note; notes sounding
  below f_min are left out) and against the key ("fluidr3_keys"); share within 1 semitone, and the same
  with octave errors forgiven (an organ's 16' stop puts its lowest partial an octave under the key).
  Measured (200 patches, seed 7; 141 FluidR3 notes): lead patches 99.5 % (the YIN-only tracker before:
  83.5 %), FluidR3 98.6 % (before: 98.6 %); against the keys 92.4 % (before: 92.4 %).
- latency: CPU p50 at batch 1 of detection, of inference, and of detection + note normalisation +
  inference of the raw and the normalised window as one batch of 2 (what the daemon does per window in
  its default mode "pitch"), ONNX Runtime with its default threads.
- parameter MSE of the network alone (normalised values, all 16) on contract-sampled patches:
    c4                the patches at C4 (the model's home; the reference figure)
    raw               the same patches at random notes 36-84, the C4 model on the raw input (do nothing)
    full_true_note    resampled to C4 by the played note, all parameters mapped back (bridge.notenorm)
    pitch_true_note   oscillator pitch offsets from the resampled window, the rest from the raw one
    full_/pitch_detected  the same with the detected note (the daemon's path). A note detected k semitones
                      off comes with oscillator offsets that are k semitones off too; as_heard re-expresses
                      them at the played note (offset + k, clipped): the same sound, comparable to truth.
  A random patch's note is ambiguous from its sound ((N, offsets) and (N + k, offsets - k) are one
  sound), so as_heard is the fair figure for the detected path, *_true_note for the network.

Usage: python scripts/eval_notes.py [--model models/default.onnx] [--count 512] [--patches 200]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

GM_NOTES = [36, 43, 48, 55, 60, 67, 72, 79, 84]


def detection(c, args) -> dict:
    from synthmatch.bridge.audio.pitch import PitchSettings, detect, midi_to_hz
    from synthmatch.training.data.gm import INSTRUMENTS
    from synthmatch.training.notesets import gm_notes, gm_sounding_note, lead_patches, random_notes, render_at

    notes = random_notes(args.seed, args.patches)
    audio = render_at(c, lead_patches(c, args.seed, args.patches, notes), notes)
    sets = {"synth_lead_patches": list(zip(notes.tolist(), audio))}
    if not args.no_fluidr3:
        gm = gm_notes(c, INSTRUMENTS, GM_NOTES)
        sounding = [(gm_sounding_note(name, key), w) for name, key, w in gm]
        sets["fluidr3"] = [(n, w) for n, w in sounding if midi_to_hz(n) >= PitchSettings().f_min]
        sets["fluidr3_keys"] = [(key, w) for _, key, w in gm]
    out = {}
    for name, items in sets.items():
        est = [detect(x, c.audio.sample_rate) for _, x in items]
        err = np.array([e.midi - n if e.voiced else np.inf for (n, _), e in zip(items, est)])
        finite = np.isfinite(err)  # a fallback (inf) is never within any octave
        folded = np.where(finite, np.abs((np.where(finite, err, 0) + 6) % 12 - 6), 99)
        out[name] = {
            "count": len(items),
            "within_1_semitone": round(float(np.mean(np.abs(err) <= 1)), 4),
            "within_1_semitone_any_octave": round(float(np.mean(folded <= 1)), 4),
            "fell_back": int(sum(not e.voiced for e in est)),
        }
    return out


def latency(c, engine, windows: np.ndarray, repeats: int) -> dict:
    from synthmatch.bridge.audio import notenorm
    from synthmatch.bridge.audio.pitch import detect

    sr = c.audio.sample_rate
    t_det, t_inf, t_all = [], [], []
    for _ in range(repeats):
        for w in windows:
            t0 = time.perf_counter()
            e = detect(w, sr)
            t1 = time.perf_counter()
            engine.infer(w[None])
            t2 = time.perf_counter()
            e = detect(w, sr)  # the daemon's default path: mode "pitch", raw + normalised in one batch
            x, s = notenorm.to_reference(w, e.note, c)
            raw, norm = engine.infer(np.stack([w, x]))
            notenorm.combine(raw, notenorm.from_reference(norm, s, c)[0], c, "pitch")
            t3 = time.perf_counter()
            t_det.append(t1 - t0)
            t_inf.append(t2 - t1)
            t_all.append(t3 - t2)
    p50 = lambda t: round(float(np.median(t)) * 1000, 3)  # noqa: E731
    return {
        "windows": len(t_all),
        "detect_ms_p50": p50(t_det),
        "infer_ms_p50": p50(t_inf),
        "detect_normalise_infer_batch2_ms_p50": p50(t_all),
    }


def mse_at_notes(c, engine, args) -> dict:
    from synthmatch.bridge.audio import notenorm
    from synthmatch.bridge.audio.pitch import detect
    from synthmatch.training.notesets import random_notes, render_at
    from synthmatch.training.synths.sampling import sample_params

    v = sample_params(c, args.seed + 1, range(args.count)).astype(np.float32)
    notes = random_notes(args.seed + 2, args.count)

    def predict(x):  # (N, T) windows -> (N, 16) clipped predictions, 32 at a time
        return np.clip(np.concatenate([engine.infer(b) for b in np.array_split(x, max(1, len(x) // 32))]), 0, 1)

    home = render_at(c, v, np.full(args.count, c.audio.note))
    moved = render_at(c, v, notes)
    pitch_idx = [c.names.index(f"osc{j}_pitch") for j in (1, 2, 3)]
    span = [c.params[i].max - c.params[i].min for i in pitch_idx]  # semitones per normalised unit

    def normalised(by):
        xs, ss = zip(*(notenorm.to_reference(w, n, c) for w, n in zip(moved, by)))
        pred = predict(np.stack(xs))
        back = [notenorm.from_reference(p, s, c) for p, s in zip(pred, ss)]
        return np.stack([b for b, _ in back]), sum(bool(k) for _, k in back)

    det = np.array([detect(w, c.audio.sample_rate).note for w in moved])
    raw = predict(moved)
    out = {"count": args.count, "notes": "uniform integers 36..84", "c4": None, "raw": None}
    mse = lambda p: round(float(np.mean((p - v) ** 2)), 5)  # noqa: E731
    out["c4"], out["raw"] = mse(predict(home)), mse(raw)
    clipped = {}
    for which, by in (("true_note", notes), ("detected", det)):
        back, clipped[which] = normalised(by)
        for mode in ("full", "pitch"):
            p = np.stack([notenorm.combine(r, b, c, mode) for r, b in zip(raw, back)])
            out[f"{mode}_{which}"] = mse(p)
            if which == "detected":  # same sound, offsets expressed at the played note
                heard = p.copy()
                for i, sp in zip(pitch_idx, span):
                    heard[:, i] = np.clip(heard[:, i] + (det - notes) / sp, 0, 1)
                out[f"{mode}_detected_as_heard"] = mse(heard)
    out["clipped_windows"] = clipped
    out["detected_note_exact_share"] = round(float(np.mean(det == notes)), 4)
    keys = [k for k in out if k.startswith(("raw", "full_", "pitch_"))]
    out["ratio_to_c4"] = {k: round(out[k] / out["c4"], 3) for k in keys}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/default.onnx")
    ap.add_argument("--count", type=int, default=512, help="random patches for the MSE figures")
    ap.add_argument("--patches", type=int, default=200, help="lead patches for detection accuracy")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3, help="latency: passes over 32 windows")
    ap.add_argument("--no-fluidr3", action="store_true", help="skip the FluidR3 notes (no fluidsynth)")
    args = ap.parse_args()

    from synthmatch.bridge.core import contract as contract_mod
    from synthmatch.bridge.core.modelfile import read_meta
    from synthmatch.bridge.engines import load_engine
    from synthmatch.training.notesets import random_notes, render_at
    from synthmatch.training.synths.sampling import sample_params

    c = contract_mod.default()
    meta = read_meta(args.model)
    engine = load_engine(args.model, backend="onnxruntime", contract=c)
    try:
        windows = render_at(c, sample_params(c, 99, range(32)), random_notes(98, 32))
        out = {
            "model": args.model,
            "export_id": meta.export_id,
            "model_kind": (meta.model_config or {}).get("kind"),
            "detection": detection(c, args),
            "latency": latency(c, engine, windows, args.repeats),
            "mse": mse_at_notes(c, engine, args),
        }
    finally:
        engine.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
