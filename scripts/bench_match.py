"""The live matcher's quality and time per call (bridge/match/search.py), printed as JSON.

Sets of sounds, each matched by the shipped model (ONNX Runtime) and then by the matcher at several
budgets (0 = the network's answer alone) and, with --old, by the old coordinate search over full renders
(training/refine.py, what `synthmatch match --refine-passes 3` runs):
  in-domain   the test split's random patches at C4 (training.data.onthefly.cached_split, the reference synth)
  gm-c4       General MIDI instruments from FluidR3 (fluidsynth) at C4, aligned at their onset
  gm-notes    a subset of them at notes 36..84 (the note heard by bridge.audio.pitch, as the daemon does)
Per set and method: the median multi-scale spectral distance (MSS) to the input, the share of sounds
closer than the mean patch by MSS, the median spectral convergence (SC, training.model.metrics), and the time
per call (median and p90, ms). Also the fast distance's Spearman rank correlation with the full MSS over
each sound's candidates (the network's answer moved one or two parameters at a time). The matcher gets
the pitch head's runner-up classes as extra starts (bridge/match/candidates.py) when the model exports
them, as the daemon and match do; --no-extras leaves them out.

With --daemon, also the live figure: six FluidR3 notes at C4 played through `synthmatch bridge --mode
trigger --print` in real time (not --fast), at each budget: the latency from the end of a note's window
to its snapshot handed to the outputs (the printed latency_ms), median and max.

Usage: python scripts/bench_match.py [--budgets 0,50,150,500] [--in-domain 48] [--old] [--quick] [--daemon]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from synthmatch.bridge.audio.pitch import detect
from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.engines import load_engine
from synthmatch.bridge.match.candidates import pitch_candidates
from synthmatch.bridge.match.distance import Target
from synthmatch.bridge.match.fast import FastTarget
from synthmatch.bridge.match.search import Matcher
from synthmatch.training.data.gm import INSTRUMENTS, render_gm
from synthmatch.training.match import DEFAULT_MODEL, aligned_window
from synthmatch.training.model.metrics import spectral_convergence

GM_NOTES = (36, 48, 72, 84)
GM_AT_NOTES = ("square lead", "synth bass", "warm pad", "brass section", "church organ", "flute", "violin", "oboe")


def in_domain(c, n: int) -> list[tuple[str, np.ndarray, float]]:
    from synthmatch.training.data.onthefly import cached_split

    audio, _ = cached_split(c, "test", max(n, 1))
    return [(f"test-{i}", audio[i].numpy(), float(c.audio.note)) for i in range(n)]


def gm(c, cases: list[tuple[str, int]]) -> list[tuple[str, np.ndarray, float]]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, note in cases:
            raw = render_gm(INSTRUMENTS[name], note, c.synth.note_off_s, c.audio.duration_s + 0.5, 16000, Path(tmp))
            window, _ = aligned_window(raw, c, where=name)
            out.append((f"{name}-{note}", window, float(detect(window, c.audio.sample_rate).note)))
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def rank_check(matcher: Matcher, window: np.ndarray, note: float, network: np.ndarray, rng) -> float:
    """Spearman correlation of the fast and the full distance over 48 candidates near the network's answer."""
    cand = np.repeat(network[None], 48, 0)
    for row in cand:
        k = rng.integers(16, size=rng.integers(1, 3))
        row[k] = rng.random(len(k))
    fast = FastTarget(window, matcher.synth).distance(cand, note)
    full = Target(window).distance(matcher.synth.render(cand, note))
    return spearman(fast, full)


def run_set(name, sounds, engine, matcher, budgets, old, mean_patch, c, extras: bool = True) -> dict:
    rng = np.random.default_rng(0)
    methods: dict[str, dict[str, list]] = {}
    rhos = []
    for label, window, note in sounds:
        values, found = engine.infer_full(window[None], [note])
        network = np.clip(values[0], 0, 1)
        starts = pitch_candidates(network, {k: x[0] for k, x in found.items()}, engine.meta) if extras else []
        full = Target(window)
        mean_d = full.distance(matcher.synth.render(mean_patch[None], note))[0]
        answers = {}
        for b in budgets:
            t = time.perf_counter()
            r = matcher.match(window, note, network, extra=starts, budget_ms=b)
            answers[f"budget_{b}ms"] = (r.values, time.perf_counter() - t)
        if old:
            from synthmatch.training.refine import RefineConfig, refine

            t = time.perf_counter()
            refined = refine(c, window[None], network[None], RefineConfig(passes=3))[0][0]
            answers["old_search"] = (refined, time.perf_counter() - t)
        target_t = torch.from_numpy(window[None])
        for method, (values, seconds) in answers.items():
            audio = matcher.synth.render(values[None], note)
            d = full.distance(audio)[0]
            sc = float(spectral_convergence(target_t, torch.from_numpy(audio))[0])
            m = methods.setdefault(method, {"mss": [], "closer": [], "sc": [], "ms": []})
            m["mss"].append(d)
            m["closer"].append(d < mean_d)
            m["sc"].append(sc)
            m["ms"].append(seconds * 1000)
        rhos.append(rank_check(matcher, window, note, network, rng))
        print(f"{name} {label}: " + ", ".join(f"{k} {v['mss'][-1]:.2f}" for k, v in methods.items()), file=sys.stderr)
    return {
        "sounds": len(sounds),
        "fast_vs_full_spearman_median": round(float(np.median(rhos)), 3),
        "methods": {
            k: {
                "mss_median": round(float(np.median(v["mss"])), 3),
                "mss_mean": round(float(np.mean(v["mss"])), 3),
                "closer_than_mean_patch": round(float(np.mean(v["closer"])), 3),
                "sc_median": round(float(np.median(v["sc"])), 3),
                "ms_p50": round(float(np.median(v["ms"])), 1),
                "ms_p90": round(float(np.percentile(v["ms"], 90)), 1),
            }
            for k, v in methods.items()
        },
    }


def daemon_latency(c, budgets: list[float]) -> dict:
    """Trigger snapshots through the real daemon, real time: latency_ms per budget (p50, max)."""
    import subprocess

    from synthmatch.bridge.core import audiofile

    notes = gm(c, [(n, 60) for n in ("square lead", "warm pad", "flute", "violin", "church organ", "oboe")])
    gap = np.zeros(c.audio.sample_rate, np.float32)
    x = np.concatenate([np.concatenate([w, gap]) for _, w, _ in notes])
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "notes.wav"
        audiofile.write(path, x, c.audio.sample_rate)
        for b in budgets:
            cmd = [sys.executable, "-m", "synthmatch.bridge.cli", "bridge", "--input", f"file:{path}"]
            cmd += ["--mode", "trigger", "--print", "--no-control", "--refine-budget", str(b)]
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            lat = [json.loads(ln)["latency_ms"] for ln in run.stdout.splitlines() if '"values"' in ln]
            out[f"budget_{b}ms"] = {
                "snapshots": len(lat),
                "latency_ms_p50": round(float(np.median(lat)), 1) if lat else None,
                "latency_ms_max": round(float(np.max(lat)), 1) if lat else None,
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="0,50,150,500", help="matcher budgets, ms (comma-separated)")
    ap.add_argument("--in-domain", type=int, default=48, help="sounds from the test split")
    ap.add_argument("--old", action="store_true", help="also run the old coordinate search (slow: ~3 s a sound)")
    ap.add_argument("--quick", action="store_true", help="a few sounds per set")
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--no-extras", action="store_true", help="no starts from the pitch head's runner-up classes")
    ap.add_argument("--daemon", action="store_true", help="also snapshot latency through the real-time daemon")
    args = ap.parse_args()
    torch.set_num_threads(1)
    c = contract_mod.default()
    budgets = [float(b) for b in args.budgets.split(",")]
    engine = load_engine(args.model, "onnxruntime", c)
    matcher = Matcher(c)
    matcher.warm()
    names = list(INSTRUMENTS)
    sets = {
        "in-domain": in_domain(c, 6 if args.quick else args.in_domain),
        "gm-c4": gm(c, [(n, 60) for n in (names[:4] if args.quick else names)]),
        "gm-notes": gm(c, [(n, k) for n in (GM_AT_NOTES[:2] if args.quick else GM_AT_NOTES) for k in GM_NOTES]),
    }
    extras = not args.no_extras and bool(engine.meta.extra_outputs)
    out = {"model": args.model, "budgets_ms": budgets, "cpu_threads": 1, "pitch_extras": extras, "sets": {}}
    for name, sounds in sets.items():
        out["sets"][name] = run_set(name, sounds, engine, matcher, budgets, args.old, matcher.mean, c, extras)
    if args.daemon:
        out["daemon_trigger"] = daemon_latency(c, budgets)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
