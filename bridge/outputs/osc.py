"""OSC output: the 16 values (and the note) to a DAW or synth over UDP, one bundle per update, with
the DAW presets of OscSinkConfig (REAPER, Ableton, Bitwig, plain), or with a synth's output profile
(bridge/outputs/profile.py): then each parameter the synth has goes to the profile's own address, with
its type tag, as the value its target needs for the physical value; the others are not sent."""

from __future__ import annotations

import logging
import socket
from typing import Any, Sequence

from pythonosc.osc_bundle_builder import BuildError as BundleBuildError
from pythonosc.osc_message_builder import BuildError

from synthmatch.bridge.core.loader import INT32_MAX
from synthmatch.bridge.outputs.base import SinkConfigError, SinkStats, Update, as_update, checked_values
from synthmatch.bridge.outputs.config import OscSinkConfig, osc_settings
from synthmatch.bridge.outputs.profile import OutputProfile

log = logging.getLogger("synthmatch.sinks")


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

    def __init__(self, cfg: OscSinkConfig, contract, profile: OutputProfile | None = None):
        self.cfg, self.names, self.profile = cfg, list(contract.names), profile
        self.settings = osc_settings(cfg)
        if profile is not None:
            if not profile.has("osc"):
                raise SinkConfigError(
                    f"output.profile = {profile.name!r} has no OSC targets ([[live.osc]]); send MIDI "
                    "(--midi-port) or pick another profile"
                )
            if not cfg.port and profile.osc_port:
                self.settings["port"] = profile.osc_port
        n = len(self.names)
        self.indices = list(cfg.indices) if cfg.indices else list(range(n))
        if len(self.indices) != n:
            raise SinkConfigError(f"output.osc.indices: {len(self.indices)} entries for {n} parameters")
        self.stats = SinkStats()
        if not all(0 <= i < INT32_MAX for i in self.indices):  # index1 = index + 1 is an OSC int too
            raise SinkConfigError(f"output.osc.indices: each in [0, {INT32_MAX - 1}] (an OSC int is 32-bit)")
        try:  # whatever python-osc cannot encode (an int beyond 32 bits, a float beyond float32) fails now
            self.bundle([0.5] * n, (60, 261.6, 1.0))
        except (BuildError, BundleBuildError, OverflowError, ValueError) as e:
            raise SinkConfigError(
                f"output.osc: these settings cannot be sent as OSC ({e}); see configs/bridge.toml"
            ) from None
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
        if self.profile is not None:
            b = osc_message_builder.OscMessageBuilder
            # the settings the profile's laws assume (cheap; a restarted synth gets them back next update),
            # then each parameter the synth has
            sent = [(x.address, x.type, x.value) for x in self.profile.osc_fixed] + [
                (t.address, t.type, w)
                for t, w in zip(self.profile.osc, self.profile.wire(vals, "osc"))
                if t is not None and w is not None
            ]
            for address, tag, value in sent:
                msg = b(address)
                if tag == "i":
                    msg.add_arg(int(value), b.ARG_TYPE_INT)
                else:
                    msg.add_arg(float(value), b.ARG_TYPE_FLOAT)
                bundle.add_content(msg.build())
            vals = []  # the presets' messages are not sent
        for i, v in enumerate(vals):
            f = self._fields(i)
            if s.get("page_select") and f["page"] != page:
                page = f["page"]
                bundle.add_content(osc_message_builder.OscMessageBuilder(s["page_select"].format(**f)).build())
            msg = osc_message_builder.OscMessageBuilder(s["address"].format(**f))
            for tok in s["args"]:
                if tok == "value":
                    lo, hi = s["value_min"], s["value_max"]
                    x = lo + v * (hi - lo)
                    x = float(round(x)) if hi > 1.0 else x  # a step scale (0..127): nearest step
                    x = min(hi, max(lo, x))  # never outside the declared range, whatever the rounding
                    msg.add_arg(float(x), osc_message_builder.OscMessageBuilder.ARG_TYPE_FLOAT)
                elif tok == "name":
                    msg.add_arg(str(f[tok]), osc_message_builder.OscMessageBuilder.ARG_TYPE_STRING)
                else:
                    msg.add_arg(int(f[tok]), osc_message_builder.OscMessageBuilder.ARG_TYPE_INT)
            bundle.add_content(msg.build())
        if self.cfg.note_address and note is not None and self.profile is None:  # a synth has no such address
            bundle.add_content(note_message(self.cfg.note_address, *note))
        return bundle.build()

    def send(self, update: Sequence[float] | Update) -> int:
        u = as_update(update)
        if u.note_off:
            if not self.cfg.note_address or u.note is None or self.profile is not None:
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

    def maintain(self) -> None:
        """Nothing to check: UDP has no connection (an absent receiver is counted as sends fail)."""

    def close(self) -> None:
        self._sock.close()
