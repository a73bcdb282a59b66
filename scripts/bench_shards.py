"""Measure shard storage choices: bytes per example, fidelity of the model input, read speed.

For each candidate (audio float32 / float16 / int16, log-mel float16) it writes one .npy shard of
rendered examples, then reads random batches through a memory map (page cache warm, as during
training) and times (a) reading + decoding to float32 and (b) reaching the model input (log-mel:
audio stores still need the front-end). Prints JSON.  Usage: python scripts/bench_shards.py [--count 256]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.training.data.onthefly import Renderer
from synthmatch.training.data.shards import INT16_SCALE
from synthmatch.training.model.frontend import LogMel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()
    c = contract_mod.default()
    audio, _ = Renderer(c, seed=0).render(0, args.count)
    frontend = LogMel(c)
    with torch.no_grad():
        ref = torch.cat([frontend(a) for a in audio.split(64)])

    stores = {
        "audio_float32": (audio.numpy(), lambda x: x.astype(np.float32)),  # astype copies
        "audio_float16": (audio.numpy().astype(np.float16), lambda x: x.astype(np.float32)),
        "audio_int16": (
            np.clip(np.round(audio.numpy() * INT16_SCALE), -32768, 32767).astype(np.int16),
            lambda x: x.astype(np.float32) / INT16_SCALE,
        ),
        "logmel_float16": (ref.numpy().astype(np.float16), lambda x: x.astype(np.float32)),
    }
    rng = np.random.default_rng(0)
    out = {
        "benchmark": "shard_stores",
        "contract": c.hash,
        "count": args.count,
        "batch": args.batch,
        "torch_threads": torch.get_num_threads(),
        "stores": {},
    }
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        for name, (arr, decode) in stores.items():
            path = Path(tmp) / f"{name}.npy"
            np.save(path, arr)
            per_example = (path.stat().st_size - 128) / args.count  # minus the .npy header
            mm = np.load(path, mmap_mode="r")
            x = torch.from_numpy(decode(np.asarray(mm)))
            model_in = x if name.startswith("logmel") else torch.cat([frontend(a) for a in x.split(64)])
            err = (model_in - ref).abs()
            t_read = t_input = 0.0
            for _ in range(args.batches):
                idx = np.sort(rng.choice(args.count, args.batch, replace=False))
                t0 = time.perf_counter()
                xb = torch.from_numpy(decode(mm[idx]))
                t1 = time.perf_counter()
                if not name.startswith("logmel"):
                    frontend(xb)
                t2 = time.perf_counter()
                t_read, t_input = t_read + t1 - t0, t_input + t2 - t0
            n = args.batch * args.batches
            out["stores"][name] = {
                "bytes_per_example": round(per_example),
                "gb_per_million": round(per_example * 1e6 / 1e9, 1),
                "logmel_abs_err_mean": float(err.mean()),
                "logmel_abs_err_p99": float(err.flatten().quantile(0.99)),
                "logmel_abs_err_max": float(err.max()),
                "read_examples_per_s": round(n / t_read),
                "to_model_input_examples_per_s": round(n / t_input),
            }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
