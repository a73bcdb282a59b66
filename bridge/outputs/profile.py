"""Output profiles: what each of the 16 values means on one synth, and how to send it (configs/synths/).

The model predicts normalised values; on another synth the same normalised number means something else
(a 44 ms attack is 0.4475 on the contract's log curve, ~1.4 s on amsynth's cubic one). A profile says,
per contract parameter, where the value goes (a target) and how that target spreads its own range, so
the bridge sends what the PHYSICAL value needs (seconds, Hz, semitones, mix). It is data, in the
`[live]` section of configs/synths/NAME.toml (the file training's synth profile also lives in):

    [live]
    description = "amsynth 1.13: MIDI CC (its default controller map)"
    cannot = ["oscillator pitch offsets beyond +-12 semitones", ...]   # what the synth cannot express
    osc_port = 0                  # the port the synth listens on for OSC; 0 = none / given with --osc

    [[live.midi]]                 # one row per parameter the synth has; the others are never sent
    param = "env_attack"          # contract parameter
    target = "cc"                 # cc (7-bit) | cc14 (MSB on n, LSB on n + 32) | nrpn (14-bit data)
    number = 73                   # CC / NRPN number; cc/cc14 -1 = the contract's cc column
    min = 0.0005                  # the target's own range, in the contract's units times `scale`
    max = 15.6255
    curve = "power"               # linear | log | power (min + (max - min) u^exponent) | table | contract
    exponent = 3.0

    [[live.osc]]                  # same keys, plus the address and OSC type tag
    param = "filter1_cutoff"
    address = "/part0/kit0/adpars/GlobalPar/GlobalFilter/basefreq"
    type = "f"                    # f (float32) | i (int32)
    min = 31.25
    max = 32000.0
    curve = "log"
    # range = [0, 127]            # what u = 0..1 is sent as; absent: the target value itself (Hz here)

The conversion, one function for MIDI and OSC alike (`Target.wire`):
  v (normalised) -> x = contract.to_physical(v) -> y = x * scale, or `convert` ([[x, y], ...], piecewise
  linear) where the target's quantity is not the contract's (a ladder's resonance as a filter's Q)
  -> u = the target law's inverse at y, clamped to [0, 1] (what the target can reach)
  -> the wire value: round(u * 127) for cc, round(u * 16383) for cc14 and nrpn; for OSC
     range[0] + u * (range[1] - range[0]) when range is given, else the law's value at u.
`Target.physical` goes back from a wire value to contract units (the round-trip tests, and what the
synth was told, for reports). curve "contract" is the contract's own law (min/max/curve of the
parameter): with target cc and number -1 it is exactly today's default, the normalised value on the
contract's cc column (the synthmatch-synth profile).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from synthmatch.bridge.core import tomlfile
from synthmatch.bridge.core.contract import CONFIG_DIR
from synthmatch.bridge.core.errors import UsageError
from synthmatch.bridge.core.loader import INT32_MAX, load_dataclass, within

PROFILE_DIR = CONFIG_DIR / "synths"
MIDI_TARGETS = ("cc", "cc14", "nrpn")
CURVES = ("linear", "log", "power", "table", "contract")
OSC_TYPES = ("f", "i")
STEPS = {"cc": 127, "cc14": 16383, "nrpn": 16383}
NRPN_CCS = (99, 98, 6, 38)  # NRPN MSB, NRPN LSB, data entry MSB, data entry LSB
FINITE = within(-1e9, 1e9, note="a finite number")


class ProfileError(UsageError, ValueError):
    """An output profile is malformed or unknown; one line naming the file and the key."""


@dataclass(frozen=True)
class Row:
    """One [[live.midi]] / [[live.osc]] row as written (keys checked by core.loader)."""

    param: str
    target: str = "cc"  # midi: cc | cc14 | nrpn; osc rows: "osc" (the default there)
    number: int = field(default=-1, metadata=within(-1, 16383, note="-1 = the contract's cc column"))
    address: str = ""
    type: str = "f"
    min: float = field(default=0.0, metadata=FINITE)
    max: float = field(default=1.0, metadata=FINITE)
    curve: str = "linear"
    exponent: float = field(default=1.0, metadata=within(0.01, 100))
    points: tuple[tuple[float, float], ...] = ()  # curve "table": [[u, y], ...], u rising 0 .. 1
    scale: float = field(default=1.0, metadata=within(1e-9, 1e9, note="contract units -> target units"))
    convert: tuple[tuple[float, float], ...] = ()  # [[contract x, target y], ...], x rising
    range: tuple[float, ...] = ()  # OSC: [lo, hi] sent for u = 0 .. 1; () = the target value itself
    note: str = ""  # free text: how the owner checks it, what it assumes


@dataclass(frozen=True)
class Target:
    """A resolved row: where one contract parameter goes and the target's law (see the module docstring)."""

    param: str
    kind: str  # cc | cc14 | nrpn | osc
    number: int  # MIDI: CC / NRPN number; OSC: -1
    address: str
    type: str  # OSC type tag
    lo: float  # the law: y(u) for u in [0, 1]
    hi: float
    curve: str  # linear | log | power | table
    exponent: float
    points: tuple[tuple[float, float], ...]
    scale: float
    convert: tuple[tuple[float, float], ...]
    range: tuple[float, ...]
    cmin: float  # the contract parameter's law (to_physical / to_normalised)
    cmax: float
    ccurve: str
    identity: bool = False  # curve "contract", nothing converted: u is the normalised value itself

    # -- the law: target position u in [0, 1] <-> target value y ------------------------------------

    def value(self, u: float) -> float:
        u = min(1.0, max(0.0, u))
        if self.curve == "log":
            return self.lo * (self.hi / self.lo) ** u
        if self.curve == "power":
            return self.lo + (self.hi - self.lo) * u**self.exponent
        if self.curve == "table":
            return _interp(u, [p[0] for p in self.points], [p[1] for p in self.points])
        return self.lo + (self.hi - self.lo) * u

    def position(self, y: float) -> float:
        """The law's inverse, clamped to [0, 1]: a value beyond the target's reach goes to its end."""
        if self.curve == "log":
            r = self.hi / self.lo
            u = math.log(y / self.lo) / math.log(r) if y / self.lo > 0 else (0.0 if r > 1 else 1.0)
        elif self.curve == "power":
            t = (y - self.lo) / (self.hi - self.lo)
            u = max(t, 0.0) ** (1.0 / self.exponent)
        elif self.curve == "table":
            ys = [p[1] for p in self.points]
            us = [p[0] for p in self.points]
            if ys[0] > ys[-1]:
                ys, us = ys[::-1], us[::-1]
            u = _interp(y, ys, us)
        else:
            u = (y - self.lo) / (self.hi - self.lo)
        return min(1.0, max(0.0, u))

    # -- contract units <-> target units ---------------------------------------------------------------

    def to_target(self, x: float) -> float:
        if self.convert:
            return _interp(x, [p[0] for p in self.convert], [p[1] for p in self.convert])
        return x * self.scale

    def from_target(self, y: float) -> float:
        if self.convert:
            xs, ys = [p[0] for p in self.convert], [p[1] for p in self.convert]
            if ys[0] > ys[-1]:
                xs, ys = xs[::-1], ys[::-1]
            return _interp(y, ys, xs)
        return y / self.scale

    def physical(self, v: float) -> float:
        """Contract units of a normalised contract value."""
        v = min(1.0, max(0.0, float(v)))
        if self.ccurve == "log":
            return self.cmin * (self.cmax / self.cmin) ** v
        return self.cmin + v * (self.cmax - self.cmin)

    # -- the one conversion: normalised value -> what goes on the wire, and back ---------------------

    @property
    def steps(self) -> int:
        return STEPS.get(self.kind, 0)

    def wire(self, v: float) -> int | float:
        """Normalised contract value -> the number sent: an int 0..127 / 0..16383 (MIDI), an int or a
        float (OSC), always within what the target can take."""
        if self.identity:  # bit-exact with no profile (no trip through exp and log)
            u = min(1.0, max(0.0, float(v)))
        else:
            u = self.position(self.to_target(self.physical(v)))
        if self.steps:
            return min(self.steps, max(0, int(u * self.steps + 0.5)))
        if self.range:
            out = self.range[0] + u * (self.range[1] - self.range[0])
        else:
            out = self.value(u)
        if self.type == "i":
            lo, hi = sorted(self.range) if self.range else sorted((self.lo, self.hi))
            return int(min(max(round(out), math.ceil(lo)), math.floor(hi)))
        return float(out)

    def reached(self, w: float) -> float:
        """A wire value -> the contract units it sets on the synth (the inverse of `wire`, up to steps)."""
        if self.steps:
            u = float(w) / self.steps
        elif self.range:
            u = (float(w) - self.range[0]) / (self.range[1] - self.range[0])
        else:
            return self.from_target(float(w))
        return self.from_target(self.value(u))


def _interp(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """Piecewise-linear y(x) through the points (xs rising); constant beyond the ends."""
    if x <= xs[0]:
        return float(ys[0])
    if x >= xs[-1]:
        return float(ys[-1])
    k = bisect.bisect_right(list(xs), x) - 1
    t = (x - xs[k]) / (xs[k + 1] - xs[k])
    return float(ys[k] + t * (ys[k + 1] - ys[k]))


@dataclass(frozen=True)
class Live:
    """[live] as written."""

    description: str = ""
    cannot: tuple[str, ...] = ()
    osc_port: int = field(default=0, metadata=within(0, 65535, note="0 = none"))
    midi: tuple[Any, ...] = ()
    osc: tuple[Any, ...] = ()
    osc_fixed: tuple[Any, ...] = ()  # settings the mapping assumes, sent with every OSC update


@dataclass(frozen=True)
class Fixed:
    """One [[live.osc_fixed]] row: a setting the profile's laws assume (e.g. envelope stretch off)."""

    address: str
    type: str = "f"
    value: float = field(default=0.0, metadata=FINITE)


@dataclass(frozen=True)
class OutputProfile:
    """One synth's live mapping: per contract parameter (contract order) its MIDI and OSC target, or None
    where the synth lacks it (nothing is sent for that parameter)."""

    name: str
    description: str
    cannot: tuple[str, ...]
    midi: tuple[Target | None, ...]
    osc: tuple[Target | None, ...]
    osc_port: int
    source: str
    osc_fixed: tuple[Fixed, ...] = ()

    def has(self, transport: str) -> bool:
        return any(t is not None for t in (self.midi if transport == "midi" else self.osc))

    def wire(self, values: Sequence[float], transport: str) -> list[int | float | None]:
        """16 normalised values -> the wire value of each (None: not sent) for "midi" or "osc"."""
        targets = self.midi if transport == "midi" else self.osc
        return [None if t is None else t.wire(v) for t, v in zip(targets, values)]


def names() -> list[str]:
    """Profiles with a [live] section in configs/synths/."""
    out = []
    for p in sorted(PROFILE_DIR.glob("*.toml")):
        try:
            if "live" in tomlfile.read(p, ProfileError, ""):
                out.append(p.stem)
        except ProfileError:
            continue
    return out


def load(name: str, contract, key: str = "output.profile") -> OutputProfile:
    """configs/synths/NAME.toml's [live] section (or a TOML file's). key: how the user named it, for
    messages (the flag or the config key)."""
    p = Path(name)
    if not p.suffix and not p.exists():
        p = PROFILE_DIR / f"{name}.toml"
    if not p.is_file():
        raise ProfileError(
            f"{key} = {name!r}: no such output profile; profiles: {', '.join(names()) or 'none'} "
            f"(configs/synths/NAME.toml with a [live] section), or a TOML file's path"
        )
    raw = tomlfile.read(p, ProfileError, "output profile not found")
    if "live" not in raw:
        raise ProfileError(
            f"{key} = {name!r}: {p} has no [live] section (it is a training profile only); "
            f"profiles with one: {', '.join(names()) or 'none'}"
        )
    return from_dict(raw["live"], contract, p.stem if p.parent == PROFILE_DIR else str(p), str(p))


def from_dict(raw: dict, contract, name: str = "<dict>", source: str = "<dict>") -> OutputProfile:
    """A [live] table -> OutputProfile; every mistake is one line naming the file and the key."""
    live = load_dataclass(Live, raw, "live", ProfileError, source)
    midi: list[Target | None] = [None] * len(contract.params)
    osc: list[Target | None] = [None] * len(contract.params)
    for transport, rows, out in (("midi", live.midi, midi), ("osc", live.osc, osc)):
        for i, r in enumerate(rows):
            where = f"live.{transport}[{i}]"
            if isinstance(r, dict) and transport == "osc":
                r = {"target": "osc", **r}
            row = load_dataclass(Row, r, where, ProfileError, source)
            t = _target(row, transport, contract, f"{source}: {where} ({row.param})")
            k = contract.names.index(t.param)
            if out[k] is not None:
                raise ProfileError(f"{source}: {where}: {t.param} has a {transport} target already; keep one row")
            out[k] = t
    _check_midi_numbers(midi, source)
    fixed = []
    for i, r in enumerate(live.osc_fixed):
        f = load_dataclass(Fixed, r, f"live.osc_fixed[{i}]", ProfileError, source)
        if not f.address.startswith("/") or f.type not in OSC_TYPES:
            raise ProfileError(f"{source}: live.osc_fixed[{i}]: an address starting with / and type f or i")
        fixed.append(f)
    return OutputProfile(
        name, live.description, tuple(live.cannot), tuple(midi), tuple(osc), live.osc_port, source, tuple(fixed)
    )


def _target(row: Row, transport: str, contract, where: str) -> Target:
    if row.param not in contract.names:
        raise ProfileError(
            f"{where}: param = {row.param!r} is not a contract parameter; valid: {', '.join(contract.names)}"
        )
    p = contract.param(row.param)
    kinds = MIDI_TARGETS if transport == "midi" else ("osc",)
    if row.target not in kinds:
        raise ProfileError(
            f"{where}: target = {row.target!r}; use one of {', '.join(kinds)} (leave a parameter out to send nothing)"
        )
    if row.curve not in CURVES:
        raise ProfileError(f"{where}: curve = {row.curve!r}; use one of {', '.join(CURVES)}")
    number = row.number
    if transport == "midi":
        if number == -1 and row.target in ("cc", "cc14"):
            number = p.cc
        top = 16383 if row.target == "nrpn" else (31 if row.target == "cc14" else 119)
        if not 0 <= number <= top:
            raise ProfileError(f"{where}: number = {row.number}: a {row.target} number is 0..{top}")
    else:
        number = -1
        if not row.address.startswith("/"):
            raise ProfileError(f"{where}: address = {row.address!r}: an OSC address starts with /")
        if row.type not in OSC_TYPES:
            raise ProfileError(f"{where}: type = {row.type!r}; use one of {', '.join(OSC_TYPES)}")
    lo, hi, curve = row.min, row.max, row.curve
    identity = curve == "contract" and not row.convert and row.scale == 1.0
    if curve == "contract":
        lo, hi, curve = p.min, p.max, p.curve
    if lo == hi:
        raise ProfileError(f"{where}: min = max = {lo:g}: the target's range is empty")
    if curve == "log" and (lo <= 0 or hi <= 0):
        raise ProfileError(f"{where}: a log curve needs min and max > 0 (got {lo:g}, {hi:g})")
    if curve == "table":
        _check_points(row.points, where, "points", "u from 0 to 1", first=0.0, last=1.0)
        ys = [q[1] for q in row.points]
        if not (_monotonic(ys)):
            raise ProfileError(f"{where}: points: the values must rise or fall throughout")
    if row.convert:
        _check_points(row.convert, where, "convert", "contract values")
        if not _monotonic([q[1] for q in row.convert]):
            raise ProfileError(f"{where}: convert: the target values must rise or fall throughout")
    if row.range:
        if len(row.range) != 2 or row.range[0] == row.range[1]:
            raise ProfileError(f"{where}: range = {list(row.range)}: give [lo, hi], lo != hi")
        if row.type == "i" and not all(abs(x) <= INT32_MAX for x in row.range):
            raise ProfileError(f"{where}: range: an OSC int is 32-bit")
    elif transport == "osc" and row.type == "i" and not all(abs(x) <= INT32_MAX for x in (lo, hi)):
        raise ProfileError(f"{where}: min/max: an OSC int is 32-bit")
    return Target(
        p.name,
        row.target,
        number,
        row.address,
        row.type,
        lo,
        hi,
        curve,
        row.exponent,
        tuple(row.points),
        row.scale,
        tuple(row.convert),
        tuple(row.range),
        p.min,
        p.max,
        p.curve,
        identity,
    )


def _monotonic(ys: Sequence[float]) -> bool:
    d = [b - a for a, b in zip(ys, ys[1:])]
    return all(x > 0 for x in d) or all(x < 0 for x in d)


def _check_points(pts, where: str, key: str, what: str, first: float | None = None, last: float | None = None) -> None:
    xs = [q[0] for q in pts]
    if len(pts) < 2 or any(b <= a for a, b in zip(xs, xs[1:])):
        raise ProfileError(f"{where}: {key}: at least two [x, y] pairs, x rising ({what})")
    if (first is not None and xs[0] != first) or (last is not None and xs[-1] != last):
        raise ProfileError(f"{where}: {key}: the first x must be {first:g} and the last {last:g} ({what})")


def _check_midi_numbers(midi: Sequence[Target | None], source: str) -> None:
    """No two parameters on one CC (a 14-bit LSB, an NRPN's 98/99/6/38 count as used)."""
    owner: dict[int, str] = {}
    nrpn: dict[int, str] = {}
    uses_nrpn = any(t is not None and t.kind == "nrpn" for t in midi)
    if uses_nrpn:
        owner.update({c: "NRPN messages" for c in NRPN_CCS})
    for t in midi:
        if t is None:
            continue
        if t.kind == "nrpn":
            if t.number in nrpn:
                raise ProfileError(f"{source}: {t.param}: NRPN {t.number} is {nrpn[t.number]}'s already")
            nrpn[t.number] = t.param
            continue
        for c in [t.number] + ([t.number + 32] if t.kind == "cc14" else []):
            if c in owner:
                raise ProfileError(f"{source}: {t.param}: CC {c} is used by {owner[c]} already; pick another CC")
            owner[c] = t.param
