"""The note and f0 of an analysis window, torch-free: YIN (de Cheveigne & Kawahara 2002) on a few frames.

Why this tracker: scripts/compare_pitch.py measured it beside aubio's yinfft, pyworld's dio and harvest
and Praat's autocorrelation (parselmouth) on rendered reference-synth patches and FluidR3 instruments at
notes 36-84; it is as accurate as the best of them here and takes well under a millisecond per 4 s
window, because it analyses only FRAMES frames chosen among the loudest, not a whole f0 track.

    detect(x, sr, settings) -> NoteEstimate(note, f0_hz, midi, confidence, voiced, reason)

x: (T,) float mono at sr Hz (a 4 s window, or its newest part for note tracking). Frames are FRAME
samples at 16 kHz (64 ms; scaled with sr), taken every hop among those within LOUD_DB of the loudest;
per frame the cumulative-mean-normalised difference d'(tau) (YIN steps 2-3) is computed with FFTs, its
first dip under THRESHOLD (its minimum within DIP_SPAN; else the global minimum) refined by parabolic
interpolation gives the period,
and d' there is the frame's aperiodicity. The window's f0 is the median over the frames whose
aperiodicity is below settings.max_aperiodicity; confidence = (1 - median aperiodicity) x the share of
such frames. Silent input (peak below settings.silence_db), or confidence below settings.min_confidence,
falls back to settings.fallback_note with f0_hz None and a reason saying why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FRAME_S = 0.064      # analysis frame (1024 samples at 16 kHz): two periods of 31 Hz
FRAMES = 12          # frames analysed per call, spread over the loud part
LOUD_DB = 20.0       # frames within this of the loudest frame's RMS are candidates
THRESHOLD = 0.15     # YIN absolute threshold on d'(tau): the first dip under it is the period
DIP_SPAN = 1.15      # the dip's minimum is looked for in [t0, 1.15 t0], t0 = first lag under THRESHOLD


@dataclass(frozen=True)
class PitchSettings:
    """[pitch] in the daemon's TOML."""

    fallback_note: int = 60         # MIDI note used when the input is silent or unpitched (C4)
    f_min: float = 40.0             # Hz, lowest f0 searched (MIDI 28, E1)
    f_max: float = 2000.0           # Hz, highest f0 searched (MIDI 95, B6)
    min_confidence: float = 0.5     # below this the window counts as unpitched
    max_aperiodicity: float = 0.3   # frames with d' above this at their period count as unvoiced
    silence_db: float = -60.0       # peak below this (dBFS) = silent

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
    note: int                 # MIDI note to play: round(midi), or the fallback note
    f0_hz: float | None       # detected fundamental, Hz; None when it fell back
    midi: float               # fractional MIDI note of f0 (the fallback note when it fell back)
    confidence: float         # voicing confidence in [0, 1]
    voiced: bool              # False: silent or unpitched, note = fallback
    reason: str = ""          # why it fell back ("silent", "unpitched (confidence 0.21)"), else ""


def hz_to_midi(f: float) -> float:
    return 69.0 + 12.0 * math.log2(f / 440.0)


def midi_to_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


def _frames(x: np.ndarray, frame: int, span: int) -> np.ndarray:
    """(T,) -> (K, span) frames among the loudest (K <= FRAMES), each span = frame + max lag samples."""
    hop = max(1, frame // 2)
    starts = np.arange(0, max(1, x.size - span + 1), hop)
    if x.size < span:
        x = np.pad(x, (0, span - x.size))
        starts = np.zeros(1, dtype=int)
    rms = np.sqrt(np.array([np.mean(x[s:s + frame] ** 2) for s in starts]) + 1e-20)
    loud = starts[20 * np.log10(rms / rms.max()) > -LOUD_DB]
    pick = loud[np.linspace(0, loud.size - 1, min(FRAMES, loud.size)).round().astype(int)]
    return np.stack([x[s:s + span] for s in pick])


def _cmnd(frames: np.ndarray, frame: int, max_lag: int) -> np.ndarray:
    """YIN steps 2-3: (K, frame + max_lag) -> d'(tau) for tau = 0..max_lag, (K, max_lag + 1).

    d(tau) = sum_j (x_j - x_{j+tau})^2 over j < frame = r0 + e(tau) - 2 r(tau), with r(tau) the cross
    term (one FFT product) and e(tau) the energy of x[tau:tau+frame] (a running sum)."""
    n = 1 << math.ceil(math.log2(frames.shape[1] + frame))
    spec_all = np.fft.rfft(frames, n)
    spec_head = np.fft.rfft(frames[:, :frame], n)
    r = np.fft.irfft(spec_all * np.conj(spec_head), n)[:, : max_lag + 1]  # sum_j x_j x_{j+tau}
    sq = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    e = sq[:, frame: frame + max_lag + 1] - sq[:, : max_lag + 1]
    d = np.maximum(e[:, :1] + e - 2 * r, 0.0)
    tau = np.arange(1, max_lag + 1)
    out = np.ones_like(d)
    out[:, 1:] = d[:, 1:] * tau / np.maximum(np.cumsum(d[:, 1:], axis=1), 1e-20)
    return out


def _period(dn: np.ndarray, min_lag: int) -> tuple[float, float]:
    """One frame's d'(tau) -> (period in samples, fractional; aperiodicity d' there)."""
    below = np.flatnonzero(dn[min_lag:] < THRESHOLD)
    if below.size:
        t0 = min_lag + int(below[0])
        # the dip's bottom: bright sounds ripple d' near the period, so the first local minimum under the
        # threshold may be a shoulder; the next period (an octave down) is at 2 t0, far past this search
        stop = min(dn.size, int(t0 * DIP_SPAN) + 2)
        t = t0 + int(np.argmin(dn[t0:stop]))
    else:
        t = min_lag + int(np.argmin(dn[min_lag:]))
    if 0 < t < dn.size - 1:  # parabola through the three points around the minimum
        a, b, c = dn[t - 1], dn[t], dn[t + 1]
        den = a - 2 * b + c
        shift = 0.5 * (a - c) / den if den > 0 else 0.0
        return t + float(np.clip(shift, -0.5, 0.5)), float(b)
    return float(t), float(dn[t])


def detect(x: np.ndarray, sr: int, settings: PitchSettings = PitchSettings()) -> NoteEstimate:
    """(T,) mono at sr -> the window's note; see the module docstring."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64).reshape(-1))
    fb = settings.fallback_note
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= 0 or 20 * math.log10(peak) < settings.silence_db:
        return NoteEstimate(fb, None, float(fb), 0.0, False, "silent")
    frame = int(round(FRAME_S * sr))
    min_lag = max(2, int(sr / settings.f_max))
    max_lag = int(math.ceil(sr / settings.f_min))
    frames = _frames(x - x.mean(), frame, frame + max_lag + 1)
    dn = _cmnd(frames, frame, max_lag)
    per = np.array([_period(row, min_lag) for row in dn])  # (K, 2): period, aperiodicity
    ok = per[:, 1] <= settings.max_aperiodicity
    conf = float((1.0 - np.median(per[ok, 1])) * ok.mean()) if ok.any() else 0.0
    if conf < settings.min_confidence:
        return NoteEstimate(fb, None, float(fb), conf, False, f"unpitched (confidence {conf:.2f})")
    f0 = float(sr / np.median(per[ok, 0]))
    m = hz_to_midi(f0)
    return NoteEstimate(int(np.clip(round(m), 0, 127)), f0, m, conf, True)
