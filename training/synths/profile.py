"""Synth profiles: how the contract's 16 normalised parameters drive one plugin (configs/synths/*.toml).

A profile is data. For each contract parameter it names the plugin parameter it drives, by the name
the plugin gives host automation, and how a normalised value v in [0, 1] becomes the plugin's own
normalised host value ("raw", 0..1, what a DAW's automation lane holds):

    map = "raw"       raw = lo + v (hi - lo), with raw = [lo, hi] (default [0, 1]): the paper's way,
                      host values sampled directly
    map = "physical"  the contract's physical value of v (its min, max, curve; e.g. Hz) times `scale`,
                      placed on the plugin's own range: raw = (x - plugin_min) / (plugin_max - plugin_min)
                      for plugin_curve "linear", log(x / plugin_min) / log(plugin_max / plugin_min) for
                      "log"; clipped to [0, 1]

Every other plugin parameter the profile cares about is in [fixed] (host name -> raw value), set
before every render. A contract parameter the profile does not map must be listed in [unmapped]
with the normalised value it is pinned to: datasets then sample it as fixed at that value, so a model
trained on them learns to output that constant, and sending it to the plugin changes nothing.

[sampling] says how patches are drawn: "contract" (each parameter's contract distribution) or
"presets" (distributions fitted to a presets CSV, as the paper fitted Massive's factory presets; see
training.synths.sampling.fit_presets). [render] holds the MIDI note's velocity and the plugin's native rate,
block size and channel count, and how the plugin is reset between renders (training.synths.vst3).
Unknown keys anywhere are errors.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from synthmatch.bridge.core import tomlfile
from synthmatch.bridge.core.contract import CONFIG_DIR, Contract, ContractError
from synthmatch.bridge.core.loader import load_dataclass
from synthmatch.training.synths.sampling import FIT_METHODS, PresetSampling, fit_presets

PROFILE_DIR = CONFIG_DIR / "synths"
MAPS = ("raw", "physical")
RESETS = ("auto", "reinstantiate")
SAMPLING_KINDS = ("contract", "presets")


class ProfileError(ContractError):
    """A synth profile is malformed or does not fit its plugin; the message names the file and key."""


@dataclass(frozen=True)
class ParamMap:
    param: str  # contract parameter name
    plugin: str  # the plugin's host-automation name
    map: str = "raw"
    raw: tuple[float, float] = (0.0, 1.0)  # map "raw": host range that v = 0 .. 1 spans
    scale: float = 1.0  # map "physical": contract units -> plugin units (e.g. 1000 for s -> ms)
    plugin_min: float | None = None  # map "physical": the plugin's range in its own units
    plugin_max: float | None = None
    plugin_curve: str = "linear"  # how the plugin spreads that range over raw 0..1

    def to_raw(self, v: float, contract: Contract) -> float:
        """Normalised contract value -> the plugin's raw host value in [0, 1]."""
        v = min(max(float(v), 0.0), 1.0)
        if self.map == "raw":
            lo, hi = self.raw
            return lo + v * (hi - lo)
        x = float(contract.param(self.param).to_physical(v)) * self.scale
        lo, hi = float(self.plugin_min), float(self.plugin_max)  # type: ignore[arg-type]
        r = math.log(x / lo) / math.log(hi / lo) if self.plugin_curve == "log" else (x - lo) / (hi - lo)
        return min(max(r, 0.0), 1.0)


@dataclass(frozen=True)
class Sampling:
    kind: str = "contract"
    presets: str | None = None  # CSV path, relative to the profile file
    method: str = "beta"


@dataclass(frozen=True)
class Render:
    velocity: int = 100  # MIDI velocity of the contract's note
    sample_rate: int = 48000  # the plugin's native rate, Hz; resampled to the contract's rate
    block_size: int = 512  # samples per plugin process call
    channels: int = 2  # plugin output channels, mixed down to mono
    init_timeout_s: float = 10.0  # pedalboard waits up to this long on load for a plugin to make sound
    reset: str = "auto"  # between renders: "auto" (the plugin's own reset where it is verified to clear
    #                      the sound, else a fresh instance) | "reinstantiate" (always a fresh instance)


@dataclass(frozen=True)
class Profile:
    name: str
    plugin: str  # the plugin's own name, as it reports it (checked on load)
    maps: tuple[ParamMap, ...]
    fixed: tuple[tuple[str, float], ...] = ()  # (host name, raw value)
    unmapped: tuple[tuple[str, float], ...] = ()  # (contract name, pinned normalised value)
    sampling: Sampling = field(default_factory=Sampling)
    render: Render = field(default_factory=Render)
    description: str = ""
    source: str = "<dict>"

    @property
    def fingerprint(self) -> str:
        """16 hex chars over everything that changes the audio or the sampling: not the description nor
        the host's waiting and resetting (the same audio either way), so the identity survives them."""
        d = asdict(self)
        d.pop("source"), d.pop("description")
        d["render"].pop("init_timeout_s"), d["render"].pop("reset")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def presets_sampling(self, contract: Contract) -> PresetSampling:
        """The per-parameter distributions datasets draw from (unmapped parameters pinned)."""
        if self.sampling.kind == "presets":
            path = Path(self.source).parent / str(self.sampling.presets)
            fit = fit_presets(contract, path, self.sampling.method)
            samples, count, method = list(fit.samples), fit.count, f"presets-{fit.method}"
        else:
            samples, count, method = [dict(p.sample) for p in contract.params], 0, "contract"
        pinned = dict(self.unmapped)
        for i, name in enumerate(contract.names):
            if name in pinned:
                samples[i] = {"dist": "fixed", "value": float(pinned[name])}
        return PresetSampling(f"profile {self.name}", method, count, tuple(samples))

    def host_names(self) -> list[str]:
        return [m.plugin for m in self.maps] + [n for n, _ in self.fixed]


def closest(name: str, names: list[str], n: int = 3) -> str:
    """The plugin's names most like `name` (difflib, case-insensitive), for error messages. Hosts'
    MIDI-CC proxy parameters ("MIDI CC 7", "MIDI Ch. 1 CC 7") are never suggested."""
    pool = [x for x in names if not x.startswith(("MIDI CC", "MIDI Ch."))] or names
    lower = {x.lower(): x for x in pool}
    near = [lower[x] for x in difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.3)]
    return ", ".join(repr(x) for x in near or pool[:n])


def _check_map(m: ParamMap, where: str, source: str, contract: Contract) -> None:
    if m.param not in contract.names:
        raise ProfileError(
            f"{source}: {where}.param = {m.param!r} is not a contract parameter; valid: {', '.join(contract.names)}"
        )
    if m.map not in MAPS:
        raise ProfileError(f"{source}: {where}.map = {m.map!r}; use one of {', '.join(MAPS)}")
    if m.map == "raw":
        if not all(0.0 <= x <= 1.0 for x in m.raw):
            raise ProfileError(f"{source}: {where}.raw must be [lo, hi] within [0, 1], got {list(m.raw)}")
        return
    if m.plugin_min is None or m.plugin_max is None or m.plugin_min == m.plugin_max:
        raise ProfileError(
            f'{source}: {where}: map "physical" needs plugin_min and plugin_max '
            "(the plugin's range in its own units), different from each other"
        )
    if m.plugin_curve not in ("linear", "log"):
        raise ProfileError(f"{source}: {where}.plugin_curve = {m.plugin_curve!r}; use linear or log")
    if m.plugin_curve == "log" and min(m.plugin_min, m.plugin_max) <= 0:
        raise ProfileError(f"{source}: {where}: a log plugin_curve needs plugin_min and plugin_max > 0")


def from_dict(raw: dict, contract: Contract, source: str = "<dict>") -> Profile:
    # [live] is the bridge's output profile (synthmatch.bridge.outputs.profile), read there, not here
    allowed = {"name", "plugin", "description", "param", "fixed", "unmapped", "sampling", "render", "live"}
    if "live" in raw and "plugin" not in raw and "param" not in raw:
        raise ProfileError(
            f"{source}: holds only a live output profile ([live], for `synthmatch bridge --profile`); it has "
            "no training mapping (name, plugin, [[param]]) to render with"
        )
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ProfileError(f"{source}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
    for key in ("name", "plugin"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ProfileError(f'{source}: missing {key} = "..." (a string)')
    maps = tuple(
        load_dataclass(ParamMap, m, f"param[{i}]", ProfileError, source) for i, m in enumerate(raw.get("param", []))
    )
    for i, m in enumerate(maps):
        _check_map(m, f"param[{i}]", source, contract)
    seen: dict[str, int] = {}
    for i, m in enumerate(maps):
        if m.param in seen:
            raise ProfileError(f"{source}: param[{i}] maps {m.param} again (param[{seen[m.param]}] does already)")
        seen[m.param] = i
    fixed = _numbers(raw.get("fixed", {}), "fixed", source, "a raw host value in [0, 1]")
    unmapped = _numbers(raw.get("unmapped", {}), "unmapped", source, "a normalised value in [0, 1]")
    for name, _ in unmapped:
        if name not in contract.names:
            raise ProfileError(
                f"{source}: unmapped.{name} is not a contract parameter; valid: {', '.join(contract.names)}"
            )
        if name in seen:
            raise ProfileError(f"{source}: {name} is both mapped (param[{seen[name]}]) and in [unmapped]; keep one")
    loose = [n for n in contract.names if n not in seen and n not in dict(unmapped)]
    if loose:
        raise ProfileError(
            f"{source}: contract parameter(s) {', '.join(loose)} neither mapped nor pinned; add a "
            "[[param]] for each, or list it under [unmapped] with the value it is fixed at"
        )
    doubled = sorted({m.plugin for m in maps} & {n for n, _ in fixed})
    if doubled:
        raise ProfileError(f"{source}: plugin parameter {doubled[0]!r} is both mapped and in [fixed]; keep one")
    sampling = load_dataclass(Sampling, raw.get("sampling", {}), "sampling", ProfileError, source)
    if sampling.kind not in SAMPLING_KINDS:
        raise ProfileError(f"{source}: sampling.kind = {sampling.kind!r}; use one of {', '.join(SAMPLING_KINDS)}")
    if sampling.kind == "presets" and not sampling.presets:
        raise ProfileError(f'{source}: sampling.kind = "presets" needs sampling.presets = "file.csv"')
    if sampling.method not in FIT_METHODS:
        raise ProfileError(f"{source}: sampling.method = {sampling.method!r}; use one of {', '.join(FIT_METHODS)}")
    render = load_dataclass(Render, raw.get("render", {}), "render", ProfileError, source)
    if not (
        1 <= render.velocity <= 127 and render.sample_rate >= 8000 and render.block_size >= 16 and render.channels >= 1
    ):
        raise ProfileError(
            f"{source}: [render] needs velocity 1..127, sample_rate >= 8000, block_size >= 16, "
            f"channels >= 1 (got {asdict(render)})"
        )
    if render.reset not in RESETS:
        raise ProfileError(f"{source}: render.reset = {render.reset!r}; use one of {', '.join(RESETS)}")
    return Profile(
        raw["name"], raw["plugin"], maps, fixed, unmapped, sampling, render, str(raw.get("description", "")), source
    )


def _numbers(table, where: str, source: str, what: str) -> tuple[tuple[str, float], ...]:
    if not isinstance(table, dict):
        raise ProfileError(f"{source}: [{where}] must be a table of name = value")
    out = []
    for k, v in table.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
            raise ProfileError(f"{source}: {where}.{k!r} = {v!r}: expected {what}")
        out.append((str(k), float(v)))
    return tuple(out)


def load(path: str | Path, contract: Contract) -> Profile:
    """A profile file; a bare name (e.g. "smtest") means configs/synths/NAME.toml."""
    p = Path(path)
    if not p.suffix and not p.exists():
        p = PROFILE_DIR / f"{p}.toml"
    known = ", ".join(sorted(x.stem for x in PROFILE_DIR.glob("*.toml")))
    raw = tomlfile.read(p, ProfileError, f"synth profile not found (profiles in {PROFILE_DIR}: {known})")
    return from_dict(raw, contract, str(p))
