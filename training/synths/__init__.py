"""The synth seam: one interface over every synth that renders datasets, matches and refinements.

    synth = open_synth("reference", contract)                        # training.synths.reference.ReferenceSynth
    synth = open_synth("vst3:/path/SMTest.vst3", contract, "smtest")  # a VST3 instrument via pedalboard
    audio = synth.render(params)      # (N, 16) normalised float32 -> (N, num_samples) float32 mono at
                                      # the contract's rate; row i depends only on params[i]
    synth.identity                    # "reference" or "vst3:NAME VERSION (MAKER) profile=P@FINGERPRINT":
                                      # stored with datasets (and models) so another synth's are refused
    synth.sampling                    # PresetSampling to draw datasets from, or None (the contract's)
    synth.mapped                      # contract names the synth hears (a plugin's profile may pin others)

A model carries the identity of the synth its data came from (training.model.checkpoint, the ONNX metadata),
and `match --synth`, resumed training and the like refuse another synth's (check_identity). The
identity names the plugin, its version and maker and the profile's name and fingerprint (a hash of its
mapping, fixed values, sampling and render settings), never a path: a model trained on one machine
matches on another with the same plugin and profile.

Specs are "reference" or "vst3:PATH"; a VST3 needs a profile (configs/synths/, training.synths.profile).
The seam itself (Synth, SynthError, REFERENCE) is synths/base.py, which every synth imports; the synths
(reference: the torch ReferenceSynth and its adapter; vst3) are opened from here, imported when opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthmatch.bridge.core.contract import Contract
from synthmatch.training.synths.base import REFERENCE, Synth, SynthError
from synthmatch.training.synths.sampling import PresetSampling, sample_params


@dataclass(frozen=True)
class SynthSpec:
    """What a worker process needs to open the same synth again (picklable, small)."""

    kind: str  # "reference" | "vst3"
    path: str = ""
    profile: str = ""  # profile file path (vst3)

    def open(self, contract: Contract, check: bool = True) -> Synth:
        """check: refuse a plugin that renders silence (workers skip it: their parent checked)."""
        if self.kind == REFERENCE:
            from synthmatch.training.synths.reference import Reference

            return Reference(contract)
        from synthmatch.training.synths.vst3 import Vst3Synth

        return Vst3Synth(self.path, contract, self.profile, check_silence=check)


def parse_spec(spec: str, profile: str | Path | None = None) -> SynthSpec:
    """ "reference" | "vst3:PATH" (+ a profile for vst3) -> SynthSpec; bad specs raise SynthError."""
    if spec == REFERENCE:
        if profile:
            raise SynthError("--profile is for plugins (--synth vst3:PATH); the reference synth has none")
        return SynthSpec(REFERENCE)
    kind, sep, path = spec.partition(":")
    if kind != "vst3" or not sep or not path:
        raise SynthError(f'unknown synth {spec!r}; use "reference" or "vst3:PATH" (PATH: a .vst3 bundle)')
    if not profile:
        raise SynthError(
            f"{spec}: a plugin needs --profile (a configs/synths/ name or a TOML file), e.g. --profile smtest"
        )
    return SynthSpec("vst3", str(Path(path).expanduser()), str(profile))


def open_synth(spec: str, contract: Contract, profile: str | Path | None = None) -> Synth:
    return parse_spec(spec, profile).open(contract)


def check_identity(trained: str, used: str, what: str, fix: str) -> None:
    """Refuse to use something trained on synth `trained` with synth `used`: a one-line SynthError that
    names both. what: the thing and where (e.g. "model.onnx"); fix: what to do instead."""
    if trained != used:
        raise SynthError(f"{what} was trained on synth {trained!r}, not on {used!r}; {fix}")


class SynthRenderer:
    """training.data.onthefly.Renderer's interface over any synth: render(start, stop) -> (audio, params)
    torch tensors for examples start..stop-1 of the (seed, sampling) stream."""

    def __init__(self, synth: Synth, seed: int, presets: PresetSampling | None):
        self.synth, self.seed, self.presets = synth, int(seed), presets

    def render(self, start: int, stop: int):
        import torch

        p = sample_params(self.synth.contract, self.seed, range(start, stop), self.presets)
        return torch.from_numpy(np.ascontiguousarray(self.synth.render(p), dtype=np.float32)), torch.from_numpy(p)
