"""The held-sound matcher: judge candidates by the steady spectrum of a short recent window (performance mode).

The network and bridge/match/search.py read a 4 s one-shot that starts at the window's start (attack,
decay, note-off at 3 s). A held or changing sound is not that: what it sounds like NOW is the spectrum of
the last few hundred milliseconds. While a reference-synth note is held, that spectrum is closed-form
(bridge/match/fast.py's reasoning without its time axis): each oscillator plays fixed harmonics
(`Synth.harmonics`), the envelope sits at a level, and the reverb scales a held line at f by
|(1 - mix) + mix IR(f)|^2. So a candidate's held band spectrum is its line powers through the Hann window
onto semitone bands (fast.py's `response_table` / `line_bands`), with no render.

Only the spectral parameters move here (oscillators and filters: 13 of 16); the envelope and the reverb mix
keep the values of the answer playing (the last trigger answer or the previous update): a short window of a
held sound says nothing about an attack or a decay.

The distance compares spectral SHAPE and level separately: both band spectra scaled to unit norm, then the
mean absolute difference of their log magnitudes plus their spectral convergence, plus LEVEL_WEIGHT times
the absolute log ratio of the RMS levels (the candidate at the sustain level, after the limiter). A singer
who steps back from the microphone changes the level term only, which moves the gains a little, not the
timbre.

    held = HeldMatcher(contract)
    r = held.match(recent, note, previous, seeds=[network], budget_ms=8)   # recent (HELD_N,) at 16 kHz
    r.values                                                               # (16,) normalised

Tracking, not one-shot: each call continues a coordinate search where the previous call stopped (its
cursor over parameters), from the answer playing; an evolution step uses what time is left. The answer
playing is kept unless a candidate is closer by `keep_margin` (no chatter on a held sound). When the sound
changes (the playing answer's distance jumps by CHANGE_RATIO) the search restarts from every seed.
Numpy only; bridge/match is a rank-1 layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.contract import Contract, sample_mean
from synthmatch.bridge.match.fast import (
    _hann,
    _merge_unison,
    band_matrix,
    line_bands,
    peak_estimate,
    response_table,
)
from synthmatch.bridge.match.search import EVOLVE_SEED, ORDER
from synthmatch.bridge.match.synth import Synth, reverb_ir

# The window a held answer is judged on: 3200 samples. It bounds the response (a switch is half in the
# window after HELD_S / 2). Chosen on scripts/bench_performance.py --counting-clock --random-pairs 8 (13
# switches, 25 steady stretches; hop 50 ms, 8 ms a hop): with the performance model seeding every hop,
# 0.2 s gave a median response of 0.2 s (0.3 s at 0.3 s), the answer closer than the neutral patch on 96 %
# of points (91 %); on the 5 switches of the fixed sequences 0.25 s was slower and 0.15 s chattered on 6 of
# 9 stretches. Without it, 0.2 s left 3 of 13 switches unsettled for over 3 s: the seed, not the window,
# carries the answer across a switch
HELD_S = 0.2
HELD_N_FFT = 2048  # 128 ms frames, 7.8 Hz bins: semitone bands resolve from ~260 Hz (below, 3-bin bands)
HELD_HOP = 512  # 32 ms between frames: 3 frames in 0.2 s, their powers averaged
FLOOR_DB = -60.0  # log magnitudes compared above the target's loudest band minus this
LEVEL_WEIGHT = 0.25  # weight of the level term |log(rms_c / rms_t)| beside the shape terms
IR_FFT = 1 << 18  # the impulse response's spectrum, 0.06 Hz apart (as fast.py)
CHANGE_RATIO = 1.5  # the playing answer's distance grew this much since the last call: the sound changed
# parameters held still: a held window cannot tell them
HELD_FIXED = ("env_attack", "env_decay", "reverb_mix")
SIGMA_START, SIGMA_MIN, SIGMA_MAX = 0.06, 0.01, 0.25  # evolution step (normalised units)


@dataclass(frozen=True)
class HeldConfig:
    budget_ms: float = 8.0  # one call's time (the daemon gives a share of the hop)
    change_budget_ms: float = 30.0  # ... when the sound changed: a restart's first pass, at once
    keep_margin: float = 0.15  # the answer playing is kept unless another is closer by this fraction (0.05
    #   moved on most hops while the search converged; 0.3 stalled the crossing for a second: tests, bench)
    coarse: int = 9  # values of a non-pitch parameter tried in a restart's first pass
    fine: int = 2  # later passes: values each side of the current one
    offspring: int = 16  # evolution: children per generation
    min_gain: float = 0.002  # a move must cut the distance by this fraction

    def __post_init__(self):
        if not (0 <= self.budget_ms <= 60_000 and self.coarse >= 2 and self.fine >= 1 and self.offspring >= 1):
            raise ValueError(f"HeldConfig: need 0 <= budget_ms <= 60000, coarse >= 2, fine, offspring >= 1; got {self}")
        if not 0 <= self.keep_margin < 1:
            raise ValueError(f"HeldConfig: keep_margin must lie in [0, 1); got {self.keep_margin}")


@dataclass
class HeldResult:
    values: np.ndarray  # (16,) float32 normalised: the answer
    distance: float  # its held distance to the window
    previous_distance: float  # the playing answer's (nan without one)
    source: str  # "previous", "seed" or "search"
    judged: int  # candidates judged
    seconds: float  # the call's own time
    changed: bool  # the sound changed since the last call (the search restarted)


class HeldTarget:
    """A short window's averaged band spectrum and level, measured once; `distance` judges candidates."""

    def __init__(self, audio: np.ndarray, model: HeldModel):
        self.model = model
        x = np.asarray(audio, dtype=np.float64).reshape(-1)
        if len(x) < HELD_N_FFT:
            raise ValueError(f"HeldTarget: need at least {HELD_N_FFT} samples; got {len(x)}")
        frames = np.lib.stride_tricks.sliding_window_view(x, HELD_N_FFT)[::HELD_HOP] * model.window
        power = (np.abs(np.fft.rfft(frames, axis=-1)) ** 2).mean(0)  # (bins,) averaged over frames
        mag = np.sqrt(power @ model.bands)  # (B,)
        self.level = float(np.sqrt(np.mean(x**2)))
        self.silent = self.level < 1e-6
        self.shape = mag / max(float(np.linalg.norm(mag)), 1e-12)
        self.floor = max(float(self.shape.max()), 1e-9) * 10 ** (FLOOR_DB / 20)
        self.log_shape = np.log(self.shape + self.floor)

    def distance(self, values: np.ndarray, note: float) -> np.ndarray:
        """Candidates (C, 16) normalised at a MIDI note -> (C,) float64: lower is closer."""
        shape, level = self.model.spectrum(values, note)
        log_l1 = np.abs(np.log(shape + self.floor) - self.log_shape).mean(1)
        sc = np.linalg.norm(shape - self.shape, axis=1)
        lvl = np.abs(np.log(np.maximum(level, 1e-9) / max(self.level, 1e-9)))
        return log_l1 + sc + LEVEL_WEIGHT * lvl


class HeldModel:
    """The synth side: a candidate's held band spectrum (unit norm) and its RMS level, no render."""

    def __init__(self, synth: Synth):
        self.synth = synth
        sr = synth.sample_rate
        self.window = _hann(HELD_N_FFT)
        self.bands = band_matrix(sr, HELD_N_FFT)  # (bins, B)
        self.response = response_table(self.bands)
        self.n_bands = self.bands.shape[1]
        self.bin_hz = sr / HELD_N_FFT
        self._ir_f = np.fft.rfft(reverb_ir(synth.contract), IR_FFT)
        self._hz_to_bin = IR_FFT / sr
        s = synth.contract.synth
        self.sustain, self.note_off = s.sustain, s.note_off_s

    def spectrum(self, values: np.ndarray, note: float) -> tuple[np.ndarray, np.ndarray]:
        """(C, 16) normalised -> (band magnitudes scaled to unit norm (C, B), RMS level at sustain (C,))."""
        synth = self.synth
        v = np.nan_to_num(np.asarray(values, dtype=np.float32).reshape(-1, 16), nan=0.5).clip(0, 1)
        f0, amp = synth.harmonics(v, note)
        amp = _merge_unison(f0, amp.astype(np.complex128))
        p = synth.physical(v)
        freqs = (f0[..., None] * synth.k).reshape(len(v), -1)  # (C, L) Hz
        idx = np.clip(np.rint(freqs * self._hz_to_bin).astype(np.int64), 0, len(self._ir_f) - 1)
        mix = p["reverb_mix"][:, None]
        gain = np.abs((1 - mix) + mix * self._ir_f[idx]) ** 2  # (C, L) the reverb's steady-state power gain
        lines = (np.abs(amp) ** 2).reshape(len(v), -1) * gain  # (C, L) line powers at unit envelope
        bands = line_bands(self.response, freqs / self.bin_hz, lines[None])[0]  # (C, B)
        mag = np.sqrt(np.maximum(bands, 0))
        shape = mag / np.maximum(np.linalg.norm(mag, axis=1, keepdims=True), 1e-12)
        env_max = np.minimum(1.0, self.note_off / p["env_attack"])
        limiter = np.maximum(peak_estimate(amp) * env_max, 1.0)
        level = self.sustain * np.sqrt(lines.sum(1) / 2) / limiter  # a sine's mean square is a^2 / 2
        return shape, level


class HeldMatcher:
    """Tracks a held sound hop by hop; one per worker thread (it keeps the search's cursor and timing)."""

    def __init__(self, contract: Contract | None = None, config: HeldConfig = HeldConfig(), synth: Synth | None = None):
        self.contract = contract if contract is not None else contract_mod.default()
        self.config = config
        self.synth = synth if synth is not None else Synth(self.contract)
        self.model = HeldModel(self.synth)
        names = self.contract.names
        self.window_n = int(round(HELD_S * self.synth.sample_rate))
        self.fixed = [names.index(n) for n in HELD_FIXED if n in names]
        self.order = [names.index(n) for n in ORDER if n in names and n not in HELD_FIXED]
        self.order += [i for i, n in enumerate(names) if n not in ORDER and n not in HELD_FIXED]
        self.pitches = [i for i in self.order if names[i].endswith("_pitch")]
        self.semitones = {i: int(round(p.max - p.min)) + 1 for i, p in enumerate(self.contract.params)}
        self.mean = np.array([sample_mean(p.sample) for p in self.contract.params], np.float32)
        self.unison = {i: float(self.contract.params[i].to_normalised(0.0)) for i in self.pitches}
        # a distance call costs _call_s + n * _candidate_s, both measured on every call (running means)
        self._call_s, self._candidate_s = 0.0004, 0.00006
        self._cursor = 0  # next (pass, parameter) step of the coordinate search, across calls
        self._last_d = np.inf  # the answer's distance at the end of the last call
        self._sigma = SIGMA_START
        self._rng = np.random.default_rng(EVOLVE_SEED)

    def warm(self) -> None:
        """One short call on a test tone (numpy's FFT plans, the caches), then a fresh state."""
        t = np.arange(self.window_n) / self.synth.sample_rate
        tone = (0.3 * np.sin(2 * np.pi * 261.6 * t)).astype(np.float32)
        self.match(tone, float(self.contract.audio.note), self.mean, budget_ms=5)
        self.reset()
        self._rng = np.random.default_rng(EVOLVE_SEED)

    def reset(self) -> None:
        """A new note or silence: the next call starts a fresh search."""
        self._cursor, self._last_d, self._sigma = 0, np.inf, SIGMA_START

    def match(
        self,
        audio: np.ndarray,
        note: float,
        previous: np.ndarray,
        *,
        seeds: Sequence[np.ndarray] = (),
        budget_ms: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> HeldResult:
        """audio: the newest samples (at least HELD_N_FFT; the last window_n are used), note: the MIDI note
        heard (fractional allowed), previous: the answer playing (16,) — its envelope and reverb are kept;
        seeds: other starts (the network's answer), their envelope and reverb replaced by previous's."""
        t0 = clock()
        cfg = self.config
        until = t0 + (cfg.budget_ms if budget_ms is None else budget_ms) / 1000
        x = np.asarray(audio, np.float32).reshape(-1)[-self.window_n :]
        target = HeldTarget(x, self.model)
        prev = _values(previous)
        t = clock()
        prev_d = float(target.distance(prev[None], note)[0])
        self._call_s = 0.7 * self._call_s + 0.3 * max(clock() - t - self._candidate_s, 0.0)
        judged = 1
        changed = prev_d > self._last_d * CHANGE_RATIO
        if changed:
            self._cursor, self._sigma = 0, SIGMA_START
            until = max(until, t0 + cfg.change_budget_ms / 1000)
        starts = [self._fixed_from(_values(s), prev) for s in seeds]
        if changed or not np.isfinite(self._last_d):
            starts += [self._fixed_from(self._unison(prev), prev), self._fixed_from(self.mean.copy(), prev)]
        best, best_d, source = prev.copy(), prev_d, "previous"
        if starts:
            sd = target.distance(np.stack(starts), note)
            judged += len(starts)
            j = int(np.argmin(sd))
            if sd[j] < best_d:
                best, best_d, source = starts[j].copy(), float(sd[j]), "seed"
        best, best_d, n, moved = self._search(target, note, best, best_d, clock, until)
        judged += n
        if moved:
            source = "search"
        if best_d > prev_d * (1 - cfg.keep_margin):  # keep what is playing unless another is clearly closer
            best, best_d, source = prev, prev_d, "previous"
        self._last_d = best_d
        return HeldResult(best.astype(np.float32), best_d, prev_d, source, judged, clock() - t0, changed)

    def _fixed_from(self, v: np.ndarray, prev: np.ndarray) -> np.ndarray:
        v[self.fixed] = prev[self.fixed]
        return v

    def _unison(self, v: np.ndarray) -> np.ndarray:
        out = v.copy()
        for i, u in self.unison.items():
            out[i] = u
        return out

    def _search(
        self,
        target: HeldTarget,
        note: float,
        best: np.ndarray,
        best_d: float,
        clock: Callable[[], float],
        until: float,
    ) -> tuple[np.ndarray, float, int, bool]:
        """Coordinate steps from the cursor on, then evolution generations, until `until` (clock time) at
        the measured cost per candidate -> (best, its distance, candidates judged, whether it moved)."""
        cfg = self.config
        judged, moved = 0, False
        steps = len(self.order) * 3  # pass 0: whole grids; passes 1, 2: finer steps around the best
        while self._cursor < steps:
            p, k = divmod(self._cursor, len(self.order))
            grid = self._grid(best[self.order[k]], self.order[k], p)
            t = clock()
            if judged and t + self._call_s + self._candidate_s * len(grid) > until:
                return best, best_d, judged, moved  # (one step always runs: a slow moment cannot stall it)
            cand = np.repeat(best[None], len(grid), axis=0)
            cand[:, self.order[k]] = grid
            d = target.distance(cand, note)
            self._measured(clock() - t, len(grid))
            judged += len(grid)
            j = int(np.argmin(d))
            if d[j] < best_d * (1 - cfg.min_gain):
                best, best_d, moved = cand[j].copy(), float(d[j]), True
            self._cursor += 1
        free = np.array(self.order)
        pitches = np.array(self.pitches)
        per_unit = np.array([self.semitones[k] - 1 for k in self.pitches], np.float32)
        while True:
            t = clock()
            if judged and t + self._call_s + self._candidate_s * cfg.offspring > until:
                return best, best_d, judged, moved
            move = np.zeros((cfg.offspring, best.size), bool)
            move[:, free] = self._rng.random((cfg.offspring, len(free))) < 2.5 / len(free)
            move[np.arange(cfg.offspring), self._rng.choice(free, cfg.offspring)] = True
            cand = np.clip(best + move * self._rng.standard_normal(move.shape).astype(np.float32) * self._sigma, 0, 1)
            snapped = np.round(cand[:, pitches] * per_unit) / per_unit  # pitches on whole semitones
            cand[:, pitches] = np.where(move[:, pitches], snapped, best[pitches])
            d = target.distance(cand, note)
            self._measured(clock() - t, len(cand))
            judged += len(cand)
            j = int(np.argmin(d))
            if d[j] < best_d * (1 - cfg.min_gain):
                best, best_d, moved = cand[j].copy(), float(d[j]), True
                self._sigma = min(SIGMA_MAX, self._sigma * 1.5)
            else:
                self._sigma = max(SIGMA_MIN, self._sigma * 0.8)

    def _measured(self, seconds: float, n: int) -> None:
        self._candidate_s = 0.7 * self._candidate_s + 0.3 * max(seconds - self._call_s, 0.0) / n

    def _grid(self, current: float, k: int, p: int) -> np.ndarray:
        """Values to try for parameter k in pass p: (G,) float32."""
        cfg = self.config
        size = self.semitones[k] if k in self.pitches else cfg.coarse
        if p == 0:
            return np.linspace(0, 1, size, dtype=np.float32)
        step = 1.0 / (size - 1) / 2**p
        offsets = np.concatenate([-np.arange(cfg.fine, 0, -1), np.arange(1, cfg.fine + 1)]) * step
        return np.clip(current + offsets, 0, 1).astype(np.float32)


def _values(v) -> np.ndarray:
    return np.clip(np.nan_to_num(np.asarray(v, np.float32).reshape(-1), nan=0.5), 0, 1)
