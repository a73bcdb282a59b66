"""The log-mel front-end as a torch module, built from bridge.frontend's matrices.

Every model owns one, so models take raw audio and exports carry the front-end in their graph. The STFT
is a strided conv1d with a fixed windowed-DFT basis: exportable to ONNX opset 17 and TensorRT-friendly
(no complex tensors, no torch.stft).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from synthmatch.bridge.core import frontend as ref
from synthmatch.bridge.core.contract import Contract


class LogMel(nn.Module):
    """(B, T) float audio at the contract rate -> (B, n_mels, frames) normalised log-mel."""

    def __init__(self, contract: Contract):
        super().__init__()
        m = ref.matrices(contract)
        basis = torch.cat([torch.from_numpy(m.cos), torch.from_numpy(m.sin)])  # (2 * bins, win)
        self.register_buffer("basis", basis.float().unsqueeze(1), persistent=False)  # (2 * bins, 1, win)
        self.register_buffer("mel", torch.from_numpy(m.mel).float(), persistent=False)  # (n_mels, bins)
        fe = contract.frontend
        self.hop = contract.hop_length
        self.n_bins = m.cos.shape[0]
        self.log_eps, self.mean, self.scale = fe.log_eps, fe.norm_mean, 2.0 * fe.norm_std

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = nn.functional.conv1d(audio.float().unsqueeze(1), self.basis, stride=self.hop)  # (B, 2*bins, F)
        re, im = spec[:, : self.n_bins], spec[:, self.n_bins :]
        mel = torch.matmul(self.mel, re * re + im * im)  # (B, n_mels, F)
        return (torch.log(mel + self.log_eps) - self.mean) / self.scale


class LogCQT(nn.Module):
    """(B, T) float audio -> (B, n_bins, n_frames) normalised log constant-Q power (bridge.frontend's
    kernels: one strided conv1d per group of bins, kernels as long as the group's lowest bin needs)."""

    def __init__(self, spec: ref.CQTSpec, sample_rate: int, num_samples: int):
        super().__init__()
        k = ref.cqt_kernels(spec, sample_rate, num_samples)
        self.hop, self.pad, self.n_frames, self.n_bins = k.hop, k.pad, k.n_frames, len(k.freqs)
        self.freqs = k.freqs  # (n_bins,) Hz
        self.log_eps, self.mean, self.scale = spec.log_eps, spec.norm_mean, 2.0 * spec.norm_std
        self.spans: list[tuple[int, int, int]] = []  # (offset, length, bins) per group
        for i, g in enumerate(k.groups):
            basis = torch.from_numpy(np.concatenate([g.cos, g.sin])).float().unsqueeze(1)  # (2 bins, 1, L)
            self.register_buffer(f"basis{i}", basis, persistent=False)
            self.spans.append((g.offset, g.cos.shape[1], g.cos.shape[0]))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(audio.float(), (self.pad, self.pad)).unsqueeze(1)  # (B, 1, T + 2 pad)
        rows = []
        for i, (offset, length, bins) in enumerate(self.spans):
            end = offset + (self.n_frames - 1) * self.hop + length
            spec = nn.functional.conv1d(x[..., offset:end], getattr(self, f"basis{i}"), stride=self.hop)
            re, im = spec[:, :bins], spec[:, bins:]  # (B, bins, F)
            rows.append(re * re + im * im)
        power = torch.cat(rows, dim=1)  # (B, n_bins, F)
        return (torch.log(power + self.log_eps) - self.mean) / self.scale
