"""The note and f0 of an analysis window, torch-free: YIN periodicity and a harmonic sieve over the spectrum.

    detect(x, sr, settings) -> NoteEstimate(note, f0_hz, midi, confidence, voiced, reason)

x: (T,) float mono at sr Hz (a 4 s window, or its newest part for note tracking). FRAMES frames of FRAME_S
seconds (1024 samples at 16 kHz) are taken among those within LOUD_DB of the loudest, and four
steps follow:
  1. voicing (YIN, de Cheveigne & Kawahara 2002, steps 2-3): per frame the cumulative-mean-normalised
     difference d'(tau) for lags up to 1 / f_min; its minimum is the frame's aperiodicity, and frames
     above settings.max_aperiodicity are unvoiced. confidence = (1 - median aperiodicity of the voiced
     frames) x their share. Silent input (peak below settings.silence_db) or confidence below
     settings.min_confidence falls back to settings.fallback_note with f0_hz None and a reason.
  2. candidates: the Hann magnitude spectra of SPECTRUM_S seconds at SPECTRA of them are averaged and
     reduced to their PEAKS strongest peaks (frequency and level refined by a parabola in dB). Each
     peak's frequency / h (h = 1..HARMONICS) in [f_min, f_max] is a candidate f0, scored by salience x
     explained share: salience is subharmonic summation (Hermes 1988): the sum over h = 1..HARMONICS of
     DECAY^(h-1) x the level of the peak within SALIENCE_TOL of h f0; the explained share is the
     fraction of the peaks' power lying within COMB_TOL of some multiple of f0. Salience makes the
     loudest harmonic series win over a lower common period (a lead with a quieter oscillator beside
     it: YIN alone reads the sum's period, one to five octaves low); the explained share keeps a comb
     that misses partials from winning.
  3. bright low notes: a resonance on the 9th harmonic of a 90 Hz tone gives that harmonic the most
     salience. When the winner explains less than STEP_BELOW of the power and its subharmonic f0 / k
     (the first k = 2, 3, ... down to f_min) explains at least STEP_GAIN more, f0 / k is taken.
  4. the period is refined per voiced frame at the d'(tau) dip within REFINE_ST (1 semitone: vibrato)
     of the winner's (a parabola through three lags; the winner's own where d' has no dip there);
     f0 = sr / median over the voiced frames.

Why this tracker: scripts/compare_pitch.py measures it (and, where installed, aubio, pyworld and Praat)
on training.notesets' lead patches (patches that sound at their played note) and on FluidR3 instruments
at the notes they sound at. Within 1 semitone, 200 patches of seed 41 and 141 FluidR3 notes: 99.5 % and
98.6 % (the YIN-only tracker before it: 88.0 % and 98.6 %); over 800 patches of four seeds and 314
FluidR3 notes at 20 keys, 99.6 % and 99.4 % (before: 84.9 % and 99.0 %). What it still misses is listed
in scripts/compare_pitch.py. CPU time per call, p50, on a 2-core machine with a training run beside it:
3.3 ms for a 4 s window, 1.9 ms for 0.3 s (the YIN-only tracker: 3.7 and 1.6 ms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

FRAME_S = 0.064  # YIN frame (1024 samples at 16 kHz): two periods of 31 Hz
FRAMES = 12  # frames analysed per call, spread over the loud part
LOUD_DB = 20.0  # frames within this of the loudest frame's RMS are candidates
SPECTRUM_S = 0.512  # spectrum segment (8192 samples at 16 kHz): 1.95 Hz bins, partials 4 Hz apart resolved
SPECTRA = 6  # segments averaged, at every other frame (as good as all 12 on the test sets, half the FFTs)
PEAKS = 40  # strongest spectral peaks kept ...
PEAK_FLOOR_DB = 60.0  # ... within this of the strongest
HARMONICS = 12  # harmonics summed for salience
DECAY = 0.84  # salience weight ratio from one harmonic to the next (Hermes' value)
SALIENCE_TOL = 0.01  # a peak within 1 % (17 cents) of h f0 counts for harmonic h (vibrato, chorus, stretch)
COMB_TOL = 0.003  # explained share: within 0.3 % (5 cents), so that a dense low comb claims few strangers
BIN_TOL = 0.5  # ... and never tighter than half a spectrum bin
STEP_BELOW = 0.7  # step 3 applies when the winner explains less than this share of the power
STEP_GAIN = 0.2  # ... and its subharmonic at least this much more
REFINE_ST = 1.0  # each frame's period is looked for within this many semitones of the winner's


@dataclass(frozen=True)
class PitchSettings:
    """[pitch] in the daemon's TOML."""

    fallback_note: int = 60  # MIDI note used when the input is silent or unpitched (C4)
    f_min: float = 40.0  # Hz, lowest f0 searched (MIDI 28, E1)
    f_max: float = 2000.0  # Hz, highest f0 searched (MIDI 95, B6)
    min_confidence: float = 0.5  # below this the window counts as unpitched
    max_aperiodicity: float = 0.3  # frames whose lowest d'(tau) is above this count as unvoiced
    silence_db: float = -60.0  # peak below this (dBFS) = silent

    def check(self, where: str = "pitch") -> None:
        """ValueError naming the key for a setting out of range."""
        if not 0 <= self.fallback_note <= 127:
            raise ValueError(f"{where}.fallback_note = {self.fallback_note}: a MIDI note 0..127")
        if not (10.0 <= self.f_min < self.f_max <= 4000.0):
            raise ValueError(f"{where}.f_min/f_max = {self.f_min}/{self.f_max}: need 10 <= f_min < f_max <= 4000 Hz")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"{where}.min_confidence = {self.min_confidence}: in [0, 1]")
        if not 0.0 < self.max_aperiodicity <= 1.0:
            raise ValueError(f"{where}.max_aperiodicity = {self.max_aperiodicity}: in (0, 1]")


@dataclass(frozen=True)
class NoteEstimate:
    note: int  # MIDI note to play: round(midi), or the fallback note
    f0_hz: float | None  # detected fundamental, Hz; None when it fell back
    midi: float  # fractional MIDI note of f0 (the fallback note when it fell back)
    confidence: float  # voicing confidence in [0, 1]
    voiced: bool  # False: silent or unpitched, note = fallback
    reason: str = ""  # why it fell back ("silent", "unpitched (confidence 0.21)"), else ""


def hz_to_midi(f: float) -> float:
    return 69.0 + 12.0 * math.log2(f / 440.0)


def midi_to_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


def _starts(x: np.ndarray, frame: int, span: int) -> np.ndarray:
    """(T,) -> (K,) start samples (K <= FRAMES) spread over the frames within LOUD_DB of the loudest."""
    if x.size < span:
        return np.zeros(1, dtype=int)
    starts = np.arange(0, x.size - span + 1, max(1, frame // 2))
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    rms = np.sqrt((energy[starts + frame] - energy[starts]) / frame + 1e-20)
    loud = starts[20 * np.log10(rms / rms.max()) > -LOUD_DB]
    return loud[np.linspace(0, loud.size - 1, min(FRAMES, loud.size)).round().astype(int)]


def _cmnd(frames: np.ndarray, frame: int, max_lag: int) -> np.ndarray:
    """YIN steps 2-3: (K, frame + max_lag) -> d'(tau) for tau = 0..max_lag, (K, max_lag + 1).

    d(tau) = sum_j (x_j - x_{j+tau})^2 over j < frame = r0 + e(tau) - 2 r(tau), with r(tau) the cross
    term (one FFT product) and e(tau) the energy of x[tau:tau+frame] (a running sum)."""
    n = 1 << math.ceil(math.log2(frames.shape[1]))  # r(tau) for tau >= 0 needs no more: j + tau < span
    spec_all = np.fft.rfft(frames, n)
    spec_head = np.fft.rfft(frames[:, :frame], n)
    r = np.fft.irfft(spec_all * np.conj(spec_head), n)[:, : max_lag + 1]  # sum_j x_j x_{j+tau}
    sq = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    e = sq[:, frame : frame + max_lag + 1] - sq[:, : max_lag + 1]
    d = np.maximum(e[:, :1] + e - 2 * r, 0.0)
    tau = np.arange(1, max_lag + 1)
    out = np.ones_like(d)
    out[:, 1:] = d[:, 1:] * tau / np.maximum(np.cumsum(d[:, 1:], axis=1), 1e-20)
    return out


@lru_cache(maxsize=8)
def _hann(m: int) -> np.ndarray:
    return np.hanning(m)


def _peaks(x: np.ndarray, starts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(T,) signal, (K,) starts -> (P,) frequencies in bins and (P,) levels of the strongest peaks of the
    mean Hann magnitude spectrum of n samples at each start (a shorter signal is used whole, padded)."""
    m = min(n, x.size)
    at = np.unique(np.minimum(starts, x.size - m))  # a short signal: one segment, the whole of it
    seg = np.stack([x[s : s + m] for s in at]) * _hann(m)
    mag = np.abs(np.fft.rfft(seg, n, axis=1)).mean(axis=0)  # (n // 2 + 1,)
    i = np.flatnonzero((mag[1:-1] > mag[:-2]) & (mag[1:-1] >= mag[2:])) + 1
    i = i[mag[i] > mag.max() * 10 ** (-PEAK_FLOOR_DB / 20)]
    i = i[np.argsort(mag[i])[-PEAKS:]]
    lo, mid, hi = (np.log(mag[j] + 1e-30) for j in (i - 1, i, i + 1))
    den = lo - 2 * mid + hi  # < 0 at a peak
    shift = np.clip(np.where(den < 0, 0.5 * (lo - hi) / np.minimum(den, -1e-12), 0.0), -0.5, 0.5)
    return i + shift, np.exp(mid - 0.25 * (lo - hi) * shift)


def _salience(bins: np.ndarray, level: np.ndarray, fc: np.ndarray) -> np.ndarray:
    """(P,) peaks in bins, (C,) candidates in bins -> (C,) subharmonic sum (step 2 of the docstring)."""
    order = np.argsort(bins)
    b, a = bins[order], level[order]
    h = np.arange(1, HARMONICS + 1)
    target = np.outer(fc, h)  # (C, H) harmonic frequencies, bins
    right = np.clip(np.searchsorted(b, target), 1, b.size - 1)
    nearest = np.where(b[right] - target < target - b[right - 1], right, right - 1)
    hit = np.abs(b[nearest] - target) <= np.maximum(BIN_TOL, SALIENCE_TOL * target)
    return np.where(hit, a[nearest], 0.0) @ DECAY ** (h - 1.0)


def _explained(bins: np.ndarray, level: np.ndarray, fc: np.ndarray) -> np.ndarray:
    """(P,) peaks, (C,) candidates (both in bins) -> (C,) share of the peaks' power on each comb."""
    k = np.maximum(np.rint(bins[None, :] / fc[:, None]), 1)  # (C, P) nearest harmonic number
    on = np.abs(bins[None, :] - k * fc[:, None]) <= np.maximum(BIN_TOL, COMB_TOL * bins[None, :])
    power = level**2
    return (on @ power) / max(float(power.sum()), 1e-30)


def _choose(bins: np.ndarray, level: np.ndarray, lo: float, hi: float) -> float:
    """(P,) peaks (bins, levels), the f0 range in bins -> the window's f0 in bins (steps 2 and 3 of the
    module docstring). The candidates are each peak's frequency / h, h = 1..HARMONICS, in range."""
    fc = (bins[:, None] / np.arange(1, HARMONICS + 1)).ravel()
    fc = np.unique(fc[(fc >= lo) & (fc <= hi)])
    if bins.size < 2 or fc.size == 0:  # one partial: a sine (or nothing in range)
        return float(np.clip(bins[np.argmax(level)] if bins.size else lo, lo, hi))
    sal = _salience(bins, level, fc)
    j = int(np.argmax(sal))
    best = sal[j] * _explained(bins, level, fc[j : j + 1])[0]
    rivals = np.flatnonzero(sal > best)  # the explained share is at most 1: only these can beat it
    if rivals.size:
        score = sal[rivals] * _explained(bins, level, fc[rivals])
        if score.max() > best:
            j, best = int(rivals[np.argmax(score)]), float(score.max())
    share = best / sal[j]
    if share >= STEP_BELOW:
        return float(fc[j])
    ks = np.arange(2, int(fc[j] / lo) + 1)  # subharmonics f0 / k down to f_min
    good = np.flatnonzero(_explained(bins, level, fc[j] / ks) >= share + STEP_GAIN)
    return float(fc[j] / ks[good[0]]) if good.size else float(fc[j])


def _refine(dn: np.ndarray, period: float, min_lag: int) -> np.ndarray:
    """(K, max_lag + 1) d' rows, the winner's period in samples -> (K,) periods: the dip within
    REFINE_ST semitones, refined by a parabola; the winner's where the lowest point is the search's edge."""
    lo = max(min_lag, int(period / 2 ** (REFINE_ST / 12)))
    hi = min(dn.shape[1] - 2, int(math.ceil(period * 2 ** (REFINE_ST / 12))))
    out = np.full(len(dn), period)
    for r, row in enumerate(dn):
        t = lo + int(np.argmin(row[lo : hi + 1]))
        if lo < t < hi:
            a, b, c = row[t - 1], row[t], row[t + 1]
            den = a - 2 * b + c
            out[r] = t + (float(np.clip(0.5 * (a - c) / den, -0.5, 0.5)) if den > 0 else 0.0)
    return out


def detect(x: np.ndarray, sr: int, settings: PitchSettings = PitchSettings()) -> NoteEstimate:
    """(T,) mono at sr -> the window's note; see the module docstring."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.isfinite(x).all():
        x = np.nan_to_num(x)
    x = x - x.mean() if x.size else x  # a DC offset is silence
    fb = settings.fallback_note
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= 0 or 20 * math.log10(peak) < settings.silence_db:
        return NoteEstimate(fb, None, float(fb), 0.0, False, "silent")
    frame = int(round(FRAME_S * sr))
    min_lag = max(2, int(sr / settings.f_max))
    max_lag = int(math.ceil(sr / settings.f_min))
    span = frame + max_lag + 1
    starts = _starts(x, frame, span)
    padded = np.pad(x, (0, max(0, span - x.size)))
    dn = _cmnd(np.stack([padded[s : s + span] for s in starts]), frame, max_lag)  # (K, max_lag + 1)
    aperiodicity = dn[:, min_lag:].min(axis=1)
    ok = aperiodicity <= settings.max_aperiodicity
    conf = float((1.0 - np.median(aperiodicity[ok])) * ok.mean()) if ok.any() else 0.0
    if conf < settings.min_confidence:
        return NoteEstimate(fb, None, float(fb), conf, False, f"unpitched (confidence {conf:.2f})")
    n = 1 << round(math.log2(SPECTRUM_S * sr))
    bins, level = _peaks(x, starts[np.linspace(0, starts.size - 1, min(SPECTRA, starts.size)).round().astype(int)], n)
    f_hat = _choose(bins, level, settings.f_min * n / sr, settings.f_max * n / sr) * sr / n  # Hz
    f0 = float(sr / np.median(_refine(dn[ok], sr / f_hat, min_lag)))
    m = hz_to_midi(f0)
    return NoteEstimate(int(np.clip(round(m), 0, 127)), f0, m, conf, True)
