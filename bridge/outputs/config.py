"""The outputs' settings: [output.midi], [output.osc], [output.print] and output.profile of the daemon's TOML
(`OutputSettings`), the OSC presets of the DAWs, and their checks against the contract.

The dataclasses are loaded by core.loader.load_dataclass (unknown keys and wrong types name the key);
`validate_outputs` cross-checks them against the contract (SinkConfigError, naming the key).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from synthmatch.bridge.core.loader import BOUNDS, INT32_MAX, within
from synthmatch.bridge.outputs.base import SinkConfigError


@dataclass
class MidiSinkConfig:
    enabled: bool = False
    port: str = ""  # send into an existing input port whose name contains this (the DAW's/synth's)
    virtual: str = "cc_out"  # else (port = "") create this virtual port for the DAW to connect to
    channel: int = field(default=1, metadata=within(1, 16, note="MIDI channels are 1..16"))
    # one CC per parameter, -1 = not sent; [] = the contract's cc column (ignored with output.profile)
    ccs: list[int] = field(default_factory=list, metadata=within(-1, 127, note="CC numbers are 0..127, -1 = not sent"))
    resolution: int = 7  # 7: one CC per parameter; 14: MSB on cc, then LSB on cc + 32
    api: str = "auto"  # "auto" (JACK if a server answers, else ALSA/CoreMIDI/WinMM) | "jack" | "alsa" | ...
    client_name: str = "synthmatch"
    # how often the port's presence / the JACK server is checked
    check_interval_s: float = field(default=0.5, metadata=within(0, 60, low_open=True, unit=" s"))
    # reopen backoff after a loss: doubles up to retry_max_s
    retry_min_s: float = field(default=0.5, metadata=within(0, 60, low_open=True, unit=" s"))
    retry_max_s: float = field(default=5.0, metadata=within(0, 3600, low_open=True, unit=" s"))
    notes: bool = False  # also send note-on/note-off for the detected note (voice-to-MIDI)
    # note-on velocity (0 would be a note-off)
    velocity: int = field(default=100, metadata=within(1, 127, note="0 would be a note-off"))
    pitch_bend: bool = False  # also send 14-bit pitch bend: the detected pitch's distance from the note
    # semitones at full bend: set the synth's pitch-bend range to the same
    bend_range: float = field(default=2.0, metadata=within(0, 48, low_open=True, unit=" semitones"))


OSC_PRESETS: dict[str, dict[str, Any]] = {
    # address template, argument tokens, default port, value scale, index fields defaults
    "generic": dict(
        address="/synthmatch/param/{name}", args=["value"], port=9000, value_max=1.0, track=1, fx=1, device=0
    ),
    # REAPER Default.ReaperOSC: FX_PARAM_VALUE n/track/@/fx/@/fxparam/@/value (1-based, normalised)
    "reaper": dict(
        address="/track/{track}/fx/{fx}/fxparam/{index1}/value",
        args=["value"],
        port=8000,
        value_max=1.0,
        track=1,
        fx=1,
        device=0,
    ),
    # AbletonOSC (listens on 11000): /live/device/set/parameter/value track_id device_id parameter_id
    # value, 0-based; parameter 0 of a plugin device is "Device On", hence index1
    "ableton": dict(
        address="/live/device/set/parameter/value",
        args=["track", "device", "index1", "value"],
        port=11000,
        value_max=1.0,
        track=0,
        device=0,
        fx=1,
    ),
    # DrivenByMoss OSC: /device/param/{1-8}/value {0..resolution-1} on the cursor device's remote-control
    # page; pages of 8 are selected with /device/page/{n}/selected (sent before each page's values)
    "bitwig": dict(
        address="/device/param/{slot}/value",
        args=["value"],
        port=8000,
        value_max=127.0,
        track=1,
        fx=1,
        device=0,
        page_select="/device/page/{page}/selected",
    ),
}
OSC_FIELDS = ("name", "index", "index1", "slot", "page", "track", "fx", "device")
# an OSC argument "i" is a 32-bit signed int: index fields stay below it (index1 = index + 1 too)
OSC_INDEX = within(-1, INT32_MAX, note="-1 = the preset's; an OSC int is 32-bit")
# values go out as OSC "f" (float32); a DAW scale beyond a million is a typo, not a range
OSC_VALUE = within(-1e6, 1e6, note="values are sent as value_min + v * (value_max - value_min)")


@dataclass
class OscSinkConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    # 0 = the preset's usual port (generic 9000, reaper 8000, ableton 11000, bitwig 8000)
    port: int = field(default=0, metadata=within(0, 65535, note="0 = the preset's port"))
    preset: str = "generic"  # generic | reaper | ableton | bitwig
    address: str = ""  # template overriding the preset's, fields {name} {index} {index1} {slot} {page}
    # {track} {fx} {device}
    args: list[str] = field(default_factory=list)  # argument tokens ("value" or a field); [] = preset's
    track: int = field(default=-1, metadata=OSC_INDEX)  # -1 = preset default (reaper 1-based, ableton 0-based)
    fx: int = field(default=-1, metadata=OSC_INDEX)
    device: int = field(default=-1, metadata=OSC_INDEX)
    # target parameter index per parameter; [] = 0..15
    indices: list[int] = field(default_factory=list, metadata=within(0, INT32_MAX - 1, note="an OSC int is 32-bit"))
    # a value v in [0, 1] is sent as value_min + v * (value_max - value_min), never outside them;
    # value_max 0 = the preset's (1.0; bitwig 127)
    value_min: float = field(default=0.0, metadata=OSC_VALUE)
    value_max: float = field(default=0.0, metadata=OSC_VALUE)
    note_address: str = "/synthmatch/note"  # one more message per update: note (i), f0 Hz (f, 0 when it
    # fell back), confidence (f); a note-off sends note, 0, 0; "" = none


@dataclass
class PrintSinkConfig:
    enabled: bool = False
    physical: bool = False  # also print physical units (Hz, s, semitones)


@dataclass
class OutputSettings:
    # a synth's output profile (configs/synths/NAME.toml's [live], bridge/outputs/profile.py): each value
    # sent as what its target needs for the physical value; "" = normalised values on the contract's CCs
    profile: str = ""
    midi: MidiSinkConfig = field(default_factory=MidiSinkConfig)
    osc: OscSinkConfig = field(default_factory=OscSinkConfig)
    print: PrintSinkConfig = field(default_factory=PrintSinkConfig)


def resolve_ccs(cfg: MidiSinkConfig, contract) -> list[int]:
    return list(cfg.ccs) if cfg.ccs else [p.cc for p in contract.params]


def validate_midi(cfg: MidiSinkConfig, contract, where: str = "output.midi") -> list[int]:
    """Checks channel, resolution, api and CC numbers/collisions; returns the CC list."""
    from synthmatch.bridge.outputs.midiports import APIS

    if not 1 <= cfg.channel <= 16:
        raise SinkConfigError(f"{where}.channel = {cfg.channel}: MIDI channels are 1..16")
    if cfg.resolution not in (7, 14):
        raise SinkConfigError(f"{where}.resolution = {cfg.resolution}: 7 or 14 (bits)")
    if cfg.api not in APIS:
        raise SinkConfigError(f"{where}.api = {cfg.api!r}: one of {', '.join(APIS)}")
    if not cfg.port and not cfg.virtual:
        raise SinkConfigError(f"{where}: set port (an existing MIDI input) or virtual (a port name to create)")
    if not 1 <= cfg.velocity <= 127:
        raise SinkConfigError(f"{where}.velocity = {cfg.velocity}: 1..127 (0 would be a note-off)")
    if not (isinstance(cfg.bend_range, (int, float)) and 0 < cfg.bend_range <= 48):
        raise SinkConfigError(f"{where}.bend_range = {cfg.bend_range}: semitones, > 0 and <= 48")
    if cfg.check_interval_s <= 0 or cfg.retry_min_s <= 0 or cfg.retry_max_s < cfg.retry_min_s:
        raise SinkConfigError(f"{where}: check_interval_s, retry_min_s > 0 and retry_max_s >= retry_min_s")
    ccs = resolve_ccs(cfg, contract)
    key = f"{where}.ccs" if cfg.ccs else "the contract's cc column"
    n = len(contract.params)
    if len(ccs) != n:
        raise SinkConfigError(f"{key}: {len(ccs)} CC numbers for {n} parameters")
    owner: dict[int, str] = {}  # CC number -> which parameter uses it (MSB or LSB)
    for i, cc in enumerate(ccs):
        k = f"{key}[{i}] ({contract.params[i].name})"
        if cc == -1:  # this parameter is not sent
            continue
        if not isinstance(cc, int) or isinstance(cc, bool) or not 0 <= cc <= 127:
            raise SinkConfigError(f"{k} = {cc!r}: CC numbers are integers 0..127 (-1 = not sent)")
        if cc >= 120:
            raise SinkConfigError(
                f"{k} = {cc}: CC 120..127 are channel mode messages (all notes off, "
                "reset all controllers...); pick another CC"
            )
        used = [cc] + ([cc + 32] if cfg.resolution == 14 else [])
        for u in used:
            if u in owner:
                what = "" if u == cc else f" (its 14-bit LSB {u})"
                raise SinkConfigError(f"{k} = {cc}{what} collides with {owner[u]}")
            owner[u] = f"{key}[{i}] ({contract.params[i].name})" + ("" if u == cc else f" 14-bit LSB {u}")
        if cfg.resolution == 14 and cc >= 32:
            raise SinkConfigError(f"{k} = {cc}: with resolution 14 the MSB CC must be 0..31 (its LSB is CC + 32)")
    return ccs


def osc_settings(cfg: OscSinkConfig, where: str = "output.osc") -> dict[str, Any]:
    """The preset merged with the overrides; template fields and arg tokens checked."""
    if cfg.preset not in OSC_PRESETS:
        raise SinkConfigError(f"{where}.preset = {cfg.preset!r}: one of {', '.join(OSC_PRESETS)}")
    s = dict(OSC_PRESETS[cfg.preset])
    for k in ("address", "args", "port", "value_max"):
        v = getattr(cfg, k)
        if v:
            s[k] = v
    for k in ("track", "fx", "device"):
        v = getattr(cfg, k)
        if v >= 0:
            s[k] = v
        if not -1 <= v <= INT32_MAX:  # the loader checks the config; this, a config built in code
            raise SinkConfigError(OSC_INDEX[BOUNDS].message(f"{where}.{k}", v))
    lo, hi = float(cfg.value_min), float(s["value_max"])
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        preset = f" (the {cfg.preset} preset's)" if not cfg.value_max else ""
        raise SinkConfigError(
            f"{where}.value_max = {hi:g}{preset}, value_min = {lo:g}: need finite value_min < value_max "
            "(a value v in [0, 1] goes out as value_min + v * (value_max - value_min))"
        )
    s["value_min"] = lo
    if not s["address"].startswith("/"):
        raise SinkConfigError(f"{where}.address = {s['address']!r}: an OSC address starts with /")
    try:
        s["address"].format(**{f: 0 for f in OSC_FIELDS})
    except (KeyError, IndexError, ValueError) as e:
        raise SinkConfigError(
            f"{where}.address = {s['address']!r}: unknown template field {e}; "
            f"fields: {', '.join('{' + f + '}' for f in OSC_FIELDS)}"
        ) from None
    for t in s["args"]:
        if t != "value" and t not in OSC_FIELDS:
            raise SinkConfigError(f'{where}.args: {t!r} is neither "value" nor one of {", ".join(OSC_FIELDS)}')
    if cfg.note_address and not cfg.note_address.startswith("/"):
        raise SinkConfigError(f'{where}.note_address = {cfg.note_address!r}: an OSC address starts with / ("" = none)')
    if not 0 < s["port"] < 65536:
        raise SinkConfigError(f"{where}.port = {s['port']}: must be 1..65535")
    return s


def load_profile(out: OutputSettings, contract):
    """The OutputProfile output.profile names, or None ("")."""
    if not out.profile:
        return None
    from synthmatch.bridge.outputs import profile

    return profile.load(out.profile, contract)


def validate_outputs(out: OutputSettings, contract) -> None:
    """Cross-checks for the daemon's [output] tables (raises SinkConfigError naming the key). [output.osc]
    is checked even while disabled (its checks need nothing opened): a wrong value is refused when set."""
    prof = load_profile(out, contract)
    if prof is not None:
        for transport, on in (("midi", out.midi.enabled), ("osc", out.osc.enabled)):
            if on and not prof.has(transport):
                other = "OSC (--osc)" if transport == "midi" else "MIDI (--midi-port)"
                raise SinkConfigError(
                    f"output.profile = {out.profile!r} has no {transport.upper()} targets ([[live.{transport}]]); "
                    f"send {other} instead, or pick another profile"
                )
    if out.midi.enabled:
        validate_midi(out.midi, contract)
    osc_settings(out.osc)
    if out.osc.enabled:
        if out.osc.indices and len(out.osc.indices) != len(contract.params):
            raise SinkConfigError(
                f"output.osc.indices: {len(out.osc.indices)} entries for {len(contract.params)} parameters"
            )
