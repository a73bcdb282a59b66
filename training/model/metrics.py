"""Evaluation metrics in torch: parameter MSE, spectral convergence, multi-scale spectral distance.

All spectral metrics are computed per example, then averaged by the caller; the STFT settings are
constants (SC_STFT, MSS_STFT) that evaluation outputs carry, so numbers are comparable across runs.

- param MSE: mean over examples (and parameters) of (v_hat - v)^2 on normalised values in [0, 1].
- spectral convergence: SC = ||S - S_hat||_F / ||S||_F with S the linear STFT magnitude of the target
  and S_hat of the re-rendered prediction (Arik et al. 2019; the metric of Bruford et al. 2024).
  0 for identical sounds; a silent target divides by SC_EPS instead of 0.
- multi-scale spectral distance: for each FFT size in MSS_STFT, SC plus the mean absolute difference of
  log magnitudes (log(S + eps)), averaged over the scales (as in DDSP-style multi-scale losses).
"""

from __future__ import annotations

import torch

SC_N_FFT, SC_HOP = 1024, 256  # samples (64 ms / 16 ms at 16 kHz)
MSS_N_FFTS = (256, 512, 1024, 2048)  # hop n_fft // 4
MSS_LOG_EPS = 1e-7
SC_STFT = {
    "n_fft": SC_N_FFT,
    "hop_length": SC_HOP,
    "win_length": SC_N_FFT,
    "window": "hann (periodic)",
    "center": True,
    "pad_mode": "reflect",
    "magnitude": "linear |STFT|",
    "norm": "Frobenius per example",
}
MSS_STFT = {
    "n_ffts": list(MSS_N_FFTS),
    "hop_length": "n_fft // 4",
    "win_length": "n_fft",
    "window": "hann (periodic)",
    "center": True,
    "pad_mode": "reflect",
    "log_eps": MSS_LOG_EPS,
    "per_scale": "SC + mean |log(S + eps) - log(S_hat + eps)|",
    "combine": "mean over scales",
}
SC_EPS = 1e-8  # floor of ||S||_F (a silent target)


def param_mse(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pred, target (N, P) -> (overall MSE scalar, per-parameter MSE (P,))."""
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(f"pred and target must both be (N, P); got {tuple(pred.shape)} and {tuple(target.shape)}")
    per = ((pred.double() - target.double()) ** 2).mean(0)
    return per.mean(), per


def stft_magnitude(audio: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """(B, T) -> (B, n_fft // 2 + 1, frames) linear magnitude; Hann window of n_fft, centred frames."""
    window = torch.hann_window(n_fft, periodic=True, dtype=audio.dtype, device=audio.device)
    spec = torch.stft(
        audio,
        n_fft,
        hop_length=hop_length,
        win_length=n_fft,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    return spec.abs()


def spectral_convergence_spec(S: torch.Tensor, S_hat: torch.Tensor) -> torch.Tensor:
    """Magnitudes (B, ...) -> (B,) ||S - S_hat||_F / max(||S||_F, SC_EPS) per example."""
    diff = (S - S_hat).flatten(1).norm(dim=1)
    return diff / S.flatten(1).norm(dim=1).clamp(min=SC_EPS)


def spectral_convergence(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Audio (B, T) target and prediction -> (B,) SC with the SC_STFT settings."""
    return spectral_convergence_spec(stft_magnitude(target, SC_N_FFT, SC_HOP), stft_magnitude(pred, SC_N_FFT, SC_HOP))


def multiscale_spectral_distance(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Audio (B, T) target and prediction -> (B,) distance with the MSS_STFT settings."""
    eps, total = MSS_LOG_EPS, torch.zeros(len(target), dtype=target.dtype, device=target.device)
    for n_fft in MSS_N_FFTS:
        S, S_hat = stft_magnitude(target, n_fft, n_fft // 4), stft_magnitude(pred, n_fft, n_fft // 4)
        log_l1 = (torch.log(S + eps) - torch.log(S_hat + eps)).abs().flatten(1).mean(1)
        total = total + spectral_convergence_spec(S, S_hat) + log_l1
    return total / len(MSS_N_FFTS)


PITCH_MIN_GAIN = 1 / 3  # oscillators quieter than this are not scored for pitch (often inaudible)
PITCH_TOL = 1.0  # semitones


def pitch_accuracy(pred, target, contract, min_gain: float = PITCH_MIN_GAIN, tol: float = PITCH_TOL) -> dict:
    """Share of audible oscillators (true gain >= min_gain) whose predicted pitch is within `tol`
    semitones of the true one. pred, target: (N, 16) normalised (numpy or torch).
    -> {"within": share, "count": oscillators scored, per oscillator "oscK_pitch": share}."""
    import numpy as np

    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    names = list(contract.names)
    out: dict = {}
    hits = total = 0
    for i, p in enumerate(contract.params):
        if p.unit != "semitones":
            continue
        gain = names.index(p.name.replace("_pitch", "_gain"))
        audible = target[:, gain] >= min_gain
        err = np.abs(p.to_physical(pred[audible, i]) - p.to_physical(target[audible, i]))
        out[p.name] = float((err <= tol).mean()) if audible.any() else float("nan")
        hits, total = hits + int((err <= tol).sum()), total + int(audible.sum())
    out.update(within=hits / total if total else float("nan"), count=total, tol_semitones=tol, min_gain=min_gain)
    return out
