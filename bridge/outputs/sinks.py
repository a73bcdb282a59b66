"""Where predictions go: MIDI CC, OSC and JSON lines, behind one `Sink` seam.

Every sink takes one update at a time: the 16 normalised values [0, 1] in contract order, either as a
plain sequence or as an `Update` carrying timing and mode for the print sink. `send` returns the number
of messages it put on the wire (0 when nothing changed or the output is unreachable) and never raises
for transport trouble: a lost MIDI port or an absent OSC receiver is counted in `stats` and retried.

Config dataclasses ([output.midi], [output.osc], [output.print] in the daemon's TOML) are loaded by
core.loader.load_dataclass (unknown keys and wrong types name the key); `validate_outputs` checks them
against the contract.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, Sequence

from synthmatch.bridge.core.errors import UsageError

log = logging.getLogger("synthmatch.sinks")


class SinkConfigError(UsageError, ValueError):
    """A sink setting is invalid; the message names the key (e.g. output.midi.ccs[3])."""


@dataclass(frozen=True)
class Update:
    """One prediction on its way out.

    values: 16 normalised floats in contract order. t_audio: time.monotonic() seconds at the end of the
    analysed audio (the newest sample the model saw); t_infer_done: time.monotonic() when the model's
    output was ready; either may be None. mode: "trigger" | "continuous" | "manual" | "" (free text).
    """

    values: Sequence[float]
    t_audio: float | None = None
    t_infer_done: float | None = None
    mode: str = ""
    note: int | None = None  # MIDI note the sound plays (detected, or the fallback note); None: no note
    f0_hz: float | None = None  # detected fundamental, Hz; None when the note fell back
    midi: float | None = None  # fractional MIDI pitch (f0's), for pitch bend
    confidence: float | None = None  # voicing confidence of the detection, 0..1
    new_note: bool = False  # this update starts a note (a snapshot, or a tracked note change)
    note_off: bool = False  # no values: the held note ends (continuous mode's silence gate)


class Sink(Protocol):
    def send(self, values: Sequence[float] | Update) -> int: ...  # messages sent
    def close(self) -> None: ...


@dataclass
class SinkStats:
    updates: int = 0  # send() calls
    sent: int = 0  # messages (MIDI CC messages, OSC messages inside bundles, JSON lines)
    errors: int = 0  # failed sends (port gone, ICMP refused, ...)
    reopens: int = 0  # successful reopen after a loss (MIDI)
    dropped: int = 0  # updates that found the output down
    deferred: int = 0  # updates held while a new MIDI connection settled (sent after it)


def as_update(x: Sequence[float] | Update) -> Update:
    return x if isinstance(x, Update) else Update(values=x)


def checked_values(values: Sequence[float], n: int, where: str = "update") -> list[float]:
    """Python floats (numpy scalars cast), clipped to [0, 1]; wrong count or NaN -> ValueError."""
    vals = [float(v) for v in values]
    if len(vals) != n:
        raise ValueError(f"{where}: {len(vals)} values, expected {n} (one per contract parameter)")
    if any(math.isnan(v) for v in vals):
        raise ValueError(f"{where}: NaN among the values: {vals}")
    return [min(1.0, max(0.0, v)) for v in vals]


# ------------------------------------------------------------------------------------------------
# configs


@dataclass
class MidiSinkConfig:
    enabled: bool = False
    port: str = ""  # send into an existing input port whose name contains this (the DAW's/synth's)
    virtual: str = "cc_out"  # else (port = "") create this virtual port for the DAW to connect to
    channel: int = 1  # 1..16
    ccs: list[int] = field(default_factory=list)  # one CC per parameter; [] = the contract's cc column
    resolution: int = 7  # 7: one CC per parameter; 14: MSB on cc, then LSB on cc + 32
    api: str = "auto"  # "auto" (JACK if a server answers, else ALSA/CoreMIDI/WinMM) | "jack" | "alsa" | ...
    client_name: str = "synthmatch"
    check_interval_s: float = 0.5  # how often the port's presence / the JACK server is checked
    retry_min_s: float = 0.5  # reopen backoff after a loss: doubles up to retry_max_s
    retry_max_s: float = 5.0
    notes: bool = False  # also send note-on/note-off for the detected note (voice-to-MIDI)
    velocity: int = 100  # note-on velocity, 1..127
    pitch_bend: bool = False  # also send 14-bit pitch bend: the detected pitch's distance from the note
    bend_range: float = 2.0  # semitones at full bend: set the synth's pitch-bend range to the same


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


@dataclass
class OscSinkConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 0  # 0 = the preset's usual port (generic 9000, reaper 8000, ableton 11000, bitwig 8000)
    preset: str = "generic"  # generic | reaper | ableton | bitwig
    address: str = ""  # template overriding the preset's, fields {name} {index} {index1} {slot} {page}
    # {track} {fx} {device}
    args: list[str] = field(default_factory=list)  # argument tokens ("value" or a field); [] = preset's
    track: int = -1  # -1 = preset default (reaper 1-based, ableton 0-based)
    fx: int = -1
    device: int = -1
    indices: list[int] = field(default_factory=list)  # target parameter index per parameter; [] = 0..15
    value_max: float = 0.0  # values are sent as v * value_max; 0 = preset's (1.0; bitwig 127)
    note_address: str = "/synthmatch/note"  # one more message per update: note (i), f0 Hz (f, 0 when it
    # fell back), confidence (f); a note-off sends note, 0, 0; "" = none


@dataclass
class PrintSinkConfig:
    enabled: bool = False
    physical: bool = False  # also print physical units (Hz, s, semitones)


@dataclass
class OutputSettings:
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
        if not isinstance(cc, int) or isinstance(cc, bool) or not 0 <= cc <= 127:
            raise SinkConfigError(f"{k} = {cc!r}: CC numbers are integers 0..127")
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
        if getattr(cfg, k) >= 0:
            s[k] = getattr(cfg, k)
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


def validate_outputs(out: OutputSettings, contract) -> None:
    """Cross-checks for the daemon's [output] tables (raises SinkConfigError naming the key)."""
    if out.midi.enabled:
        validate_midi(out.midi, contract)
    if out.osc.enabled:
        osc_settings(out.osc)
        if out.osc.indices and len(out.osc.indices) != len(contract.params):
            raise SinkConfigError(
                f"output.osc.indices: {len(out.osc.indices)} entries for {len(contract.params)} parameters"
            )


def build_sinks(out: OutputSettings, contract) -> list[Sink]:
    """The enabled sinks, opened (a MIDI port that cannot be found raises MidiPortError here)."""
    from synthmatch.bridge.outputs.midi import MidiCCSink

    sinks: list[Sink] = []
    if out.midi.enabled:
        sinks.append(MidiCCSink(out.midi, contract))
    if out.osc.enabled:
        sinks.append(OscSink(out.osc, contract))
    if out.print.enabled:
        sinks.append(PrintSink(contract, physical=out.print.physical))
    return sinks


# ------------------------------------------------------------------------------------------------
# OSC


def note_message(address: str, note: int, f0_hz: float, confidence: float):
    """/synthmatch/note ,iff note f0 confidence."""
    from pythonosc import osc_message_builder

    msg = osc_message_builder.OscMessageBuilder(address)
    msg.add_arg(int(note), osc_message_builder.OscMessageBuilder.ARG_TYPE_INT)
    msg.add_arg(float(f0_hz), osc_message_builder.OscMessageBuilder.ARG_TYPE_FLOAT)
    msg.add_arg(float(confidence), osc_message_builder.OscMessageBuilder.ARG_TYPE_FLOAT)
    return msg.build()


class OscSink:
    """One OSC bundle (timetag "immediately") per update over UDP, one message per parameter.

    Values always go out with type tag f (numpy scalars are cast to Python float); index fields in args
    are i. An absent receiver never raises: the ICMP "port unreachable" the kernel reports on a later
    send is counted in stats.errors (and that update in stats.dropped), and sending goes on.
    """

    def __init__(self, cfg: OscSinkConfig, contract):
        self.cfg, self.names = cfg, list(contract.names)
        self.settings = osc_settings(cfg)
        n = len(self.names)
        self.indices = list(cfg.indices) if cfg.indices else list(range(n))
        if len(self.indices) != n:
            raise SinkConfigError(f"output.osc.indices: {len(self.indices)} entries for {n} parameters")
        self.stats = SinkStats()
        # a connected UDP socket: the kernel then reports an ICMP "port unreachable" (no receiver) as
        # ConnectionRefusedError on a later send, which is counted instead of passing unnoticed
        port = self.settings["port"]
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(cfg.host, port, type=socket.SOCK_DGRAM)[0]
        except socket.gaierror as e:
            raise SinkConfigError(f"output.osc.host = {cfg.host!r}: cannot resolve ({e})") from None
        self._sock = socket.socket(family, kind, proto)
        self._sock.setblocking(False)
        self._sock.connect(addr)

    def _fields(self, i: int) -> dict[str, Any]:
        s, idx = self.settings, self.indices[i]
        return dict(
            name=self.names[i],
            index=idx,
            index1=idx + 1,
            slot=idx % 8 + 1,
            page=idx // 8 + 1,
            track=s["track"],
            fx=s["fx"],
            device=s["device"],
        )

    def bundle(self, values: Sequence[float], note: tuple[int, float, float] | None = None):
        """The OscBundle for these 16 values, and (note, f0 Hz, confidence) when given (also used by tests
        for golden bytes)."""
        from pythonosc import osc_bundle_builder, osc_message_builder

        vals = checked_values(values, len(self.names))
        s = self.settings
        bundle = osc_bundle_builder.OscBundleBuilder(osc_bundle_builder.IMMEDIATELY)
        page = None
        for i, v in enumerate(vals):
            f = self._fields(i)
            if s.get("page_select") and f["page"] != page:
                page = f["page"]
                bundle.add_content(osc_message_builder.OscMessageBuilder(s["page_select"].format(**f)).build())
            msg = osc_message_builder.OscMessageBuilder(s["address"].format(**f))
            for tok in s["args"]:
                if tok == "value":
                    x = v * s["value_max"]
                    x = float(round(x)) if s["value_max"] > 1.0 else x  # a step scale (0..127): nearest step
                    msg.add_arg(float(x), osc_message_builder.OscMessageBuilder.ARG_TYPE_FLOAT)
                elif tok == "name":
                    msg.add_arg(str(f[tok]), osc_message_builder.OscMessageBuilder.ARG_TYPE_STRING)
                else:
                    msg.add_arg(int(f[tok]), osc_message_builder.OscMessageBuilder.ARG_TYPE_INT)
            bundle.add_content(msg.build())
        if self.cfg.note_address and note is not None:
            bundle.add_content(note_message(self.cfg.note_address, *note))
        return bundle.build()

    def send(self, update: Sequence[float] | Update) -> int:
        u = as_update(update)
        if u.note_off:
            if not self.cfg.note_address or u.note is None:
                return 0
            from pythonosc import osc_bundle_builder

            nb = osc_bundle_builder.OscBundleBuilder(osc_bundle_builder.IMMEDIATELY)
            nb.add_content(note_message(self.cfg.note_address, u.note, 0.0, 0.0))
            b = nb.build()
        else:
            note = None if u.note is None else (u.note, u.f0_hz or 0.0, u.confidence or 0.0)
            b = self.bundle(u.values, note)
        self.stats.updates += 1
        try:
            try:
                self._sock.send(b.dgram)
            except ConnectionRefusedError:  # reports an earlier datagram's ICMP; this one did not go out
                self.stats.errors += 1
                if self.stats.errors == 1 or self.stats.errors % 1000 == 0:
                    log.warning(
                        "no OSC receiver at %s:%s (port unreachable, %d times); still sending",
                        self.cfg.host,
                        self.settings["port"],
                        self.stats.errors,
                    )
                self._sock.send(b.dgram)
        except OSError as e:  # refused again, network unreachable, buffer full
            self.stats.errors += 1
            self.stats.dropped += 1
            if self.stats.errors in (1, 2, 10, 100) or self.stats.errors % 1000 == 0:
                log.warning(
                    "OSC to %s:%s failed (%s); %d failures so far",
                    self.cfg.host,
                    self.settings["port"],
                    e,
                    self.stats.errors,
                )
            return 0
        n = b.num_contents
        self.stats.sent += n
        return n

    def close(self) -> None:
        self._sock.close()


# ------------------------------------------------------------------------------------------------
# print


class PrintSink:
    """One JSON line per update on `stream` (stdout):
    {"t": unix time, "mode": ..., "latency_ms": now - t_audio, "infer_ms": t_infer_done - t_audio,
     "values": {name: v}, ["physical": {name: x}], "note": {"midi": N, "f0_hz": f, "confidence": c,
     "new": bool}}. Missing timings (and f0 when the note fell back) are null; a note-off update is
    {"t", "mode", "note_off": N}.
    """

    def __init__(self, contract, stream: IO[str] | None = None, physical: bool = False, digits: int = 5):
        self.contract, self.names = contract, list(contract.names)
        self.stream = stream if stream is not None else sys.stdout
        self.physical, self.digits = physical, digits
        self.stats = SinkStats()

    def line(self, update: Sequence[float] | Update) -> str:
        u = as_update(update)
        if u.note_off:
            return json.dumps({"t": round(time.time(), 3), "mode": u.mode, "note_off": u.note})
        vals = checked_values(u.values, len(self.names))
        now = time.monotonic()
        ms = lambda a, b: None if a is None or b is None else round((b - a) * 1000.0, 2)  # noqa: E731
        rec: dict[str, Any] = {
            "t": round(time.time(), 3),
            "mode": u.mode,
            "latency_ms": ms(u.t_audio, now),
            "infer_ms": ms(u.t_audio, u.t_infer_done),
            "values": {n: round(v, self.digits) for n, v in zip(self.names, vals)},
        }
        if u.note is not None:
            rec["note"] = {
                "midi": u.note,
                "f0_hz": None if u.f0_hz is None else round(u.f0_hz, 2),
                "confidence": None if u.confidence is None else round(u.confidence, 3),
                "new": u.new_note,
            }
        if self.physical:
            rec["physical"] = {n: round(x, 6) for n, x in self.contract.to_physical(vals).items()}
        return json.dumps(rec)

    def send(self, update: Sequence[float] | Update) -> int:
        text = self.line(update)
        self.stats.updates += 1
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError) as e:  # closed pipe / closed file
            self.stats.errors += 1
            log.warning("print output failed: %s", e)
            return 0
        self.stats.sent += 1
        return 1

    def close(self) -> None:
        pass
