"""Output heads: a model's raw outputs -> the 16 normalised values, and the training loss on them.

- "mse": 16 sigmoids, mean squared error on the normalised parameters (the paper's).
- "pitch-cls": each oscillator pitch (a parameter in semitones) as a class over the whole semitones of
  its range plus a residual in [-1/2, 1/2] semitone; cross-entropy on the class, squared error on the
  residual. The other parameters keep sigmoid + squared error. An oscillator that cannot be heard has no
  pitch or table to learn, so its pitch and position terms are weighted by its audibility,
  min(1, gain / AUDIBLE_GAIN): full weight from gain 1/3 up, none at gain 0.

Both decode to (B, 16) values in [0, 1], contract order; the decoding is plain tensor ops (ArgMax,
GatherElements), so it exports to ONNX inside the model. The pitch-cls head also says how sure it is:
`top_classes` gives each oscillator's TOP_K most probable classes as pitch values (decoded as `decode`
does) and their probabilities, which export adds as extra graph outputs (bridge.core.modelfile
PITCH_TOP_NAME, PITCH_PROB_NAME) and the matcher starts from (bridge/match/candidates.py).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from synthmatch.bridge.core.contract import Contract

HEADS = ("mse", "pitch-cls")
AUDIBLE_GAIN = 1 / 3  # gain (linear amplitude into the filters) from which an oscillator counts fully
CE_WEIGHT = 0.05  # cross-entropy (nats) against squared error of normalised values (~0.01-0.08)
RESIDUAL_WEIGHT = 0.05  # squared residual error in semitones
TOP_K = 3  # pitch classes per oscillator exported with their probabilities: the answer and two alternatives


def carried_mask(contract: Contract, carries: tuple[str, ...] = ()) -> torch.Tensor:
    """(16,) float: 1 for the parameters a model answers for (`carries`; () = all), else 0. Their loss
    terms are the only ones trained: a performance model is not asked what its window cannot reveal."""
    unknown = [n for n in carries if n not in contract.names]
    if unknown:
        raise ValueError(f"model carries {unknown[0]!r}, which is not a contract parameter")
    return torch.tensor([1.0 if not carries or n in carries else 0.0 for n in contract.names])


class MSEHead(nn.Module):
    def __init__(self, contract: Contract, carries: tuple[str, ...] = ()):
        super().__init__()
        self.n_raw = len(contract.params)
        self.register_buffer("mask", carried_mask(contract, carries), persistent=False)

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(raw)

    def loss(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sq = (torch.sigmoid(raw) - target) ** 2 * self.mask
        return sq.sum(1).mean() / self.mask.sum()


class PitchClassHead(nn.Module):
    """Raw layout (B, n_raw): the non-pitch parameters' logits in contract order, then per oscillator
    n_classes class logits and one residual logit."""

    def __init__(self, contract: Contract, carries: tuple[str, ...] = ()):
        super().__init__()
        names = contract.names
        self.register_buffer("mask", carried_mask(contract, carries), persistent=False)
        pitch = [i for i, p in enumerate(contract.params) if p.unit == "semitones"]
        if not pitch:
            raise ValueError("head pitch-cls: the contract has no parameter in semitones")
        lo, hi = contract.params[pitch[0]].min, contract.params[pitch[0]].max
        if any((contract.params[i].min, contract.params[i].max) != (lo, hi) for i in pitch):
            raise ValueError("head pitch-cls: every pitch parameter needs the same range")
        self.lo, self.span, self.n_classes = lo, hi - lo, int(round(hi - lo)) + 1
        self.pitch = pitch
        self.other = [i for i in range(len(names)) if i not in pitch]
        self.n_raw = len(self.other) + len(pitch) * (self.n_classes + 1)
        # audibility weights: oscillator k's pitch and position follow its gain (names oscK_*)
        gain = {n.split("_")[0]: i for i, n in enumerate(names) if n.endswith("_gain")}
        weighted = [
            (i, gain[n.split("_")[0]])
            for i, n in enumerate(names)
            if n.split("_")[0] in gain and not n.endswith("_gain")
        ]
        self.register_buffer("w_idx", torch.tensor([i for i, _ in weighted]), persistent=False)
        self.register_buffer("w_gain", torch.tensor([g for _, g in weighted]), persistent=False)
        order = torch.empty(len(names), dtype=torch.long)  # decode: [others, pitches] -> contract order
        order[torch.tensor(self.other + pitch)] = torch.arange(len(names))
        self.register_buffer("order", order, persistent=False)

    def _split(self, raw: torch.Tensor):
        n_other, c = len(self.other), self.n_classes
        per_osc = raw[:, n_other:].reshape(raw.shape[0], len(self.pitch), c + 1)
        return raw[:, :n_other], per_osc[..., :c], 0.5 * torch.tanh(per_osc[..., c])  # (B, P, C), (B, P)

    def decode(self, raw: torch.Tensor) -> torch.Tensor:
        other, logits, residual = self._split(raw)
        cls = torch.argmax(logits, dim=-1, keepdim=True)  # (B, P, 1)
        semis = cls.squeeze(-1).to(raw.dtype) + residual  # semitones above the range's bottom
        pitch = torch.clamp(semis / self.span, 0.0, 1.0)
        return torch.cat([torch.sigmoid(other), pitch], dim=1)[:, self.order]

    def top_classes(self, raw: torch.Tensor, k: int = TOP_K) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n_raw) -> each oscillator's k most probable pitch classes, most probable first:
        (B, P, k) normalised pitch values (the class's semitone plus the oscillator's predicted residual,
        clamped to [0, 1], as `decode` does: column 0 is decode's pitch) and (B, P, k) their softmax
        probabilities. P = the pitch parameters in contract order (self.pitch). TopK + Softmax in ONNX."""
        _, logits, residual = self._split(raw)
        prob, cls = torch.topk(torch.softmax(logits.float(), dim=-1), k, dim=-1)  # (B, P, k) each
        semis = cls.to(raw.dtype) + residual[..., None]
        return torch.clamp(semis / self.span, 0.0, 1.0), prob.to(raw.dtype)

    def weights(self, target: torch.Tensor) -> torch.Tensor:
        """(B, 16) per-parameter loss weights: audibility for oscillator pitch and position, else 1."""
        w = torch.ones_like(target)
        w[:, self.w_idx] = torch.clamp(target[:, self.w_gain] / AUDIBLE_GAIN, max=1.0)
        return w * self.mask

    def loss(self, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        other, logits, residual = self._split(raw)
        w = self.weights(target)
        sq = (torch.sigmoid(other) - target[:, self.other]) ** 2 * w[:, self.other]  # (B, 13)
        semis = target[:, self.pitch] * self.span  # (B, P)
        cls = torch.clamp(torch.round(semis), 0, self.n_classes - 1)
        ce = F.cross_entropy(logits.flatten(0, 1), cls.long().flatten(), reduction="none").view_as(semis)
        res = (residual - (semis - cls)) ** 2
        pitch_terms = (CE_WEIGHT * ce + RESIDUAL_WEIGHT * res) * w[:, self.pitch]
        return (sq.sum(1) + pitch_terms.sum(1)).mean() / self.mask.sum()


def make_head(name: str, contract: Contract, carries: tuple[str, ...] = ()) -> MSEHead | PitchClassHead:
    if name == "mse":
        return MSEHead(contract, carries)
    if name == "pitch-cls":
        return PitchClassHead(contract, carries)
    raise ValueError(f"unknown head {name!r}; use one of {', '.join(HEADS)}")


class HarmonicSalience(nn.Module):
    """Pitch-class evidence read straight off the constant-Q view, added to the pitch-cls head's class
    logits: for class c (a whole-semitone offset from the played note) and oscillator k,
        logit[k, c] = sum_h,d W[k, h, d] * q[bin(f_c * h) + d]
    over harmonics h = 1..n_harmonics and bin offsets d in -1..1, with q the time-averaged constant-Q
    view. A harmonic sum with learned, per-oscillator weights (each oscillator's table has its own
    harmonic pattern); W starts at zero, so the model starts as without it."""

    def __init__(self, head: PitchClassHead, freqs, played_hz: float, n_harmonics: int = 8):
        super().__init__()
        import numpy as np

        freqs = np.asarray(freqs, dtype=np.float64)
        bins_per_octave = 1.0 / np.log2(freqs[1] / freqs[0])
        c = np.arange(head.n_classes) + head.lo  # semitone offsets
        f = played_hz * 2.0 ** (c / 12)
        h = np.arange(1, n_harmonics + 1)
        centre = np.round(bins_per_octave * np.log2(f[:, None] * h[None] / freqs[0]))  # (C, H)
        idx = centre[..., None] + np.array([-1, 0, 1])  # (C, H, 3)
        self.register_buffer("mask", torch.from_numpy((idx >= 0) & (idx < len(freqs))).float(), persistent=False)
        self.register_buffer("idx", torch.from_numpy(np.clip(idx, 0, len(freqs) - 1)).long(), persistent=False)
        self.weight = nn.Parameter(torch.zeros(len(head.pitch), n_harmonics, 3))
        self.n_other, self.n_classes, self.n_pitch = len(head.other), head.n_classes, len(head.pitch)

    def forward(self, cqt: torch.Tensor) -> torch.Tensor:
        """(B, n_bins, frames) -> (B, n_raw) additive logits in PitchClassHead's raw layout."""
        q = cqt.mean(-1)  # (B, n_bins)
        feats = q[:, self.idx] * self.mask  # (B, C, H, 3)
        logits = torch.einsum("bchd,khd->bkc", feats, self.weight)  # (B, P, C)
        pad = logits.new_zeros(logits.shape[0], self.n_pitch, 1)  # residual logits untouched
        per_osc = torch.cat([logits, pad], dim=-1).flatten(1)  # (B, P * (C + 1))
        return torch.cat([logits.new_zeros(logits.shape[0], self.n_other), per_osc], dim=1)
