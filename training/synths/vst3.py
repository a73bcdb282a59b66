"""A VST3 instrument behind the seam, hosted by pedalboard (JUCE), driven by a synth profile.

One render of a patch (N patches render one after another, one plugin instance per process):

    set every [fixed] and mapped parameter (raw host values, training.synths.profile)
    -> plugin.process(note-on at 0, note-off at contract synth.note_off_s, duration_s, native rate,
                      reset=True: the plugin is reset first, so a render depends only on its patch)
    -> mono mix-down (mean of the channels) -> soxr resampling, native rate -> the contract's rate
    -> exactly num_samples float32

Resetting: pedalboard cannot tell whether an instrument clears its sound on reset, so by default it
re-creates the instance on every reset (state saved and restored, 10 ms of message-loop pumping and a
warm-up note): ~11 ms of the test instrument's ~14 ms render, and far more for a large synth. With
[render] reset = "auto" (the default) this host checks once, on load, that the plugin's own reset
clears it (patch A renders bit-identically on the fresh instance and after a held, loud patch B) and
then keeps the instance, resetting it in place; a plugin that fails the check keeps being
re-created. Either way a render is a pure function of its patch.

Pedalboard's own parameter wrappers probe every parameter's text at 1,001 values on load (seconds per
hundred parameters); this host reads the plugin's native parameter list instead and sets raw values.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from synthmatch.bridge.core.contract import Contract
from synthmatch.training.synths import profile as profile_mod
from synthmatch.training.synths.base import Synth, SynthError
from synthmatch.training.synths.sampling import distribution_mean

SILENCE_PEAK = 1e-5  # a mean-patch render quieter than this (-100 dBFS) means the plugin is silent


def _plugin_class():
    import pedalboard

    class _Plugin(pedalboard.VST3Plugin):  # type: ignore[misc]
        def __set_initial_parameter_values__(self, values):  # skip pedalboard's per-parameter probing
            pass

    return _Plugin


def load_plugin(path: str | Path, init_timeout_s: float = 10.0):
    """Load a VST3 bundle; every failure is a SynthError that says what was wrong."""
    p = Path(path)
    if not p.exists():
        raise SynthError(
            f"{p}: no such plugin; give the path of a .vst3 bundle (a folder on Linux and macOS, "
            "a folder or file on Windows)"
        )
    if p.suffix.lower() != ".vst3":
        raise SynthError(f"{p}: not a .vst3 bundle; give the path of the plugin's .vst3 (see docs/massive-guide.md)")
    try:
        return _plugin_class()(str(p), initialization_timeout=float(init_timeout_s))
    except Exception as e:  # pedalboard raises ImportError, RuntimeError or ValueError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SynthError(
            f"{p}: pedalboard cannot load it as a VST3 plugin ({first}); check that the file is "
            "a VST3 built for this machine"
        ) from None


class Vst3Synth(Synth):
    def __init__(
        self,
        path: str | Path,
        contract: Contract,
        profile: str | Path | profile_mod.Profile,
        check_silence: bool = True,
    ):
        self.contract, self.path = contract, str(path)
        self.profile = profile if isinstance(profile, profile_mod.Profile) else profile_mod.load(profile, contract)
        self.plugin = load_plugin(path, self.profile.render.init_timeout_s)
        if not self.plugin.is_instrument:
            raise SynthError(
                f"{path}: {self.plugin.name!r} is an effect (it takes no MIDI notes), not an "
                "instrument; give a synth plugin"
            )
        if self.plugin.name != self.profile.plugin:
            raise SynthError(
                f"{path}: the plugin is {self.plugin.name!r} but profile {self.profile.source} is for "
                f"{self.profile.plugin!r}; pass that plugin's profile (or write one: configs/synths/)"
            )
        self.identity = (
            f"vst3:{self.plugin.name} {self.plugin.version} ({self.plugin.manufacturer_name}) "
            f"profile={self.profile.name}@{self.profile.fingerprint}"
        )
        self.sampling = self.profile.presets_sampling(contract)
        self._bind()
        a, s = contract.audio, contract.synth
        import mido

        self._midi = [
            mido.Message("note_on", note=a.note, velocity=self.profile.render.velocity, time=0.0),
            mido.Message("note_off", note=a.note, velocity=0, time=float(s.note_off_s)),
        ]
        self.reset_mode: str | None = None  # "clear" | "reinstantiate", chosen at the first render
        if check_silence:
            self._check_not_silent()

    def _bind(self) -> None:
        """Resolve every profile name to the plugin's parameter, or fail listing the closest names."""
        params = {p.name: k for k, p in enumerate(self.plugin._parameters)}  # name -> position
        names = list(params)
        missing = [n for n in self.profile.host_names() if n not in params]
        if missing:
            lines = "; ".join(f"{n!r} (closest: {profile_mod.closest(n, names)})" for n in missing)
            raise SynthError(
                f"{self.profile.source}: plugin {self.plugin.name!r} has no parameter named {lines}. "
                "Use the names the plugin gives host automation (as a DAW's automation lane lists them)"
            )
        self._fixed = [(params[n], raw) for n, raw in self.profile.fixed]
        index = {n: i for i, n in enumerate(self.contract.names)}
        self._maps = [(index[m.param], params[m.plugin], m) for m in self.profile.maps]

    @property
    def mapped(self) -> tuple[str, ...]:
        return tuple(m.param for m in self.profile.maps)

    def parameters(self) -> list[dict]:
        """The plugin's automatable parameters: name, raw value, text, label."""
        return [
            {"name": p.name, "raw": p.raw_value, "text": p.string_value, "label": p.label}
            for p in self.plugin._parameters
            if p.is_automatable
        ]

    def raw_values(self, patch: np.ndarray) -> list[tuple[int, float]]:
        """(16,) normalised -> [(plugin parameter position, raw host value)], fixed and mapped parameters."""
        return self._fixed + [(k, m.to_raw(patch[i], self.contract)) for i, k, m in self._maps]

    def process(self, patch: np.ndarray, midi=None) -> np.ndarray:
        """One patch through the plugin: (channels, native samples) float32, the plugin's own output."""
        # the parameter objects are looked up afresh: pedalboard may re-create the plugin instance
        # (reset "reinstantiate"), which frees the old ones
        params = self.plugin._parameters
        for k, raw in self.raw_values(patch):
            params[k].raw_value = raw
        r = self.profile.render
        return self.plugin.process(
            self._midi if midi is None else midi,
            duration=self.contract.audio.duration_s,
            sample_rate=r.sample_rate,
            num_channels=r.channels,
            buffer_size=r.block_size,
            reset=True,
        )

    def _choose_reset(self) -> str:
        """ "clear" (reset in place) if the profile allows it and the plugin's reset is verified to clear
        its sound, else "reinstantiate" (pedalboard's default for instruments: a fresh instance)."""
        import pedalboard

        kinds = pedalboard.ExternalPluginReloadType
        if self.profile.render.reset == "reinstantiate":
            return "reinstantiate"
        mean = np.array([distribution_mean(s) for s in self.sampling.samples], np.float32)
        fresh = self.process(mean)  # the instance is re-created first: the reference
        self.plugin._reload_type = kinds.ClearsAudioOnReset
        self.process(np.ones_like(mean), midi=self._midi[:1])  # B: every mapped value at 1, still held at the end
        if np.array_equal(self.process(mean), fresh):
            return "clear"
        self.plugin._reload_type = kinds.Unknown
        return "reinstantiate"

    def to_contract(self, audio: np.ndarray) -> np.ndarray:
        """(channels, native samples) -> (num_samples,) float32 mono at the contract's rate."""
        import soxr

        mono = np.asarray(audio, dtype=np.float32).mean(axis=0)
        out = soxr.resample(mono, self.profile.render.sample_rate, self.contract.audio.sample_rate, quality="HQ")
        T = self.contract.audio.num_samples
        return np.pad(out[:T], (0, max(0, T - len(out)))).astype(np.float32)

    def render(self, params: np.ndarray) -> np.ndarray:
        params = np.asarray(params, dtype=np.float32).reshape(-1, len(self.contract.params))
        if self.reset_mode is None:  # not in __init__: a worker that dies here counts against its shard
            self.reset_mode = self._choose_reset()
        out = np.empty((len(params), self.contract.audio.num_samples), np.float32)
        for j, patch in enumerate(params):
            out[j] = self.to_contract(self.process(patch))
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)

    def _check_not_silent(self) -> None:
        mean = np.array([distribution_mean(s) for s in self.sampling.samples], np.float32)
        peak = float(np.abs(self.render(mean[None])).max())
        if not peak > SILENCE_PEAK:
            raise SynthError(
                f"{self.path}: {self.plugin.name!r} renders silence for the mean patch (peak "
                f"{peak:.1e}); check the profile's [fixed] values (volume, a loaded patch) and that "
                "the plugin plays MIDI note "
                f"{self.contract.audio.note}"
            )

    def close(self) -> None:
        self.plugin = None  # type: ignore[assignment]


def redirect_plugin_stderr(log: str | Path) -> None:
    """Send this process's stderr (fd 2, where plugins print their chatter) to a log file (appended)."""
    fd = os.open(str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
