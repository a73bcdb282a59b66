"""Note normalisation: let a model trained at one note (the contract's audio.note, C4) hear any note.

    to_reference(window, note, contract) -> (window at the reference note, s)
    from_reference(values, s, contract) -> (values for the original sound, names clipped)
    combine(raw, normalised, contract, mode) -> the values sent, per NORMALISE_MODES

A sound at note N (f_N Hz) is resampled so that it plays at the reference note f_ref: read at sr, the
resampled signal is the original slowed down by s = f_N / f_ref (s > 1 for notes above the reference),
so every frequency is divided by s and every duration multiplied by s. The model then predicts the
parameters of that slowed sound, and the parameters whose physical meaning the resampling changed are
mapped back: times (unit "s": attack, decay) divided by s, frequencies (unit "Hz": filter cutoffs)
multiplied by s, each clipped to its contract range (a clipped name is reported). Everything else is
relative to the note or dimensionless and stays: oscillator pitch offsets, wavetable positions, gains,
resonances, the reverb mix.

The window length: the model takes num_samples. For s > 1 the first num_samples / s input samples
(from the window's start, i.e. the onset in trigger mode) fill it exactly; the rest of the input is not
heard. For s < 1 the whole window only fills num_samples * s and the rest is zero-padded: waiting for
more input would add (1 / s - 1) x 4 s of latency, and a trigger window already ends zero-padded when
the next note cuts it short. What the model cannot be told: the synth's fixed note-off (3 s), release
and reverb are slowed too; scripts/eval_notes.py measures what that costs against doing nothing.

Measured (scripts/eval_notes.py, the log-mel default model c7557209ebec47a1, 128-512 random patches at
notes 36-84): resampling helps exactly the parameters that are relative to the note (oscillator pitch
offsets: osc1 MSE 0.089 raw -> 0.058) and hurts the absolute ones (reverb mix 0.028 -> 0.19, decay 0.063
-> 0.19: the fixed note-off and reverb are stretched). So the modes:
  "off"    the C4 model on the raw window (one inference)
  "full"   every parameter from the normalised window, mapped back (one inference)
  "pitch"  the note-relative parameters (unit "semitones") from the normalised window, all others
           from the raw window: both windows in one batch of 2 (the default: lowest MSE measured)
"""

from __future__ import annotations

import math

import numpy as np
import soxr


def stretch(note: float, ref_note: float) -> float:
    """s = f(note) / f(ref_note): how much the resampling slows the sound down."""
    return 2.0 ** ((note - ref_note) / 12.0)


def to_reference(window: np.ndarray, note: float, contract, quality: str = "HQ") -> tuple[np.ndarray, float]:
    """(num_samples,) float32 at the contract rate, played at `note` -> ((num_samples,) at the
    contract's reference note, s). s == 1 returns the window unchanged (a copy)."""
    n, sr = contract.audio.num_samples, contract.audio.sample_rate
    s = stretch(note, contract.audio.note)
    x = np.asarray(window, dtype=np.float32).reshape(-1)
    if s == 1.0:
        return x[:n].copy(), s
    need = min(x.size, int(math.ceil(n / s)) + 64)  # + 64: the resampler's edge, cut off below
    y = soxr.resample(x[:need], sr, sr * s, quality=quality)  # s x more samples: slowed by s at sr
    out = np.zeros(n, dtype=np.float32)
    m = min(n, y.size)
    out[:m] = y[:m]
    return out, s


NORMALISE_MODES = ("off", "full", "pitch")


def relative_params(contract) -> list[int]:
    """Indices of the parameters relative to the played note (oscillator pitch offsets, semitones)."""
    return [i for i, p in enumerate(contract.params) if p.unit == "semitones"]


def combine(raw: np.ndarray | None, normalised: np.ndarray | None, contract, mode: str) -> np.ndarray:
    """(16,) raw-window values and (16,) normalised-window values (already mapped back) -> the answer."""
    if mode == "off":
        return np.asarray(raw, dtype=np.float32)
    if mode == "full":
        return np.asarray(normalised, dtype=np.float32)
    if mode != "pitch":
        raise ValueError(f"note normalisation mode {mode!r}: one of {', '.join(NORMALISE_MODES)}")
    out = np.asarray(raw, dtype=np.float32).copy()
    rel = relative_params(contract)
    out[rel] = np.asarray(normalised, dtype=np.float32)[rel]
    return out


def from_reference(values: np.ndarray, s: float, contract) -> tuple[np.ndarray, list[str]]:
    """(16,) normalised values predicted for the slowed sound -> (16,) for the original, and the names
    of the parameters that had to be clipped to their range."""
    out = np.asarray(values, dtype=np.float64).copy()
    clipped = []
    for i, p in enumerate(contract.params):
        scale = 1.0 / s if p.unit == "s" else s if p.unit == "Hz" else None
        if scale is None:
            continue
        x = float(p.to_physical(float(out[i]))) * scale
        if x < p.min or x > p.max:
            clipped.append(p.name)
            x = min(max(x, p.min), p.max)
        out[i] = p.to_normalised(x)
    return out.astype(np.float32), clipped
