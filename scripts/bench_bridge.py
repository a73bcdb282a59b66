"""Benchmark the bridge daemon in continuous mode; prints one JSON object.

Input: a file played through the daemon at its real pace (the same ring/callback-free path a sound card
takes: 256-frame blocks written into the ring by a producer thread), 48 kHz stereo, so the mixdown and
the 48 -> 16 kHz resampler run as with a typical interface; it loops for the whole run. Output: a real
OSC sink sending UDP bundles to a local socket. Every hop produces an update (gate, deadband and rate
limit off) so the latency figures cover every inference.

Measured: end-to-end latency = block arrival in the ring -> update handed to the sink's socket
(p50/p99), inference time p50/p99, the per-update overhead (latency minus that update's inference),
CPU share of this process, input overflows (file: the producer never
drops; ring overflows = the worker fell behind), resident memory after warm-up and at the end.

    python scripts/bench_bridge.py --minutes 10 [--model models/default.onnx] [--hop 0.05]
Without --model a random-weight "ast-tiny" model is exported to a temporary folder (needs torch).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def tiny_model(folder: Path, contract) -> Path:
    import torch

    from synthmatch.training.export import export_model
    from synthmatch.training.model.models import build_model, resolve_config

    cfg = resolve_config("ast-tiny")
    torch.manual_seed(0)
    model = build_model(cfg, contract)
    path = folder / "ast-tiny.onnx"
    export_model(model, contract, path, cfg.to_dict(), {"step": 0, "note": "random weights (benchmark)"})
    return path


def test_signal(contract, seconds: float = 8.0, sr: int = 48000) -> np.ndarray:
    """Rendered notes (16 kHz reference synth) at 48 kHz stereo, one every 2 s; (frames, 2) float32."""
    import soxr
    import torch

    from synthmatch.training.synths.reference import ReferenceSynth
    from synthmatch.training.synths.sampling import sample_params

    v = torch.as_tensor(np.array(sample_params(contract, 5, np.arange(4)), dtype=np.float32))
    notes = ReferenceSynth(contract).render(v).numpy()
    x = np.zeros(int(seconds * 16000), np.float32)
    for i, a in enumerate(notes):
        s = i * 2 * 16000
        x[s : s + a.size] += a[: x.size - s]
    x = x / max(1e-6, np.abs(x).max()) * 0.5 + 1e-3 * np.random.default_rng(0).standard_normal(x.size)
    y = soxr.resample(x.astype(np.float32), 16000, sr).astype(np.float32)
    return np.stack([y, 0.8 * y], axis=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="run length (default 10)")
    ap.add_argument("--model", help="exported model (default: a random-weight ast-tiny)")
    ap.add_argument("--hop", type=float, default=0.05, help="continuous hop in seconds (default 0.05)")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds before the first memory reading")
    args = ap.parse_args()

    from synthmatch.bridge.audio.input import open_source
    from synthmatch.bridge.core import contract as contract_mod
    from synthmatch.bridge.engines import load_engine
    from synthmatch.bridge.live import config
    from synthmatch.bridge.live.daemon import Daemon
    from synthmatch.bridge.outputs import build_sinks

    c = contract_mod.default()
    tmp = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    model = Path(args.model) if args.model else tiny_model(tmp, c)
    wav = tmp / "input48k.wav"
    import soundfile as sf

    sf.write(str(wav), test_signal(c), 48000, subtype="FLOAT")
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the OSC receiver: drained by the kernel buffer
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    cfg = config.from_dict(
        {
            "mode": "continuous",
            "threads": args.threads,
            "input": {"source": f"file:{wav}", "loop": True, "blocksize": 256},
            "continuous": {"hop_s": args.hop, "deadband": 0.0, "max_rate_hz": 0.0, "gate_db": -200.0},
            "output": {"osc": {"enabled": True, "port": rx.getsockname()[1]}},
            "control": {"enabled": False},
            "log": {"status_line": False},
        },
        contract=c,
    )
    engine = load_engine(model, backend="onnxruntime", contract=c, threads=args.threads)
    sinks = build_sinks(cfg.output, c)
    source = open_source(cfg.input)
    d = Daemon(cfg, c, engine, sinks, source)
    received = 0
    t0, cpu0 = time.monotonic(), cpu_s()
    d.start()
    rss_start = None
    end = t0 + args.minutes * 60
    while time.monotonic() < end and not d.done.is_set():
        time.sleep(0.2)
        while True:
            try:
                rx.recv(65536)
                received += 1
            except BlockingIOError:
                break
        if rss_start is None and time.monotonic() - t0 >= args.warmup:
            rss_start = rss_mb()
    wall, cpu = time.monotonic() - t0, cpu_s() - cpu0
    rss_end = rss_mb()
    d.stop()
    source.stop()
    for s in sinks:
        s.close()
    k = d.counters()
    lat_p99, inf_p99 = k["latency_ms_p99"], k["infer_ms_p99"]
    report = {
        "input": "file at real pace, 48 kHz stereo, 256-frame blocks, looped (resampled to 16 kHz)",
        "model": str(model) if args.model else "ast-tiny, random weights (exported by the benchmark)",
        "backend": f"{engine.name} threads={args.threads}",
        "hop_s": args.hop,
        "minutes": round(wall / 60, 2),
        "updates": k["updates"],
        "osc_bundles_received": received,
        "latency_ms_p50": k["latency_ms_p50"],
        "latency_ms_p99": lat_p99,
        "infer_ms_p50": k["infer_ms_p50"],
        "infer_ms_p99": inf_p99,
        "latency_minus_infer_p99_ms": None if lat_p99 is None else round(lat_p99 - inf_p99, 3),
        "overhead_ms_p50": k["overhead_ms_p50"],
        "overhead_ms_p99": k["overhead_ms_p99"],
        "goal_p99_within_infer_p99_plus_3ms": None if lat_p99 is None else lat_p99 <= inf_p99 + 3.0,
        "cpu_share_of_one_core": round(cpu / wall, 3),
        "cpu_count": os.cpu_count(),
        "input_overflows": k["input_overflows"],
        "ring_overflows": k["ring_overflows"],
        "skipped_hops": k["skipped_hops"],
        "rss_mb_after_warmup": None if rss_start is None else round(rss_start, 1),
        "rss_mb_end": round(rss_end, 1),
        "rss_growth_pct": None if rss_start is None else round(100 * (rss_end - rss_start) / rss_start, 2),
    }
    engine.close()
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
