"""The multi-scale spectral distance (MSS) of training/model/metrics.py in numpy, for judging candidates.

For each FFT size n in MSS_N_FFTS (hop n // 4, periodic Hann window of n, centred frames with reflect
padding, as torch.stft with center=True): the spectral convergence ||S - S_hat||_F / max(||S||_F, SC_EPS)
plus the mean absolute difference of log(S + MSS_LOG_EPS), S the target's magnitude and S_hat a
candidate's; the scales are averaged. Equal to training.metrics.multiscale_spectral_distance to float32
rounding (tests/bridge/match/test_match_distance.py); the constants are repeated here because the runtime
cannot import training, and that test checks they agree.

    target = Target(audio)               # (T,): its spectra once
    d = target.distance(candidates)      # (C, T) -> (C,) float64
"""

from __future__ import annotations

import numpy as np

MSS_N_FFTS = (256, 512, 1024, 2048)  # hop n_fft // 4
MSS_LOG_EPS = 1e-7
SC_EPS = 1e-8  # floor of ||S||_F (a silent target)


def stft_magnitude(audio: np.ndarray, n_fft: int) -> np.ndarray:
    """(..., T) -> (..., frames, n_fft // 2 + 1) float32 linear magnitude, frames = 1 + T // hop, hop =
    n_fft // 4: torch.stft(center=True, pad_mode="reflect", periodic Hann window of n_fft). The FFT runs in
    float64: numpy's batched float64 FFT is about twice as fast as its float32 one."""
    x = np.asarray(audio, dtype=np.float64)
    pad = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, pad, mode="reflect"), n_fft, axis=-1)
    frames = frames[..., :: n_fft // 4, :] * _window(n_fft)
    return np.abs(np.fft.rfft(frames, axis=-1)).astype(np.float32, copy=False)


class Target:
    """A target sound's spectra at every scale, computed once; `distance` judges candidates against it."""

    def __init__(self, audio: np.ndarray, n_ffts: tuple[int, ...] = MSS_N_FFTS):
        """n_ffts: the scales (default: the metric's own; a subset is a cheaper distance of the same kind,
        what the matcher's polish stage judges by)."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"Target: audio must be one sound, shape (T,); got {audio.shape}")
        self.num_samples = len(audio)
        self._scales = []
        for n_fft in n_ffts:
            S = stft_magnitude(audio, n_fft)
            norm = max(float(np.sqrt(np.sum(np.square(S, dtype=np.float64)))), SC_EPS)
            self._scales.append((n_fft, S, np.log(S + np.float32(MSS_LOG_EPS)), norm))

    def at(self, n_ffts: tuple[int, ...]) -> Target:
        """The same target judged at some of its scales only, its spectra shared (nothing recomputed)."""
        scales = [scale for scale in self._scales if scale[0] in n_ffts]
        if len(scales) != len(n_ffts):
            raise ValueError(f"Target.at: {n_ffts} are not all among this target's scales")
        out = object.__new__(Target)
        out.num_samples, out._scales = self.num_samples, scales
        return out

    def distance(self, candidates: np.ndarray) -> np.ndarray:
        """candidates (C, T) or (T,) audio -> (C,) float64 MSS (a float64 scalar for one (T,) candidate)."""
        x = np.asarray(candidates, dtype=np.float32)
        if x.shape[-1] != self.num_samples or x.ndim not in (1, 2):
            raise ValueError(f"Target.distance: candidates must be (C, {self.num_samples}); got {x.shape}")
        total = np.zeros(x.shape[:-1], dtype=np.float64)
        for n_fft, S, log_S, norm in self._scales:
            S_hat = stft_magnitude(x, n_fft)
            sc = np.sqrt(np.sum(np.square(S - S_hat, dtype=np.float64), axis=(-2, -1))) / norm
            log_l1 = np.mean(np.abs(log_S - np.log(S_hat + np.float32(MSS_LOG_EPS))), axis=(-2, -1), dtype=np.float64)
            total += sc + log_l1
        return total / len(self._scales)


def mss(target: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """target (T,), candidates (C, T) -> (C,) float64 multi-scale spectral distance."""
    return Target(target).distance(candidates)


_windows: dict[int, np.ndarray] = {}


def _window(n: int) -> np.ndarray:
    """Periodic Hann window of n samples: torch.hann_window(n, periodic=True)'s float32 values, as float64."""
    if n not in _windows:
        w = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32).astype(np.float64)
        w.flags.writeable = False
        _windows[n] = w
    return _windows[n]
