"""The log-mel front-end, defined once from the contract.

The matrices built here (Hann window, real DFT basis, mel filterbank) are the only definition of the
front-end: training/model/frontend.py wraps them as torch buffers (so every model carries the front-end inside
its graph and exports take raw audio) and `log_mel` below is the numpy reference used by the daemon's
tools and by the equivalence tests.

Shapes: audio (..., num_samples) at contract.audio.sample_rate -> log-mel (..., n_mels, num_frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthmatch.bridge.core.contract import Contract


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)  # HTK


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(contract: Contract) -> np.ndarray:
    """Triangular HTK-mel filters on the power spectrum: (n_mels, n_fft // 2 + 1), float64."""
    fe, sr = contract.frontend, contract.audio.sample_rate
    n_bins = fe.n_fft // 2 + 1
    bin_hz = np.linspace(0.0, sr / 2, n_bins)
    edges = mel_to_hz(np.linspace(hz_to_mel(fe.f_min), hz_to_mel(fe.f_max), fe.n_mels + 2))
    lo, centre, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hz[None] - lo) / (centre - lo)
    falling = (hi - bin_hz[None]) / (hi - centre)
    return np.clip(np.minimum(rising, falling), 0.0, None)


def dft_basis(contract: Contract) -> tuple[np.ndarray, np.ndarray]:
    """Windowed real-DFT basis for STFT-as-convolution: (cos, sin), each (n_fft // 2 + 1, win_length).

    The frame is the first win_length samples of an n_fft-point DFT (the rest zero-padded), so only
    win_length taps are needed. Periodic Hann window.
    """
    n_fft, win = contract.frontend.n_fft, contract.win_length
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    k = np.arange(n_fft // 2 + 1)[:, None]
    phase = 2 * np.pi * k * np.arange(win)[None] / n_fft
    return np.cos(phase) * window, -np.sin(phase) * window


@dataclass(frozen=True)
class FrontendMatrices:
    cos: np.ndarray  # (n_bins, win)
    sin: np.ndarray  # (n_bins, win)
    mel: np.ndarray  # (n_mels, n_bins)


def matrices(contract: Contract) -> FrontendMatrices:
    cos, sin = dft_basis(contract)
    return FrontendMatrices(cos, sin, mel_filterbank(contract))


def frames(audio: np.ndarray, contract: Contract) -> np.ndarray:
    """(..., T) -> (..., num_frames, win_length) strided view, no centre padding."""
    win, hop = contract.win_length, contract.hop_length
    n = 1 + (audio.shape[-1] - win) // hop
    view = np.lib.stride_tricks.sliding_window_view(audio, win, axis=-1)
    return view[..., : (n - 1) * hop + 1 : hop, :]


def log_mel(audio: np.ndarray, contract: Contract, m: FrontendMatrices | None = None) -> np.ndarray:
    """Normalised log-mel, numpy float64 reference: (..., T) -> (..., n_mels, frames)."""
    m = m or matrices(contract)
    fe = contract.frontend
    x = frames(np.asarray(audio, dtype=np.float64), contract)  # (..., F, win)
    power = (x @ m.cos.T) ** 2 + (x @ m.sin.T) ** 2  # (..., F, bins)
    mel = power @ m.mel.T  # (..., F, n_mels)
    logmel = (np.log(mel + fe.log_eps) - fe.norm_mean) / (2 * fe.norm_std)
    return np.swapaxes(logmel, -1, -2)


# ------------------------------------------------------------------------------------------------
# The log-frequency (constant-Q) view: resolves oscillator pitch.
#
# 64 mel bands are ~40 Hz wide near C4, where a semitone is 15 Hz, and a 25 ms window cannot resolve
# less than ~40 Hz. The one-shots are static spectra under an envelope, so this view trades time for
# frequency: `bins_per_octave` log-spaced bins, each analysed by a Hann window Q periods long
# (Q = 1 / (2^(1/B) - 1): a bin's bandwidth equals its spacing), capped at `max_window` samples, read
# every `hop_s` seconds. At B = 36 the lowest bins (46 Hz) use ~1 s windows (~1 Hz resolution against a
# 3.9 Hz semitone at C2); at 8 kHz the window is ~6 ms. Bins are grouped so that each group is one
# strided convolution whose kernel is as long as its lowest bin needs (rows zero-padded, centred).
# The log-mel view above keeps the 10 ms time resolution the envelope needs.


@dataclass(frozen=True)
class CQTSpec:
    """Settings of the constant-Q view (a model's, stored in its config). Frequencies in Hz."""

    bins_per_octave: int = 36
    f_min: float = 46.25  # F#1, 2.5 octaves below C4: a few bins under the lowest fundamental (C2)
    f_max: float = 8000.0
    hop_s: float = 0.5  # frame hop; frame j is centred at (j + 1/2) hop (time detail is the mel view's job)
    max_window: int = 16384  # samples (1.02 s at 16 kHz)
    group: int = 12  # bins per convolution
    log_eps: float = 1e-9  # log(power + eps); a full-scale sine on a bin has power 0.25; -90 dB floor
    # (log power - mean) / (2 std): mean and std of log(power + eps) over 1024 random training patches
    # (seed 0, examples 1024..2047); most bins of a filtered harmonic sound sit at the floor
    norm_mean: float = -19.43
    norm_std: float = 2.694

    def __post_init__(self) -> None:
        if self.bins_per_octave < 12 or self.group < 1 or self.max_window < 16:
            raise ValueError("cqt: bins_per_octave must be >= 12, group >= 1, max_window >= 16")
        if not 0 < self.f_min < self.f_max or self.hop_s <= 0 or self.norm_std <= 0:
            raise ValueError("cqt: need 0 < f_min < f_max, hop_s > 0 and norm_std > 0")


@dataclass(frozen=True)
class CQTGroup:
    offset: int  # first sample of frame 0's kernel in the audio padded by pad samples on each side
    cos: np.ndarray  # (bins, length) windowed cosines, normalised so a unit sine on a bin gives |X| = 1/2
    sin: np.ndarray  # (bins, length)


@dataclass(frozen=True)
class CQTKernels:
    freqs: np.ndarray  # (n_bins,) centre frequencies, Hz
    hop: int  # samples
    n_frames: int
    pad: int  # zero samples added on each side of the window
    groups: tuple[CQTGroup, ...]


def cqt_freqs(spec: CQTSpec, sample_rate: int) -> np.ndarray:
    top = min(spec.f_max, sample_rate / 2 * 0.98)
    n = int(np.floor(spec.bins_per_octave * np.log2(top / spec.f_min))) + 1
    return spec.f_min * 2.0 ** (np.arange(n) / spec.bins_per_octave)


def cqt_kernels(spec: CQTSpec, sample_rate: int, num_samples: int) -> CQTKernels:
    freqs = cqt_freqs(spec, sample_rate)
    q = 1.0 / (2.0 ** (1.0 / spec.bins_per_octave) - 1.0)
    lengths = np.minimum(spec.max_window, np.ceil(q * sample_rate / freqs)).astype(int)
    hop = int(round(spec.hop_s * sample_rate))
    n_frames, pad = num_samples // hop, spec.max_window // 2
    groups = []
    for g in range(0, len(freqs), spec.group):
        f, n = freqs[g : g + spec.group], lengths[g : g + spec.group]
        length = int(n.max())
        t = np.arange(length) - length // 2  # sample offsets from the frame centre
        cos = np.zeros((len(f), length))
        sin = np.zeros((len(f), length))
        for i, (fi, ni) in enumerate(zip(f, n)):
            w = np.where(np.abs(t) < ni / 2, 0.5 + 0.5 * np.cos(2 * np.pi * t / ni), 0.0)
            w /= w.sum()
            cos[i] = w * np.cos(2 * np.pi * fi * t / sample_rate)
            sin[i] = -w * np.sin(2 * np.pi * fi * t / sample_rate)
        groups.append(CQTGroup(pad + hop // 2 - length // 2, cos, sin))
    return CQTKernels(freqs, hop, n_frames, pad, tuple(groups))


def log_cqt(audio: np.ndarray, spec: CQTSpec, sample_rate: int, k: CQTKernels | None = None) -> np.ndarray:
    """Normalised log constant-Q power, numpy float64 reference: (..., T) -> (..., n_bins, n_frames)."""
    audio = np.asarray(audio, dtype=np.float64)
    k = k or cqt_kernels(spec, sample_rate, audio.shape[-1])
    x = np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(k.pad, k.pad)])
    rows = []
    for g in k.groups:
        length = g.cos.shape[1]
        starts = g.offset + k.hop * np.arange(k.n_frames)
        frames = np.stack([x[..., s : s + length] for s in starts], axis=-2)  # (..., F, length)
        rows.append(np.swapaxes((frames @ g.cos.T) ** 2 + (frames @ g.sin.T) ** 2, -1, -2))
    power = np.concatenate(rows, axis=-2)  # (..., n_bins, F)
    return (np.log(power + spec.log_eps) - spec.norm_mean) / (2 * spec.norm_std)
