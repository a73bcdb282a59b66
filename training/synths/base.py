"""The synth seam: the Synth base class every synth implements, its error, and the reference synth's name.
Opening one by spec (open_synth, SynthSpec) is in the package; the synths import only this."""

from __future__ import annotations

import numpy as np

from synthmatch.bridge.core.contract import Contract, ContractError
from synthmatch.training.synths.sampling import PresetSampling

REFERENCE = "reference"


class SynthError(ContractError):
    """A synth cannot be opened or used (missing plugin, wrong kind, silent); the message says what to do."""


class Synth:
    """Base class: subclasses set identity/contract/sampling and implement render."""

    identity: str
    contract: Contract
    sampling: PresetSampling | None = None

    @property
    def mapped(self) -> tuple[str, ...]:
        return tuple(self.contract.names)

    def mean_patch(self) -> np.ndarray:
        """(16,) float32: every parameter at the mean of this synth's sampling (pinned ones at their pin)."""
        from synthmatch.training.synths.sampling import distribution_mean

        samples = self.sampling.samples if self.sampling else [p.sample for p in self.contract.params]
        return np.array([distribution_mean(s) for s in samples], np.float32)

    def render(self, params: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass
