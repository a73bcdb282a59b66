"""The log-mel front-end as a torch module, built from bridge.frontend's matrices.

Every model owns one, so models take raw audio and exports carry the front-end in their graph. The STFT
is a strided conv1d with a fixed windowed-DFT basis: exportable to ONNX opset 17 and TensorRT-friendly
(no complex tensors, no torch.stft).
"""

from __future__ import annotations

import torch
from torch import nn

from bridge import frontend as ref
from bridge.contract import Contract


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
        re, im = spec[:, : self.n_bins], spec[:, self.n_bins:]
        mel = torch.matmul(self.mel, re * re + im * im)  # (B, n_mels, F)
        return (torch.log(mel + self.log_eps) - self.mean) / self.scale
