"""Test sounds at known notes, for pitch tracking and note normalisation (scripts/compare_pitch.py,
scripts/eval_notes.py, tests).

lead_patches: reference-synth patches whose played note is audible as such. The synth has three
detuned oscillators, so a random patch's "note" may be heard a fifth or an octave away from the one
played (offsets are uniform in +-24 semitones). Here the loudest oscillator is set to unison and the
patch is kept only if that oscillator, rendered alone, is clearly the loudest (lead_patches).
gm_notes: FluidR3 General MIDI instruments (fluidsynth) at given notes, aligned at their onset.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from synthmatch.bridge.contract import Contract

NOTE_RANGE = (36, 84)  # MIDI, inclusive: C2 .. C6
LEAD_MIN_DBFS = -50.0  # the lead oscillator alone must be at least this loud (RMS over the window)
LEAD_MARGIN_DB = 6.0   # ... and this much louder than each other oscillator alone


def random_notes(seed: int, count: int, lo: int = NOTE_RANGE[0], hi: int = NOTE_RANGE[1]) -> np.ndarray:
    """(count,) integer MIDI notes uniform in [lo, hi]."""
    return np.random.default_rng(seed).integers(lo, hi + 1, size=count)


def lead_patches(contract: Contract, seed: int, count: int, notes, margin_db: float = LEAD_MARGIN_DB) -> np.ndarray:
    """(count, 16) normalised patches whose played note is heard as such, at the given (count,) notes.

    Drawn from the contract's sampling; the loudest oscillator by gain is set to unison and kept if,
    rendered alone at its note (filters, envelope and reverb as in the patch), it is audible (RMS above
    LEAD_MIN_DBFS) and at least margin_db louder than each of the other two rendered alone; else
    the patch is redrawn."""
    from synthmatch.bridge.onset import rms_dbfs
    from synthmatch.training.sampling import sample_params

    idx = contract.names.index
    gains = [idx(f"osc{j}_gain") for j in (1, 2, 3)]
    pitches = [idx(f"osc{j}_pitch") for j in (1, 2, 3)]
    notes = np.asarray(notes)
    out = np.zeros((count, len(contract.params)), np.float32)
    pending = np.arange(count)  # positions still without an accepted patch
    offset = 0
    while pending.size:
        v = sample_params(contract, seed, range(offset, offset + pending.size)).astype(np.float32)
        offset += pending.size
        lead = np.argmax(v[:, gains], axis=1)
        v[np.arange(len(v)), np.take(pitches, lead)] = 0.5  # unison with the played note
        solo = np.repeat(v, 3, axis=0)
        for j in range(3):  # row 3i + j: patch i with only oscillator j sounding
            solo[j::3, [g for k, g in enumerate(gains) if k != j]] = 0.0
        levels = np.array([rms_dbfs(a) for a in render_at(contract, solo, np.repeat(notes[pending], 3))])
        levels = levels.reshape(-1, 3)
        lead_db = levels[np.arange(len(v)), lead]
        margin = lead_db[:, None] - levels
        margin[np.arange(len(v)), lead] = np.inf
        ok = (lead_db > LEAD_MIN_DBFS) & (margin.min(axis=1) >= margin_db)
        out[pending[ok]] = v[ok]
        pending = pending[~ok]
    return out


def render_at(contract: Contract, values: np.ndarray, notes) -> np.ndarray:
    """(B, 16) patches at (B,) MIDI notes -> (B, num_samples) float32 audio from the reference synth."""
    import torch

    from synthmatch.training.synth import ReferenceSynth

    synth = ReferenceSynth(contract)
    return synth.render(torch.from_numpy(np.asarray(values, np.float32)),
                        note=torch.as_tensor(np.asarray(notes, np.float64))).numpy()


def gm_notes(contract: Contract, programs: dict[str, int], notes: list[int]) -> list[tuple[str, int, np.ndarray]]:
    """(instrument, note, (num_samples,) window aligned at its onset) for every program x note."""
    scripts = Path(__file__).resolve().parent.parent / "scripts"
    sys.path.insert(0, str(scripts))
    from eval_ood import render_gm  # fluidsynth + FluidR3_GM, one held note  # noqa: E402

    from synthmatch.training.match import aligned_window

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, program in programs.items():
            for note in notes:
                audio = render_gm(program, note, contract.synth.note_off_s, contract.audio.duration_s + 0.5,
                                  contract.audio.sample_rate, Path(tmp))
                window, _ = aligned_window(audio, contract, where=f"{name} note {note}")
                out.append((name, int(note), window))
    return out

