"""Reading and writing audio files for the tools (match, render, file input). numpy + soundfile + soxr."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class AudioFileError(ValueError):
    """An audio file cannot be used; the message names the file and what to do."""


def read_mono(path: str | Path, sample_rate: int, channel: int | None = None) -> np.ndarray:
    """Any soundfile-readable file (wav, flac, ogg, ...) -> float32 mono at sample_rate.

    channel None mixes all channels down; an int picks one (0-based).
    """
    import soundfile as sf
    import soxr

    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such file; check the path")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (frames, channels)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError for corrupt files
        raise AudioFileError(f"{path}: cannot read audio ({e}); use a wav, flac or ogg file") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"{path}: the file holds no audio frames")
    if channel is None:
        mono = data.mean(axis=1)
    elif 0 <= channel < data.shape[1]:
        mono = data[:, channel]
    else:
        raise AudioFileError(f"{path}: channel {channel} asked for, the file has {data.shape[1]}")
    if sr != sample_rate:
        mono = soxr.resample(mono, sr, sample_rate, quality="HQ")
    mono = np.nan_to_num(np.asarray(mono, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return mono


def write(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Mono float32 WAV (subtype FLOAT), parent folders created."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(audio, dtype=np.float32), sample_rate, subtype="FLOAT")
