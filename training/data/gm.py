"""General MIDI test notes: FluidR3 instruments rendered by fluidsynth, the out-of-domain sounds of evaluation
(scripts/eval_ood.py, eval_notes.py, compare_pitch.py, bench_match.py, bench_performance.py; training.notesets).

Needs Debian's fluidsynth and fluid-soundfont-gm (scripts/setup.sh installs them).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import mido
import numpy as np

from synthmatch.bridge.core import audiofile

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
INSTRUMENTS = {  # GM program numbers, 0-based
    "square lead": 80,
    "saw lead": 81,
    "synth bass": 38,
    "warm pad": 89,
    "new age pad": 88,
    "synth brass": 62,
    "brass section": 61,
    "string ensemble": 48,
    "drawbar organ": 16,
    "church organ": 19,
    "acoustic piano": 0,
    "electric piano": 4,
    "flute": 73,
    "oboe": 68,
    "vibraphone": 11,
    "violin": 40,
}


def render_midi(midi: mido.MidiFile, workdir: Path, name: str, sr: int) -> np.ndarray:
    """A MIDI file through fluidsynth (FluidR3, gain 0.6, 44.1 kHz; workdir/NAME.mid and .wav) -> (T,) float32
    at sr."""
    mid_path, wav_path = workdir / f"{name}.mid", workdir / f"{name}.wav"
    midi.save(mid_path)
    subprocess.run(
        ["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", "44100", "-F", str(wav_path), str(SOUNDFONT), str(mid_path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return audiofile.read_mono(wav_path, sr)


def render_gm(program: int, note: int, hold_s: float, total_s: float, sr: int, workdir: Path) -> np.ndarray:
    """One note of a GM program through fluidsynth -> (T,) float32 at sr."""
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    tempo = 500000  # us per beat: 480 ticks = 0.5 s
    ticks = lambda s: int(round(s / 0.5 * 480))  # noqa: E731
    track += [
        mido.MetaMessage("set_tempo", tempo=tempo),
        mido.Message("program_change", program=program),
        mido.Message("note_on", note=note, velocity=100, time=ticks(0.1)),
        mido.Message("note_off", note=note, velocity=0, time=ticks(hold_s)),
        mido.MetaMessage("end_of_track", time=ticks(total_s - hold_s)),
    ]
    return render_midi(midi, workdir, f"gm{program}-{note}", sr)
