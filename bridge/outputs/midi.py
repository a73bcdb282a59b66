"""MIDI CC output: 16 normalised values -> control changes on one channel, 7- or 14-bit.

Only values that changed at the chosen resolution are sent (a per-parameter cache of the last value on
the wire). 14-bit values go out as MSB on CC n then LSB on CC n + 32, always as a pair, MSB first.
Nothing is sent on open: no "reset all controllers", no all-notes-off; close() sends only the note-off
of a note this sink started and still holds.

Notes (output.midi.notes = true): an update that starts a note (Update.new_note: every trigger/manual
snapshot, a continuous note change) sends the held note's note-off, then the CCs, then the new note's
note-on, so the note sounds with its patch already set; a note-off update (continuous silence) ends the
held note. Pitch bend (output.midi.pitch_bend = true): 14-bit, 8192 = centre, the fractional pitch's
distance from the note over bend_range semitones, sent before a note-on and whenever it changes.

The port is either an existing input (the synth's/DAW's, chosen by a name substring: missing or
ambiguous -> MidiPortError listing the candidates at start-up) or a virtual port this process creates.
A port that goes away later (receiver quits, JACK server dies, a send raises) is never fatal: the sink
drops updates, reopens by the same substring with exponential backoff, and after reopening sends all
16 current values again (the receiver may have missed any number of updates). Checks happen in
send() and in maintain(), which the daemon may call from its loop when there is nothing to send.

With an output profile (bridge/outputs/profile.py, `--profile NAME`) each parameter goes where the
profile says (CC 7-bit, 14-bit pair, or NRPN: CC 99, 98, 6, 38 in that order) as the value its target
needs for the predicted physical value; a parameter the synth lacks is never sent. Without one, every
parameter goes out normalised on its `ccs` entry (the contract's cc column; -1 = not sent).

A connection the sink makes itself (a named port) takes effect at a JACK cycle boundary: events sent
in the same cycle go nowhere. So for SETTLE_S after connecting, updates are deferred (kept as the
newest values, counted in stats.deferred) and pushed by the first maintain() or send() after it.
Likewise, sent events leave at the next cycle: close() waits until SETTLE_S after the last send
before it closes the port, so a final update is not cut off.
"""

from __future__ import annotations

import logging
import time
from typing import Sequence

import mido
import rtmidi

from synthmatch.bridge.outputs import midiports
from synthmatch.bridge.outputs.base import SinkConfigError, SinkStats, Update, as_update, checked_values
from synthmatch.bridge.outputs.config import MidiSinkConfig, validate_midi
from synthmatch.bridge.outputs.midiports import MidiPortError
from synthmatch.bridge.outputs.profile import OutputProfile

log = logging.getLogger("synthmatch.midi")


def quantise(values: Sequence[float], resolution: int) -> list[int]:
    """[0, 1] -> 0..127 (7-bit) or 0..16383 (14-bit), nearest step; never outside them."""
    top = 127 if resolution == 7 else 16383
    return [min(top, max(0, int(v * top + 0.5))) for v in values]  # half up (round() would make 63.5 even)


def bend_value(midi: float, note: int, bend_range: float) -> int:
    """Fractional pitch -> 14-bit pitch-bend value 0..16383 (8192 = the note itself)."""
    b = max(-1.0, min(1.0, (midi - note) / bend_range))
    return max(0, min(16383, int(round(8192 + b * 8192))))


Slot = tuple[str, int]  # (kind: "cc" | "cc14" | "nrpn", number): where one parameter goes


def cc_messages(
    q: Sequence[int], previous: Sequence[int | None], ccs: Sequence[int], channel: int, resolution: int
) -> list[tuple[int, list[mido.Message]]]:
    """(parameter index, messages) for each parameter whose quantised value differs from `previous`.

    channel is 1..16; 14-bit: [MSB on cc, LSB on cc + 32].
    """
    kind = "cc" if resolution == 7 else "cc14"
    return slot_messages(q, previous, [(kind, c) for c in ccs], channel)


def slot_messages(
    q: Sequence[int | None], previous: Sequence[int | None], slots: Sequence[Slot | None], channel: int
) -> list[tuple[int, list[mido.Message]]]:
    """(parameter index, messages) for each parameter with a slot whose value differs from `previous`;
    None values and slots send nothing. cc: one CC; cc14: MSB on n, then LSB on n + 32; nrpn: CC 99 and
    98 (the number's MSB and LSB), then data entry 6 and 38 (the value's MSB and LSB)."""
    out = []
    ch = channel - 1
    cc = lambda c, v: mido.Message("control_change", channel=ch, control=c, value=v)  # noqa: E731
    for i, (v, prev, slot) in enumerate(zip(q, previous, slots)):
        if v == prev or v is None or slot is None:
            continue
        kind, n = slot
        if kind == "cc":
            msgs = [cc(n, v)]
        elif kind == "cc14":
            msgs = [cc(n, v >> 7), cc(n + 32, v & 0x7F)]
        else:
            msgs = [cc(99, n >> 7), cc(98, n & 0x7F), cc(6, v >> 7), cc(38, v & 0x7F)]
        out.append((i, msgs))
    return out


class MidiCCSink:
    """See the module docstring. `port_name`: the port sent into (or the virtual port created)."""

    SETTLE_S = 0.1  # after connecting to a named port: a few JACK periods (2048 frames at 44.1 kHz = 46 ms)

    def __init__(self, cfg: MidiSinkConfig, contract, clock=time.monotonic, profile: OutputProfile | None = None):
        self.cfg, self.clock, self.profile = cfg, clock, profile
        ccs = validate_midi(cfg, contract)
        self.n = len(ccs)
        kind = "cc" if cfg.resolution == 7 else "cc14"
        self.slots: list[Slot | None] = [None if c < 0 else (kind, c) for c in ccs]
        if profile is not None:
            if not profile.has("midi"):
                raise SinkConfigError(
                    f"output.profile = {profile.name!r} has no MIDI targets ([[live.midi]]); send OSC (--osc) "
                    "or pick another profile"
                )
            self.slots = [None if t is None else (t.kind, t.number) for t in profile.midi]
        self.stats = SinkStats()
        self.api = midiports.resolve_api(cfg.api)  # fixed for the sink's life: port names are per API
        self._out: rtmidi.MidiOut | None = None
        self._sent: list[int | None] = [None] * self.n  # last value on the wire, per parameter
        self._wanted: list[int | None] | None = None  # newest quantised update
        self._jack_id: tuple[int, int] | None = None  # JACK api: the server instance we opened on
        self._backoff = cfg.retry_min_s
        self._retry_at = 0.0
        self._checked = 0.0
        self._settle_until = 0.0
        self._last_push = -1e9  # clock() of the last send_message
        self._held: int | None = None  # the note this sink turned on and has not turned off
        self._bend: int | None = None  # last pitch-bend value on the wire
        self._notes_wanted: list[list[int]] = []  # note/bend messages deferred by a settling connection
        self.port_name = ""
        self._open()  # start-up errors (no such port, no server) are the user's to fix: raise

    # -- port management -------------------------------------------------------------------------

    def _open(self) -> None:
        out = midiports.new_client("out", self.api, self.cfg.client_name)
        try:
            if self.cfg.port:
                names = out.get_ports()
                idx = midiports.pick_port(names, self.cfg.port, f"output port ({self.api})")
                out.open_port(idx, "cc_out")
                self.port_name = names[idx]
            else:
                out.open_virtual_port(self.cfg.virtual)
                self.port_name = f"{self.cfg.client_name}:{self.cfg.virtual}"
        except (MidiPortError, rtmidi.RtMidiError):
            midiports.retire(out, server_dead=False)
            raise
        self._jack_id = midiports.jack_server_id() if self.api == "jack" else None
        self._out = out
        self._checked = self.clock()
        self._settle_until = self._checked + self.SETTLE_S if self.cfg.port else 0.0
        how = f"profile {self.profile.name}" if self.profile is not None else f"{self.cfg.resolution}-bit"
        log.info("MIDI CC out: %s (%s, channel %d, %s)", self.port_name, self.api, self.cfg.channel, how)

    def _lose(self, why: str, server_dead: bool) -> None:
        log.warning("MIDI port %s lost (%s); reopening with backoff", self.port_name, why)
        midiports.retire(self._out, server_dead=server_dead)
        self._out = None
        self._retry_at = self.clock() + self._backoff
        self._backoff = min(self._backoff * 2, self.cfg.retry_max_s)

    def _server_gone(self) -> bool:
        """JACK only: the server we opened on died or was replaced (pipewire-jack: never known)."""
        if self._jack_id is None:
            return False
        return midiports.jack_server_id() != self._jack_id or midiports.jack_server_alive() is not True

    def _healthy(self) -> bool:
        """Is the open port still usable? (JACK server alive; the target port still listed)."""
        if self._server_gone():
            self._lose("JACK server gone", server_dead=True)
            return False
        if self.cfg.port:
            try:
                present = self._out is not None and self.port_name in self._out.get_ports()
            except rtmidi.RtMidiError as e:
                self._lose(str(e), server_dead=False)
                return False
            if not present:
                self._lose(f"{self.port_name} disappeared", server_dead=False)
                return False
        return True

    def maintain(self) -> None:
        """Check the port (at most every check_interval_s), reopen when due; after a reopen, resend all."""
        now = self.clock()
        if self._out is not None and self._settle_until and now >= self._settle_until:
            self._settle_until = 0.0
            if self._wanted is not None:
                self._push(self._wanted)  # what was deferred while the connection settled
            self._push_raw(self._notes_wanted)
            self._notes_wanted = []
        if self._out is not None:
            if now - self._checked < self.cfg.check_interval_s:
                return
            self._checked = now
            self._healthy()
            return
        if now < self._retry_at:
            return
        try:
            self._open()
        except (MidiPortError, rtmidi.RtMidiError) as e:
            self._retry_at = now + self._backoff
            self._backoff = min(self._backoff * 2, self.cfg.retry_max_s)
            log.debug("MIDI reopen failed: %s", e)
            return
        self.stats.reopens += 1
        self._backoff = self.cfg.retry_min_s
        self._sent = [None] * self.n
        if self._wanted is not None and not self._settle_until:
            self._push(self._wanted)  # else pushed once the new connection has settled

    # -- sending ---------------------------------------------------------------------------------

    def _quantise(self, values: Sequence[float]) -> list[int | None]:
        """16 values -> the wire value of each parameter (None: not sent)."""
        vals = checked_values(values, self.n)
        if self.profile is not None:
            return [None if w is None else int(w) for w in self.profile.wire(vals, "midi")]
        q: list[int | None] = list(quantise(vals, self.cfg.resolution))
        return [None if s is None else v for v, s in zip(q, self.slots)]

    def _push(self, q: list[int | None]) -> int:
        out = self._out
        if out is None:  # lost meanwhile: the next reconnect pushes the wanted values
            return 0
        count = 0
        for i, msgs in slot_messages(q, self._sent, self.slots, self.cfg.channel):
            try:
                for m in msgs:
                    out.send_message(m.bytes())
                    count += 1
            except (rtmidi.RtMidiError, OSError) as e:
                self.stats.errors += 1
                self.stats.sent += count
                self._lose(f"send failed: {e}", server_dead=False)
                return count
            self._sent[i] = q[i]
        self.stats.sent += count
        if count:
            self._last_push = self.clock()
        return count

    def _push_raw(self, msgs: list[list[int]]) -> int:
        """Note and bend messages (raw bytes) -> how many went out."""
        count = 0
        for m in msgs:
            if self._out is None:  # lost by a failed send before this one
                break
            try:
                self._out.send_message(m)
            except (rtmidi.RtMidiError, OSError) as e:
                self.stats.errors += 1
                self._lose(f"send failed: {e}", server_dead=False)
                break
            count += 1
        self.stats.sent += count
        if count:
            self._last_push = self.clock()
        return count

    def _note_events(self, u: Update) -> tuple[list[list[int]], list[list[int]]]:
        """(before the CCs, after them) note and bend messages for an update; updates the note state."""
        ch = self.cfg.channel - 1
        before: list[list[int]] = []
        after: list[list[int]] = []
        starts = self.cfg.notes and u.new_note and u.note is not None
        if self.cfg.notes and self._held is not None and (starts or u.note_off):
            before.append([0x80 | ch, self._held, 0])
            self._held = None
        if self.cfg.pitch_bend and u.note is not None and u.midi is not None and not u.note_off:
            b = bend_value(u.midi, u.note, self.cfg.bend_range)
            if b != self._bend or starts:
                after.append([0xE0 | ch, b & 0x7F, b >> 7])
                self._bend = b
        if starts and u.note is not None:
            after.append([0x90 | ch, int(u.note), self.cfg.velocity])
            self._held = int(u.note)
        return before, after

    def send(self, update: Sequence[float] | Update) -> int:
        """Send the changed parameters of one update (and its note events); 0 when nothing changed or
        the port is down."""
        u = as_update(update)
        if u.note_off or self.cfg.notes or self.cfg.pitch_bend:
            return self._send_with_notes(u)
        return self._send_values(u)

    def _send_with_notes(self, u: Update) -> int:
        self.maintain()
        if self._out is None:
            self.stats.dropped += 1
            if u.new_note or u.note_off:
                self._held = None  # the receiver never got a note-on we could end: forget it
            return 0
        before, after = self._note_events(u)
        if self._settle_until:
            self._notes_wanted += before
            n = 0 if u.note_off else self._send_values(u)
            self._notes_wanted += after
            return n
        n = self._push_raw(before)
        if not u.note_off:
            n += self._send_values(u)
        return n + self._push_raw(after) if self._out is not None else n

    def _send_values(self, u: Update) -> int:
        q = self._quantise(u.values)
        self.stats.updates += 1
        self._wanted = q
        sent_before = self.stats.sent
        self.maintain()  # may reopen, or end a settle, and push self._wanted already
        if self._out is None:
            self.stats.dropped += 1
            return 0
        if self._settle_until:
            self.stats.deferred += 1
            return 0
        self._push(q)  # only what differs from the wire: nothing if maintain() just pushed it
        return self.stats.sent - sent_before

    def close(self) -> None:
        """Close the port. Sends nothing new: only an update still deferred by a settling connection.
        Waits (at most SETTLE_S) for what was sent to leave."""
        if self._out is not None and self._settle_until and self._wanted is not None:
            time.sleep(max(0.0, self._settle_until - self.clock()))
            self._settle_until = min(self._settle_until, self.clock())  # waited out: ends on any clock
            self.maintain()
        if self._out is not None and self.cfg.notes and self._held is not None:
            self._push_raw([[0x80 | (self.cfg.channel - 1), self._held, 0]])  # no hanging note
            self._held = None
        if self._out is not None:
            time.sleep(min(self.SETTLE_S, max(0.0, self._last_push + self.SETTLE_S - self.clock())))
            midiports.retire(self._out, server_dead=self._server_gone())
            self._out = None
