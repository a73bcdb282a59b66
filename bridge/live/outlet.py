"""The updates' way out: every answer, and every note-off, handed to every sink, counted.

`Outlet.send` builds one bridge.outputs.base.Update from 16 values and hands it to each sink; it counts
the update (when a sink took it, or there are none), the messages the sinks put on the wire, the latency
from the audio's arrival (and that latency less the newest inference: the overhead), and remembers the
newest update (its values, when it went out, its note fields: `note_fields` makes them) for shaping,
the pitch resend and status.
Nothing a sink raises ends the show: the send (or the idle worker's port check, `maintain`) is counted
(send_failures) and logged rate-limited, and the other sinks still get the update.

Worker thread only, except that status reads `last_values` and `note_fields` (replaced whole, never mutated).
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from synthmatch.bridge.core.ratelimit import LimitedLog
from synthmatch.bridge.live.report import Counters, one_line

if TYPE_CHECKING:
    from synthmatch.bridge.outputs.base import Sink, Update

log = logging.getLogger("synthmatch.bridge")


class Outlet:
    """sinks: the bridge.outputs sinks (`send(update) -> messages`, `maintain()`); counters: the
    daemon's Counters (updates, messages, send_failures, latency_ms, overhead_ms; infer_ms is read)."""

    def __init__(self, sinks: list[Sink], counters: Counters):
        self.sinks, self.c = sinks, counters
        self.last_sent: np.ndarray | None = None  # the newest update's values (a copy)
        self.last_send_t = -math.inf  # ... when it was handed to the sinks (monotonic s)
        self.last_values: np.ndarray | None = None  # ... as given (status, the status line)
        self.note_fields: dict[str, Any] = {}  # the newest update's note: refined follow-up, status, pitch
        # 5 lines, then one every 30 s carrying the count suppressed (the counters logged every
        # log.interval_s have the totals): a fault that lasts all night adds 120 lines an hour
        self._log = LimitedLog(log, burst=5, per_s=1 / 30)

    def send(self, values: np.ndarray, t_audio: float, mode: str, notes: dict[str, Any] | None = None) -> None:
        """One update of 16 values whose audio arrived at t_audio (monotonic s). mode: Update's mode (with
        its tag, e.g. "trigger+refined"); notes: Update's note fields and stream_s."""
        from synthmatch.bridge.outputs.base import Update

        self.note_fields = {**(notes or {}), "new_note": False}
        u = Update(
            values=[float(v) for v in values],
            t_audio=t_audio,
            t_infer_done=time.monotonic(),
            mode=mode,
            **(notes or {}),
        )
        taken = self.deliver(u)
        now = time.monotonic()
        if taken or not self.sinks:
            self.c.updates += 1
        self.last_sent = values.copy()
        self.last_send_t = now
        self.last_values = values
        lat = (now - t_audio) * 1000.0
        self.c.latency_ms.append(lat)
        if self.c.infer_ms:  # everything but the model: waiting, conversion, windowing, sending
            self.c.overhead_ms.append(lat - self.c.infer_ms[-1])

    def note_off(self, note: int | None, mode: str, stream_s: float) -> None:
        """The held note ended at stream_s (s on the input's clock): a note-off update."""
        from synthmatch.bridge.outputs.base import Update

        self.deliver(Update(values=(), mode=mode, note=note, note_off=True, stream_s=stream_s))

    def deliver(self, u: Update) -> int:
        """Hand an outputs.base.Update to every sink -> how many took it (counting messages and failures)."""
        taken = 0
        for s in self.sinks:
            try:
                self.c.messages += s.send(u)
                taken += 1
            except Exception as e:  # sinks count transport trouble; this guard keeps a sink's bug from the show
                self._failed(s, "failed", e)
        return taken

    def maintain(self) -> None:
        """The idle worker's port check of every sink (reconnects are the sink's business)."""
        for s in self.sinks:
            try:
                s.maintain()
            except Exception as e:  # as in deliver: a sink's trouble is counted, never fatal
                self._failed(s, "port check failed", e)

    def _failed(self, sink: Any, what: str, e: Exception) -> None:
        self.c.send_failures += 1
        self._log.warning(
            "%s %s (%d sink failures so far): %s", type(sink).__name__, what, self.c.send_failures, one_line(e)
        )


def note_fields(est: Any, note: int | None, new: bool) -> dict[str, Any]:
    """Update's note fields from a bridge.audio.pitch.NoteEstimate and the note sent (held, in continuous);
    new: the note starts with this update."""
    return {
        "note": note,
        "f0_hz": est.f0_hz,
        "midi": est.midi if est.voiced else None,
        "confidence": round(est.confidence, 4),
        "new_note": new,
    }
