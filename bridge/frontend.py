"""The log-mel front-end, defined once from the contract.

The matrices built here (Hann window, real DFT basis, mel filterbank) are the only definition of the
front-end: training/frontend.py wraps them as torch buffers (so every model carries the front-end inside
its graph and exports take raw audio) and `log_mel` below is the numpy reference used by the daemon's
tools and by the equivalence tests.

Shapes: audio (..., num_samples) at contract.audio.sample_rate -> log-mel (..., n_mels, num_frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge.contract import Contract


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
