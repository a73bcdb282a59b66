"""How much of the network's distance to its targets is oscillator pitch? Prints JSON.

On the first --size sounds of the test split: the model's prediction re-rendered as is, with its three
oscillator pitches replaced by the true ones (an oracle: what a perfect pitch estimate would give),
and with all three at unison (the mean patch's pitches). Then the model's pitch error in semitones per
oscillator, split by how loud that oscillator is (its gain, in thirds): a pitch the network cannot
hear when the oscillator is quiet is expected; one it misses when the oscillator is loud is a limit of
what it resolves.

Usage: python scripts/diagnose_pitch.py [--model models/default.onnx] [--size 256]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.engines import load_engine
from synthmatch.training.data.onthefly import cached_split
from synthmatch.training.evaluate import _spectral, predict, rerender
from synthmatch.training.match import DEFAULT_MODEL

PITCHES = ("osc1_pitch", "osc2_pitch", "osc3_pitch")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--size", type=int, default=256, help="first N sounds of the test split (default 256)")
    args = ap.parse_args()

    c = contract_mod.load()
    audio, params = cached_split(c, "test", 1024)
    audio, params = torch.as_tensor(audio[: args.size]).float(), np.asarray(params[: args.size])
    engine = load_engine(args.model, backend="onnxruntime", contract=c)
    pred = predict(engine.infer, audio, 64, len(c.params))
    k = [c.names.index(n) for n in PITCHES]
    span = c.params[k[0]].max - c.params[k[0]].min  # semitones over [0, 1]

    variants = {"model": pred.copy(), "model, true pitches": pred.copy(), "model, unison pitches": pred.copy()}
    variants["model, true pitches"][:, k] = params[:, k]
    variants["model, unison pitches"][:, k] = 0.5
    out = {"model": args.model, "count": len(pred), "variants": {}, "pitch_error_semitones": {}}
    for name, x in variants.items():
        sc, msd = _spectral(audio, rerender(c, x))
        out["variants"][name] = {
            "param_mse": round(float(np.mean((x - params) ** 2)), 4),
            "sc_mean": round(float(sc.mean()), 3),
            "sc_median": round(float(np.median(sc)), 3),
            "msd_mean": round(float(msd.mean()), 3),
            "msd_median": round(float(np.median(msd)), 3),
        }
    for o, kk in zip(PITCHES, k):
        err = np.abs(pred[:, kk] - params[:, kk]) * span
        gain = params[:, c.names.index(o.replace("pitch", "gain"))]
        rows = {}
        for lo, hi, label in ((0, 1 / 3, "quiet"), (1 / 3, 2 / 3, "middle"), (2 / 3, 1.01, "loud")):
            e = err[(gain >= lo) & (gain < hi)]
            rows[label] = {
                "count": int(e.size),
                "median": round(float(np.median(e)), 1),
                "within_1": round(float(np.mean(e < 1)), 2),
                "within_3": round(float(np.mean(e < 3)), 2),
            }
        out["pitch_error_semitones"][o] = rows
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
