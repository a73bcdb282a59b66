"""The synthmatch contract: the 16-parameter table, the audio front-end and the synth's fixed settings.

Defined once as data in configs/contract.toml, loaded and validated here, and read by both the
training package and the daemon. Pure Python + numpy; importing it never imports torch.

Normalised values v in [0, 1] are what models predict and what a DAW's host automation carries;
`to_physical` / `to_normalised` map them to units (Hz, s, semitones) and back. Both work on floats,
numpy arrays and torch tensors alike, since they use arithmetic operators only.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from synthmatch.bridge.core import tomlfile
from synthmatch.bridge.core.loader import load_dataclass

# configs/ as package data (synthmatch.configs): the repository's folder in a checkout, the installed
# copy in a wheel. Never zipped, so a plain path.
CONFIG_DIR = Path(str(resources.files("synthmatch.configs")))
DEFAULT_CONTRACT = CONFIG_DIR / "contract.toml"

# The paper's Massive set, in model output order: the one statement in code of the parameters the synths and the
# matcher are written for (they look them up by name). Deliberately not read from configs/contract.toml: from_dict
# checks every contract file against it (the shipped one and any --contract), which may change ranges, curves,
# CCs and sampling, never the names or their order.
PARAM_NAMES = (
    "osc1_pitch",
    "osc1_position",
    "osc1_gain",
    "osc2_pitch",
    "osc2_position",
    "osc2_gain",
    "osc3_pitch",
    "osc3_position",
    "osc3_gain",
    "filter1_cutoff",
    "filter1_resonance",
    "filter2_cutoff",
    "filter2_resonance",
    "env_attack",
    "env_decay",
    "reverb_mix",
)
CURVES = ("linear", "log")
DISTRIBUTIONS = {"uniform": (), "beta": ("a", "b"), "fixed": ("value",)}


class ContractError(ValueError):
    """A contract file (or a model's embedded contract) is malformed. The message names file and key."""


@dataclass(frozen=True)
class Audio:
    sample_rate: int
    duration_s: float
    note: int

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.duration_s))


@dataclass(frozen=True)
class Frontend:
    win_ms: float
    hop_ms: float
    n_fft: int
    n_mels: int
    f_min: float
    f_max: float
    log_eps: float
    norm_mean: float
    norm_std: float


@dataclass(frozen=True)
class Synth:
    note_off_s: float
    sustain: float
    release_s: float
    reverb_rt60_s: float
    reverb_predelay_ms: float
    filter1: str
    filter2: str
    wavetables: tuple[tuple[str, ...], ...]  # one bank of shape names per oscillator


@dataclass(frozen=True)
class Param:
    name: str
    massive: str
    unit: str
    min: float
    max: float
    curve: str
    cc: int
    sample: dict
    description: str = ""

    def to_physical(self, v):
        """Normalised [0, 1] -> physical units. v: float, ndarray or tensor."""
        if self.curve == "log":
            return self.min * (self.max / self.min) ** v
        return self.min + v * (self.max - self.min)

    def to_normalised(self, x):
        """Physical units -> normalised; inverse of to_physical (not clipped)."""
        if self.curve == "log":
            return _log(x / self.min) / math.log(self.max / self.min)
        return (x - self.min) / (self.max - self.min)


def _log(x):
    """Natural log of a float, ndarray or tensor."""
    if isinstance(x, (int, float)):
        return math.log(x)
    if hasattr(x, "log"):  # torch.Tensor
        return x.log()
    import numpy as np

    return np.log(x)


@dataclass(frozen=True)
class Contract:
    audio: Audio
    frontend: Frontend
    synth: Synth
    params: tuple[Param, ...]
    source: str = "<dict>"

    # ---- derived values (never stored twice) ----
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def win_length(self) -> int:  # samples
        return int(round(self.frontend.win_ms * self.audio.sample_rate / 1000))

    @property
    def hop_length(self) -> int:  # samples
        return int(round(self.frontend.hop_ms * self.audio.sample_rate / 1000))

    @property
    def num_frames(self) -> int:  # STFT frames of one window, no centre padding
        return 1 + (self.audio.num_samples - self.win_length) // self.hop_length

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"unknown parameter {name!r}; valid names: {', '.join(self.names)}")

    def hashed_content(self) -> dict:
        """What a model depends on. Descriptions, Massive names, CCs and sampling are left out."""
        return {
            "audio": asdict(self.audio),
            "frontend": asdict(self.frontend),
            "synth": {**asdict(self.synth), "wavetables": [list(b) for b in self.synth.wavetables]},
            "params": [{k: getattr(p, k) for k in ("name", "unit", "min", "max", "curve")} for p in self.params],
        }

    @property
    def hash(self) -> str:
        blob = json.dumps(self.hashed_content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_physical(self, values) -> dict[str, float]:
        """16 normalised values (sequence) -> {name: physical value}."""
        return {p.name: float(p.to_physical(float(v))) for p, v in zip(self.params, values)}

    def values_from_dict(self, d: dict[str, float], where: str = "values") -> list[float]:
        """{name: normalised} with exactly the 16 names -> list in model order; errors list valid names."""
        unknown = sorted(set(d) - set(self.names))
        missing = [n for n in self.names if n not in d]
        if unknown or missing:
            raise ContractError(
                f"{where}: "
                + "; ".join(
                    filter(
                        None,
                        [
                            f"unknown parameter(s) {', '.join(unknown)}" if unknown else "",
                            f"missing parameter(s) {', '.join(missing)}" if missing else "",
                        ],
                    )
                )
                + f". Valid names: {', '.join(self.names)}"
            )
        out = []
        for n in self.names:
            v = d[n]
            if not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise ContractError(f"{where}: {n} = {v!r} must be a normalised number in [0, 1]")
            out.append(float(v))
        return out


# ------------------------------------------------------------------------------------------------
# Loading and validation


def _section(cls, raw: Any, where: str, source: str):
    """One table of the contract, keys and types checked (core.loader); lists become tuples, so the frozen
    dataclasses stay hashable."""
    return load_dataclass(cls, raw, where, ContractError, source, hint="see configs/contract.toml")


def _check(cond: bool, source: str, key: str, fix: str) -> None:
    if not cond:
        raise ContractError(f"{source}: bad value for {key}: {fix}")


def from_dict(data: dict, source: str = "<dict>") -> Contract:
    """Validate a parsed contract (the TOML's structure) and build it. Raises ContractError."""
    top_known = {"audio", "frontend", "synth", "param"}
    unknown = sorted(set(data) - top_known)
    if unknown:
        raise ContractError(f"{source}: unknown key {unknown[0]}; allowed: {', '.join(sorted(top_known))}")
    audio = _section(Audio, data.get("audio"), "audio", source)
    frontend = _section(Frontend, data.get("frontend"), "frontend", source)
    synth = _section(Synth, data.get("synth"), "synth", source)
    _check(audio.sample_rate > 0 and audio.duration_s > 0, source, "audio", "sample_rate and duration_s must be > 0")
    _check(0 < frontend.win_ms and 0 < frontend.hop_ms, source, "frontend.win_ms/hop_ms", "must be > 0")
    _check(
        frontend.n_fft >= frontend.win_ms * audio.sample_rate / 1000,
        source,
        "frontend.n_fft",
        "must be at least the window length in samples",
    )
    _check(
        0 <= frontend.f_min < frontend.f_max <= audio.sample_rate / 2,
        source,
        "frontend.f_min/f_max",
        "need 0 <= f_min < f_max <= sample_rate / 2",
    )
    _check(frontend.norm_std > 0, source, "frontend.norm_std", "must be > 0")
    _check(0 < synth.note_off_s < audio.duration_s, source, "synth.note_off_s", "must lie inside the window")
    _check(
        len(synth.wavetables) == 3 and all(len(b) >= 2 for b in synth.wavetables),
        source,
        "synth.wavetables",
        "needs 3 banks (one per oscillator) of at least 2 shape names each",
    )

    rows = data.get("param")
    if not isinstance(rows, list):
        raise ContractError(f"{source}: no [[param]] rows; the contract needs {len(PARAM_NAMES)} of them")
    params = []
    for i, row in enumerate(rows):
        where = f"param[{i}]" + (f" ({row.get('name')})" if isinstance(row, dict) and "name" in row else "")
        p = _section(Param, row, where, source)
        key = f"{where}"
        _check(p.curve in CURVES, source, f"{key}.curve", f"{p.curve!r} is not one of {', '.join(CURVES)}")
        _check(
            p.min < p.max,
            source,
            f"{key}.min/max",
            f"range inverted or empty ({p.min} .. {p.max}); min must be below max",
        )
        _check(p.curve != "log" or p.min > 0, source, f"{key}.min", "a log curve needs min > 0")
        _check(0 <= p.cc <= 127, source, f"{key}.cc", "a MIDI CC number is 0..127")
        dist = p.sample.get("dist")
        _check(dist in DISTRIBUTIONS, source, f"{key}.sample", f"needs dist = one of {', '.join(DISTRIBUTIONS)}")
        extra = set(p.sample) - {"dist", *DISTRIBUTIONS[dist]}
        _check(
            not extra and all(k in p.sample for k in DISTRIBUTIONS[dist]),
            source,
            f"{key}.sample",
            f"dist {dist!r} takes exactly {', '.join(DISTRIBUTIONS[dist]) or 'no arguments'}",
        )
        params.append(p)

    names = [p.name for p in params]
    dupes = sorted({n for n in names if names.count(n) > 1})
    _check(not dupes, source, f"param.name = {dupes[0] if dupes else ''}", "duplicate name; each parameter once")
    _check(
        len(params) == len(PARAM_NAMES),
        source,
        "param",
        f"wrong count: {len(params)} rows, the contract has exactly {len(PARAM_NAMES)}",
    )
    _check(
        tuple(names) == PARAM_NAMES,
        source,
        "param.name",
        f"names/order must be {', '.join(PARAM_NAMES)}; got {', '.join(names)}",
    )
    return Contract(audio, frontend, synth, tuple(params), source)


def sample_mean(sample: dict) -> float:
    """Mean of one parameter's sampling distribution (its `sample` entry), in normalised units; a kde's
    mean is its points' mean. The mean patch is the MSE-optimal guess of a model that hears nothing."""
    dist = sample["dist"]
    if dist == "uniform":
        return 0.5
    if dist == "beta":
        return sample["a"] / (sample["a"] + sample["b"])
    if dist == "fixed":
        return float(sample["value"])
    if dist == "kde":
        return float(sum(sample["points"]) / len(sample["points"]))
    raise ValueError(f"unknown distribution {dist!r}")


def load(path: str | Path | None = None) -> Contract:
    """Load and validate a contract TOML (default: configs/contract.toml). Raises ContractError."""
    path = Path(path) if path is not None else DEFAULT_CONTRACT
    data = tomlfile.read(
        path, ContractError, f"contract file not found; pass an existing file (the default is {DEFAULT_CONTRACT})"
    )
    return from_dict(data, str(path))


_default: Contract | None = None


def default() -> Contract:
    """The repository's contract, loaded once."""
    global _default
    if _default is None:
        _default = load()
    return _default
