"""The MIDI footswitch: a pedal or pad on a MIDI input fires "trigger" commands into the daemon's
CommandQueue (manual mode), as the OSC control server does for /synthmatch/trigger."""

from __future__ import annotations

import logging
import threading
import time

from synthmatch.bridge.live.control import CommandQueue, ControlCommand, ControlStats

log = logging.getLogger("synthmatch.control")


class MidiTrigger:
    """A footswitch/pad on a MIDI input fires "trigger" commands (for manual mode).

    READ_INTERVAL_S bounds the latency a message adds (see _read for why it is polled).

    note: a note-on with velocity > 0 of this note fires; cc: this controller crossing from < 64 to >= 64
    fires (a sustain pedal sends 127 on press, 0 on release). channel 1..16, or 0 for any. The port is
    an existing output (the controller's) chosen by name substring, or, with port "", a virtual input
    named `virtual` that the user connects. A lost port is reopened by name on `maintain()`.
    """

    READ_INTERVAL_S = 0.002  # RtMidi's queue is drained this often, s

    def __init__(
        self,
        commands: CommandQueue,
        port: str = "",
        note: int | None = None,
        cc: int | None = 64,
        channel: int = 0,
        api: str = "auto",
        virtual: str = "trigger_in",
        client_name: str = "synthmatch-trigger",
        retry_s: float = 1.0,
    ):
        from synthmatch.bridge.outputs import midiports

        if (note is None) == (cc is None):
            raise ValueError("MidiTrigger: give exactly one of note or cc")
        for name, v, lo, hi in (("note", note, 0, 127), ("cc", cc, 0, 127), ("channel", channel, 0, 16)):
            if v is not None and not lo <= v <= hi:
                raise ValueError(f"MidiTrigger: {name} = {v}: must be {lo}..{hi}")
        self.commands, self.port, self.note, self.cc, self.channel = commands, port, note, cc, channel
        self.virtual, self.client_name, self.retry_s = virtual, client_name, retry_s
        self.api = midiports.resolve_api(api)
        self.stats = ControlStats()
        self.port_name = ""
        self._pressed = False
        self._rt = None
        self._jack_id: tuple[int, int] | None = None  # the JACK server the port lives on (a restart changes it)
        self._retry_at = 0.0
        self._lock = threading.Lock()  # the reader thread vs maintain()/close() replacing self._rt
        self._closed = threading.Event()
        self._reader: threading.Thread | None = None
        self._open()

    def _open(self) -> None:
        import rtmidi

        from synthmatch.bridge.outputs import midiports

        rt = midiports.new_client("in", self.api, self.client_name)
        try:
            if self.port:
                names = rt.get_ports()
                idx = midiports.pick_port(names, self.port, f"input port ({self.api})")
                rt.open_port(idx, "trigger_in")
                self.port_name = names[idx]
            else:
                rt.open_virtual_port(self.virtual)
                self.port_name = f"{self.client_name}:{self.virtual}"
        except (midiports.MidiPortError, rtmidi.RtMidiError):
            midiports.retire(rt, server_dead=False)
            raise
        self._jack_id = midiports.jack_server_id() if self.api == "jack" else None
        self._rt = rt
        if self._reader is None:
            self._reader = threading.Thread(target=self._read, name="midi-trigger", daemon=True)
            self._reader.start()

    def _read(self) -> None:
        """Drain RtMidi's queue every READ_INTERVAL_S. No Python callback on purpose: RtMidi would call
        it from the JACK process thread, which would then wait for the GIL and miss its deadline
        (an xrun for the whole graph) whenever the worker holds it."""
        while not self._closed.wait(self.READ_INTERVAL_S):
            with self._lock:
                rt = self._rt
                while rt is not None and (m := rt.get_message()) is not None:
                    self._on_midi(m[0])

    def _on_midi(self, msg: list[int]) -> None:
        self.stats.received += 1
        if len(msg) != 3:
            return
        status, d1, d2 = msg
        kind, ch = status & 0xF0, (status & 0x0F) + 1
        if self.channel and ch != self.channel:
            return
        fire = False
        if self.note is not None and kind == 0x90 and d1 == self.note and d2 > 0:
            fire = True
        elif self.cc is not None and kind == 0xB0 and d1 == self.cc:
            pressed = d2 >= 64
            fire, self._pressed = pressed and not self._pressed, pressed
        if fire:
            if self.commands.put(ControlCommand("trigger", source="midi")):
                self.stats.accepted += 1
            else:
                self.stats.dropped += 1

    def maintain(self) -> None:
        """Reopen a lost port (JACK server restarted, controller unplugged); cheap, call it every loop."""
        import rtmidi

        from synthmatch.bridge.outputs import midiports

        now = time.monotonic()
        if self._rt is not None:
            dead = self._jack_id is not None and (
                midiports.jack_server_id() != self._jack_id or midiports.jack_server_alive() is not True
            )
            gone = bool(self.port) and not dead and self.port_name not in self._rt.get_ports()
            if not (dead or gone):
                return
            log.warning("MIDI trigger port %s lost; reopening", self.port_name)
            with self._lock:
                midiports.retire(self._rt, server_dead=dead)
                self._rt = None
            self._retry_at = now + self.retry_s
        if now < self._retry_at:
            return
        try:
            with self._lock:
                self._open()
        except (midiports.MidiPortError, rtmidi.RtMidiError) as e:  # keep trying
            log.debug("MIDI trigger reopen failed: %s", e)
            self._retry_at = now + self.retry_s

    def close(self) -> None:
        from synthmatch.bridge.outputs import midiports

        self._closed.set()
        if self._reader is not None:
            self._reader.join(1)
            self._reader = None
        if self._rt is not None:
            dead = self._jack_id is not None and (
                midiports.jack_server_id() != self._jack_id or midiports.jack_server_alive() is not True
            )
            midiports.retire(self._rt, server_dead=dead)
            self._rt = None
