"""The outputs' seam: what a sink is (`Sink`: send, close, maintain), what it is sent (`Update`), what it counts
(`SinkStats`) and the error a sink setting raises (`SinkConfigError`).

Every sink takes one update at a time: the 16 normalised values [0, 1] in contract order, either as a
plain sequence or as an `Update` carrying timing and mode for the print sink. `send` returns the number
of messages it put on the wire (0 when nothing changed or the output is unreachable) and never raises
for transport trouble: a lost MIDI port or an absent OSC receiver is counted in `stats` and retried.
Imports core only; the sinks (midi, osc, printer) import this module and `config`, never the package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

from synthmatch.bridge.core.errors import UsageError


class SinkConfigError(UsageError, ValueError):
    """A sink setting is invalid; the message names the key (e.g. output.midi.ccs[3])."""


@dataclass(frozen=True)
class Update:
    """One prediction on its way out.

    values: 16 normalised floats in contract order. t_audio: time.monotonic() seconds at the end of the
    analysed audio (the newest sample the model saw); t_infer_done: time.monotonic() when the model's
    output was ready; either may be None. mode: "trigger" | "continuous" | "manual" | "" (free text).
    stream_s: where in the input the analysed audio ends (s), the stream's own clock.
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
    # the input position of the end of the analysed window, s since the input started (16 kHz samples / sr):
    # on file input, the file position, so response can be measured without wall clocks; None: unknown
    stream_s: float | None = None


class Sink(Protocol):
    """An output: MIDI CC (midi.MidiCCSink), OSC (osc.OscSink), JSON lines (printer.PrintSink)."""

    def send(self, values: Sequence[float] | Update) -> int:
        """One update -> the messages put on the wire; transport trouble is counted, not raised."""
        ...

    def close(self) -> None: ...

    def maintain(self) -> None:
        """The idle worker's check of the output (a lost MIDI port reopened); a no-op where there is none."""
        ...


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
