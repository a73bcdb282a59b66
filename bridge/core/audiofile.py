"""Reading and writing audio files for the tools (match, render, file input). numpy + soundfile + soxr."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class AudioFileError(ValueError):
    """An audio file cannot be used; the message names the file and what to do."""


def check_readable(path: str | Path) -> Path:
    """Raise AudioFileError saying what is wrong when `path` is missing, a folder or unreadable."""
    path = Path(path)
    if path.is_dir():
        raise AudioFileError(f"{path}: is a directory; give an audio file (wav, flac or ogg) inside it")
    if not path.exists():
        raise AudioFileError(f"{path}: no such file; check the path")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise AudioFileError(f"{path}: permission denied; make the file readable (chmod a+r) or copy it") from None
    except OSError as e:
        raise AudioFileError(f"{path}: cannot open it ({e.strerror}); check the path") from None
    return path


def read_mono(path: str | Path, sample_rate: int, channel: int | None = None, report: dict | None = None) -> np.ndarray:
    """Any soundfile-readable file (wav, flac, ogg, ...) -> float32 mono at sample_rate.

    channel None mixes all channels down; an int picks one (0-based). NaN and infinite samples become
    0; `report` (a dict), if given, receives what the file held: "frames" and "sample_rate" (as
    stored), "nonfinite" (samples replaced), "clipped" (finite samples at |x| >= 0.999).
    """
    import soundfile as sf
    import soxr

    path = check_readable(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (frames, channels)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError for corrupt files
        raise AudioFileError(f"{path}: cannot read audio ({e}); use a wav, flac or ogg file") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"{path}: the file holds no audio frames")
    if report is not None:
        finite = np.isfinite(data)
        report.update(
            frames=int(data.shape[0]),
            sample_rate=int(sr),
            nonfinite=int(data.size - finite.sum()),
            clipped=int(np.count_nonzero(np.abs(np.where(finite, data, 0)) >= 0.999)),
        )
    data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)  # before mixing: one NaN must not spread
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


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """A mono 32-bit float WAV file's bytes with the standard header every reader takes: an 18-byte fmt
    chunk (WAVE_FORMAT_IEEE_FLOAT, cbSize 0) and a fact chunk, then the data. (libsndfile's FLOAT subtype
    writes a 16-byte fmt chunk, which sox warns about: "wave header missing extended part of fmt chunk".)"""
    import struct

    data = np.ascontiguousarray(np.asarray(audio, dtype="<f4").reshape(-1)).tobytes()
    fmt = struct.pack("<HHIIHHH", 3, 1, int(sample_rate), int(sample_rate) * 4, 4, 32, 0)  # IEEE float, mono
    chunks = b"".join(
        (
            b"fmt " + struct.pack("<I", len(fmt)) + fmt,
            b"fact" + struct.pack("<II", 4, len(data) // 4),
            b"data" + struct.pack("<I", len(data)) + data,
        )
    )
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def write(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Mono 32-bit float WAV (`wav_bytes`), parent folders created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_bytes(audio, sample_rate))
