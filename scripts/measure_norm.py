"""Measure the log-mel mean and std over random synth patches (the contract's frontend.norm_*).

Prints JSON; paste the values into configs/contract.toml only together with retraining, since they
are part of the contract hash.  Usage: python scripts/measure_norm.py [--count 4096] [--seed 7]
"""

import argparse
import json

import torch

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.training.model.frontend import LogMel
from synthmatch.training.synths.reference import ReferenceSynth
from synthmatch.training.synths.sampling import sample_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    c = contract_mod.default()
    synth, frontend = ReferenceSynth(c), LogMel(c)
    # un-normalised log-mel: undo the contract's normalisation
    total, total_sq, n = 0.0, 0.0, 0
    for start in range(0, args.count, 256):
        idx = range(start, min(start + 256, args.count))
        audio = synth.render(torch.from_numpy(sample_params(c, args.seed, idx)))
        x = frontend(audio).double() * frontend.scale + frontend.mean
        total, total_sq, n = total + x.sum().item(), total_sq + (x * x).sum().item(), n + x.numel()
    mean = total / n
    std = (total_sq / n - mean**2) ** 0.5
    print(json.dumps({"count": args.count, "seed": args.seed, "norm_mean": round(mean, 3), "norm_std": round(std, 3)}))


if __name__ == "__main__":
    main()
