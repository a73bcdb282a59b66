"""Performance mode (issue 19): held sounds that switch timbre at one note, played through the daemon.

Sequences (16 kHz mono, written to --work-dir): two reference-synth patches held 6 s then 5.5 s (rendered
with bridge/match/synth.py on a long window, spliced with a 20 ms crossfade), two FluidR3 General MIDI
instruments (fluidsynth), espeak-ng vowels "a" -> "i" -> "u" (each vowel's steady middle repeated a whole
number of pitch periods). Each is played through `synthmatch bridge --input file:X --fast --print --mode
continuous` (a subprocess) and measured on the stream clock (each update's `stream_s`):

    response_s      after each switch: when the values are nearer the new stretch's than the old one's
                    (Euclidean over the 16 normalised values) and stay so to the stretch's end; the
                    reference values of a stretch are the median of what the daemon sent over its last 1.5 s
    first_update_s  the first update after the first onset
    jitter          over the last 2 s of each stretch, the largest per-parameter standard deviation of the
                    values playing (sampled every 10 ms)
    updates_per_s   updates over the sounding time
    mss             every 0.5 s of each stretch (after its first 0.5 s): the multi-scale spectral distance
                    of the input's last 0.5 s to the answer playing, rendered held at its note, and to the
                    neutral (mean) patch held at that note; closer_than_neutral is the share of points where
                    the answer wins
    cpu_share       a real-time run (not --fast) of the reference-synth sequence: the process's CPU time
                    (rusage) less a run on 0.2 s of silence (start-up: model, matcher), over the audio time

    .venv/bin/python scripts/bench_performance.py [--set continuous.hop_s=0.05 ...] [--label now]

Prints one JSON object: per sequence and the medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

from synthmatch.bridge.core import audiofile
from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.contract import sample_mean
from synthmatch.bridge.match.distance import Target
from synthmatch.bridge.match.synth import Synth
from synthmatch.training.data.gm import render_midi

SR = 16000
LEAD_S = 0.5  # silence before the first onset
FADE_S = 0.02  # crossfade at a switch
SETTLED_S = 1.5  # a stretch's reference values: the median of its last SETTLED_S
STEADY_S = 2.0  # jitter over the last STEADY_S of each stretch
MSS_S = 0.5  # the input chunk each MSS point compares


def long_synth(contract, seconds: float) -> Synth:
    """The reference synth on a window of `seconds`, the note held to its end (no release inside)."""
    audio = dataclasses.replace(contract.audio, duration_s=seconds)
    synth = dataclasses.replace(contract.synth, note_off_s=seconds - 0.05)
    return Synth(dataclasses.replace(contract, audio=audio, synth=synth))


def splice(parts: list[np.ndarray], switches: list[int]) -> np.ndarray:
    """Signals of one length; part i plays from switches[i-1] to switches[i], crossfaded over FADE_S."""
    x = parts[0].copy()
    fade = int(FADE_S * SR)
    for part, at in zip(parts[1:], switches):
        w = np.clip((np.arange(len(x)) - at + fade / 2) / fade, 0, 1).astype(np.float32)
        x = x * (1 - w) + part * w
    return x


def synth_sequence(contract, note: int) -> tuple[np.ndarray, list[float]]:
    names = list(contract.names)
    v = np.tile(np.array([sample_mean(p.sample) for p in contract.params], np.float32), (2, 1))
    set_ = lambda i, **kw: [v.__setitem__((i, names.index(k)), x) for k, x in kw.items()]  # noqa: E731
    pitch = lambda st: contract.param("osc1_pitch").to_normalised(st)  # noqa: E731
    # A: a bright saw-ish tone with a fifth above; B: a dark square an octave down with a resonant filter
    set_(0, osc1_pitch=pitch(0), osc1_position=0.66, osc1_gain=0.9, osc2_pitch=pitch(7), osc2_gain=0.4)
    set_(0, osc3_gain=0.0, filter1_cutoff=0.85, filter1_resonance=0.2, filter2_cutoff=0.05, reverb_mix=0.15)
    set_(1, osc1_pitch=pitch(-12), osc1_position=1.0, osc1_gain=0.8, osc2_gain=0.0, osc3_pitch=pitch(0))
    set_(1, osc3_position=0.5, osc3_gain=0.6, filter1_cutoff=0.45, filter1_resonance=0.7, filter2_cutoff=0.3)
    set_(1, reverb_mix=0.15)
    for i in (0, 1):
        set_(i, env_attack=0.05, env_decay=0.25)
    return held_pair(contract, v, note)


def random_pair_sequence(contract, k: int) -> tuple[np.ndarray, list[float]]:
    """Pair k of --random-pairs: the k-th pair (2j, 2j + 1) of the contract's sampling (seed 7000) whose
    sounds are both above the gate (-40 dBFS held: a silent patch is no performance), with the first's
    envelope and reverb (one performer, one room), held at a note drawn from 48-72 (seed 7000 + j)."""
    from synthmatch.bridge.audio.onset import rms_dbfs
    from synthmatch.training.synths.sampling import sample_params

    kept = [list(contract.names).index(n) for n in ("env_attack", "env_decay", "reverb_mix")]
    found = -1
    for j in range(1000):
        v = sample_params(contract, 7000, range(2 * j, 2 * j + 2)).astype(np.float32)
        v[1, kept] = v[0, kept]
        x, bounds = held_pair(contract, v, int(np.random.default_rng(7000 + j).integers(48, 73)))
        stretches = [x[int((a + 1.0) * SR) : int(b * SR)] for a, b in zip(bounds[:-1], bounds[1:])]
        found += all(rms_dbfs(s) > -40.0 for s in stretches)
        if found == k:
            return x, bounds
    raise RuntimeError("no loud pair in 1000 draws")


def held_pair(contract, v: np.ndarray, note: int) -> tuple[np.ndarray, list[float]]:
    """Patches v (2, 16) held at `note`: the first for 6 s after LEAD_S, then the second to 12 s."""
    total = 12.0
    synth = long_synth(contract, total - LEAD_S)
    a, b = synth.render(v, note)
    lead = np.zeros(int(LEAD_S * SR), np.float32)
    parts = [np.concatenate([lead, a]), np.concatenate([lead, b])]
    switch = LEAD_S + 6.0
    return splice(parts, [int(switch * SR)]), [LEAD_S, switch, total]


def gm_sequence(work: Path, programs: tuple[int, int], note: int) -> tuple[np.ndarray, list[float]]:
    import mido

    total, switch = 12.0, LEAD_S + 6.0
    parts = []
    for program in programs:
        midi = mido.MidiFile(ticks_per_beat=480)
        track = mido.MidiTrack()
        midi.tracks.append(track)
        ticks = lambda s: int(round(s / 0.5 * 480))  # noqa: E731  (tempo 500000 us per beat)
        track += [
            mido.MetaMessage("set_tempo", tempo=500000),
            mido.Message("program_change", program=program),
            mido.Message("note_on", note=note, velocity=100, time=ticks(LEAD_S)),
            mido.Message("note_off", note=note, velocity=0, time=ticks(total - LEAD_S)),
            mido.MetaMessage("end_of_track", time=ticks(0.5)),
        ]
        x = render_midi(midi, work, f"gm{program}", SR)
        parts.append(np.pad(x, (0, max(0, int(total * SR) - len(x))))[: int(total * SR)])
    return splice(parts, [int(switch * SR)]), [LEAD_S, switch, total]


def vowel_sequence(work: Path, vowels: str = "aiu", each_s: float = 4.0) -> tuple[np.ndarray, list[float]]:
    """espeak-ng's sustained phonemes, each vowel's steady middle repeated whole pitch periods."""
    parts, bounds = [], [LEAD_S]
    for k, v in enumerate(vowels):
        wav = work / f"vowel_{v}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), "-v", "en", "-s", "80", f"[[{v}:::::::::::::::]]"], check=True)
        x = audiofile.read_mono(wav, SR)
        mid = x[int(0.25 * SR) : int(0.55 * SR)]  # the steady middle of a ~0.75 s vowel
        ac = np.correlate(mid, mid, "full")[len(mid) - 1 :]
        lo, hi = SR // 400, SR // 60
        period = lo + int(np.argmax(ac[lo:hi]))
        cycle = mid[: (len(mid) // period) * period]
        reps = int(each_s * SR) // len(cycle) + 2
        parts.append(np.tile(cycle, reps)[: int(each_s * SR)])
        bounds.append(LEAD_S + (k + 1) * each_s)
    x = np.concatenate([np.zeros(int(LEAD_S * SR), np.float32)] + parts)
    x = x / max(float(np.abs(x).max()), 1e-9) * 0.5
    return x.astype(np.float32), bounds


# --counting-clock: the bridge in a process whose time.perf_counter advances 1 ms a reading, so the held
# matcher's budget buys the same work on any machine at any load (as in tests/bridge/match/test_match_held.py)
# and a run is repeatable: what is compared is the algorithm, not the machine's load at that moment
COUNTING = (
    "import itertools, sys, time; tick = itertools.count(); time.perf_counter = lambda: next(tick) * 1e-3; "
    "from synthmatch.bridge.cli import main; sys.exit(main(sys.argv[1:]))"
)


def run_daemon(path: Path, sets: list[str], counting: bool = False) -> list[dict]:
    """The updates `synthmatch bridge --fast --print` prints for a file."""
    bridge = [sys.executable, "-c", COUNTING] if counting else [sys.executable, "-m", "synthmatch.bridge.cli"]
    cmd = [*bridge, "bridge", "--input", f"file:{path}", "--print"]
    cmd += ["--mode", "continuous", "--no-control", "--fast"]
    for s in sets:
        cmd += ["--set", s]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"bridge exited {r.returncode}: {r.stderr[-2000:]}")
    return [json.loads(ln) for ln in r.stdout.splitlines() if '"values"' in ln]


def run_cpu(path: Path, sets: list[str]) -> float:
    """CPU seconds of a real-time run (resource usage of the child)."""
    cmd = [sys.executable, "-m", "synthmatch.bridge.cli", "bridge", "--input", f"file:{path}", "--print"]
    cmd += ["--mode", "continuous", "--no-control"]
    for s in sets:
        cmd += ["--set", s]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    if status != 0:
        raise RuntimeError(f"bridge (real time) exited with status {status}")
    return usage.ru_utime + usage.ru_stime


def playing(updates: list[dict], names: list[str], times: np.ndarray) -> np.ndarray:
    """The values playing at each time (the newest update at or before it; nan before the first)."""
    t = np.array([u["stream_s"] for u in updates])
    v = np.array([[u["values"][n] for n in names] for u in updates])
    i = np.searchsorted(t, times, side="right") - 1
    out = np.full((len(times), len(names)), np.nan)
    out[i >= 0] = v[i[i >= 0]]
    return out


def measure(name: str, x: np.ndarray, bounds: list[float], updates: list[dict], contract, synth: Synth) -> dict:
    names = list(contract.names)
    t = np.array([u["stream_s"] for u in updates])
    v = np.array([[u["values"][n] for n in names] for u in updates])
    refs = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        grid = np.arange(b - SETTLED_S, b, 0.01)
        refs.append(np.nanmedian(playing(updates, names, grid), 0) if len(t) and np.any(t < b) else None)
    response = []
    for k in range(1, len(bounds) - 1):
        old, new, ts, end = refs[k - 1], refs[k], bounds[k], bounds[k + 1]
        if old is None or new is None:
            response.append(None)
            continue
        sel = (t >= ts) & (t < end)
        near_new = np.linalg.norm(v[sel] - new, axis=1) < np.linalg.norm(v[sel] - old, axis=1)
        if not near_new.size:
            response.append(None)
            continue
        bad = np.nonzero(~near_new)[0]
        if len(bad) == 0:  # nearer the new from the first update after the switch: the playing value at ts?
            before = playing(updates, names, np.array([ts]))[0]
            ok = np.linalg.norm(before - new) < np.linalg.norm(before - old)
            response.append(0.0 if ok else float(t[sel][0] - ts))
        elif bad[-1] + 1 < len(near_new):
            response.append(float(t[sel][bad[-1] + 1] - ts))
        else:
            response.append(None)  # never settled nearer the new sound
    jitter = []
    for b in bounds[1:]:
        grid = np.arange(b - STEADY_S, b, 0.01)
        p = playing(updates, names, grid)
        p = p[~np.isnan(p).any(1)]
        jitter.append(float(p.std(0).max()) if len(p) else None)
    first = float(t[0] - bounds[0]) if len(t) else None
    # MSS of the answer playing vs the neutral patch, held at its note
    mean = np.array([sample_mean(p.sample) for p in contract.params], np.float32)
    notes = np.array([u.get("note", {}).get("midi") or contract.audio.note for u in updates], np.float64)
    chunk = int(MSS_S * SR)
    at = int(4.0 * SR)  # the held renders' steady part
    closer, d_ans, d_neu = [], [], []
    neutral: dict[float, np.ndarray] = {}
    for a, b in zip(bounds[:-1], bounds[1:]):
        for ts in np.arange(a + 2 * MSS_S, b + 1e-9, MSS_S):
            i = np.searchsorted(t, ts, side="right") - 1
            if i < 0:
                continue
            note = float(notes[i])
            if note not in neutral:
                neutral[note] = synth.render(mean[None], note)[0, at : at + chunk]
            ans = synth.render(v[i][None].astype(np.float32), note)[0, at : at + chunk]
            target = Target(x[int(ts * SR) - chunk : int(ts * SR)])
            da, dn = target.distance(np.stack([ans, neutral[note]]))
            closer.append(bool(da < dn))
            d_ans.append(float(da))
            d_neu.append(float(dn))
    voiced_s = bounds[-1] - bounds[0]
    return {
        "sequence": name,
        "updates": len(updates),
        "updates_per_s": round(len(updates) / voiced_s, 2),
        "first_update_s": None if first is None else round(first, 3),
        "response_s": [None if r is None else round(r, 3) for r in response],
        "jitter": [None if j is None else round(j, 4) for j in jitter],
        "mss_answer_median": round(float(np.median(d_ans)), 3) if d_ans else None,
        "mss_neutral_median": round(float(np.median(d_neu)), 3) if d_neu else None,
        "closer_than_neutral": round(float(np.mean(closer)), 3) if closer else None,
        "stream_s_monotonic": bool(np.all(np.diff(t) > 0)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", default=[], help="a daemon setting, KEY=VALUE (repeatable)")
    ap.add_argument("--label", default="", help="a name for this run in the JSON")
    ap.add_argument("--work-dir", default="", help="sequences are written here (default: a temporary folder)")
    ap.add_argument("--no-cpu", action="store_true", help="skip the real-time CPU run")
    ap.add_argument(
        "--counting-clock", action="store_true", help="the held matcher's budgets on a counting clock (repeatable)"
    )
    ap.add_argument("--only", default="", help="comma-separated sequence names to run")
    ap.add_argument("--random-pairs", type=int, default=0, help="add N held pairs of random synth patches")
    args = ap.parse_args()
    contract = contract_mod.default()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_performance-"))
    work.mkdir(parents=True, exist_ok=True)
    sequences = {
        "synth_patches": lambda: synth_sequence(contract, 57),
        "gm_organ_to_strings": lambda: gm_sequence(work, (19, 48), 57),
        "gm_flute_to_oboe": lambda: gm_sequence(work, (73, 68), 67),
        "vowels_a_i_u": lambda: vowel_sequence(work),
        **{f"synth_random_{k}": partial(random_pair_sequence, contract, k) for k in range(args.random_pairs)},
    }
    if args.only:
        sequences = {k: f for k, f in sequences.items() if k in args.only.split(",")}
    synth = long_synth(contract, 4.0 + MSS_S + 0.1)
    results = []
    paths = {}
    for name, make in sequences.items():
        x, bounds = make()
        path = work / f"{name}.wav"
        audiofile.write(path, x.astype(np.float32), SR)
        paths[name] = (path, len(x) / SR)
        updates = run_daemon(path, args.set, args.counting_clock)
        results.append(measure(name, x, bounds, updates, contract, synth))
    cpu = None
    if not args.no_cpu and "synth_patches" in paths:
        path, seconds = paths["synth_patches"]
        short = work / "silence.wav"
        audiofile.write(short, np.zeros(int(0.2 * SR), np.float32), SR)
        base = run_cpu(short, args.set)
        cpu = round((run_cpu(path, args.set) - base) / (seconds - 0.2), 4)

    def med(key: str) -> float | None:
        vals = [x for r in results for x in (r[key] if isinstance(r[key], list) else [r[key]]) if x is not None]
        return round(float(np.median(vals)), 4) if vals else None

    print(
        json.dumps(
            {
                "label": args.label,
                "counting_clock": args.counting_clock,
                "settings": args.set,
                "sequences": results,
                "median": {
                    k: med(k)
                    for k in ("response_s", "first_update_s", "jitter", "updates_per_s", "closer_than_neutral")
                },
                "worst_jitter": max((j for r in results for j in r["jitter"] if j is not None), default=None),
                "never_settled": sum(x is None for r in results for x in r["response_s"]),
                "cpu_share": cpu,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
