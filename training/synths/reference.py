"""The reference synth behind the seam: training.synth.ReferenceSynth, CPU, numpy in and out."""

from __future__ import annotations

import numpy as np
import torch

from synthmatch.bridge.core.contract import Contract
from synthmatch.training.synth import ReferenceSynth
from synthmatch.training.synths import REFERENCE, Synth

RENDER_GROUP = 8  # as training.data: fixed groups keep example i bit-identical whatever N


class Reference(Synth):
    identity = REFERENCE

    def __init__(self, contract: Contract, device: str = "cpu"):
        self.contract = contract
        self.device = torch.device(device)
        self._synth = ReferenceSynth(contract, chunk=RENDER_GROUP)
        self.note: float | None = None  # MIDI note played; None = the contract's (match sets the heard one)

    def render(self, params: np.ndarray) -> np.ndarray:
        p = torch.as_tensor(np.asarray(params, dtype=np.float32)).reshape(-1, len(self.contract.params))
        return self._synth.render(p.to(self.device), note=self.note).cpu().numpy()
