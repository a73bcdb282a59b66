"""Print output: one JSON line per update on a stream (stdout by default), for scripts and tests.

A reader that goes away (`synthmatch bridge --print | head -3`) ends the daemon as it ends any
command-line tool: at the broken pipe (EPIPE) the sink says so once, points stdout at /dev/null (no
"Exception ignored" at exit) and calls on_closed; the default, for the process's own stdout under a
SIGTERM handler (the bridge's clean stop, exit 0), raises SIGTERM. Each update meanwhile raises
OutputClosed, which the daemon counts as a send failure.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import sys
import time
from typing import IO, Any, Callable, Sequence

from synthmatch.bridge.outputs.base import SinkStats, Update, as_update, checked_values

log = logging.getLogger("synthmatch.sinks")


class OutputClosed(BrokenPipeError):
    """The print sink's reader has gone; the daemon counts the update as a send failure."""


def stop_process() -> None:
    """End this process as its SIGTERM handler does (the bridge: a clean stop, exit 0); nothing when no
    Python handler is installed (a library caller: the default action would kill it)."""
    if callable(signal.getsignal(signal.SIGTERM)):
        signal.raise_signal(signal.SIGTERM)


class PrintSink:
    """One JSON line per update on `stream` (stdout):
    {"t": unix time, "mode": ..., "stream_s": input position of the window's end (s), "latency_ms": now -
     t_audio, "infer_ms": t_infer_done - t_audio, "values": {name: v}, ["physical": {name: x}], "note":
     {"midi": N, "f0_hz": f, "confidence": c, "new": bool}}. Missing timings, stream_s (and f0 when the note
    fell back) are null; a note-off update is {"t", "mode", "stream_s", "note_off": N}.
    """

    def __init__(
        self,
        contract,
        stream: IO[str] | None = None,
        physical: bool = False,
        digits: int = 5,
        on_closed: Callable[[], None] | None = None,
    ):
        self.contract, self.names = contract, list(contract.names)
        self.stream = stream if stream is not None else sys.stdout
        self.physical, self.digits = physical, digits
        self.stats = SinkStats()
        self.closed = False  # the reader went away (EPIPE)
        if on_closed is None:
            on_closed = stop_process if self.stream is sys.__stdout__ else (lambda: None)
        self.on_closed = on_closed

    def line(self, update: Sequence[float] | Update) -> str:
        u = as_update(update)
        if u.note_off:
            return json.dumps(
                {"t": round(time.time(), 3), "mode": u.mode, "stream_s": _stream(u.stream_s), "note_off": u.note}
            )
        vals = checked_values(u.values, len(self.names))
        now = time.monotonic()
        ms = lambda a, b: None if a is None or b is None else round((b - a) * 1000.0, 2)  # noqa: E731
        rec: dict[str, Any] = {
            "t": round(time.time(), 3),
            "mode": u.mode,
            "stream_s": _stream(u.stream_s),
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
        if self.closed:
            self.stats.errors += 1
            raise OutputClosed(errno.EPIPE, "print output: the reader has closed the pipe")
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except BrokenPipeError:
            self._closed()
            raise OutputClosed(errno.EPIPE, "print output: the reader has closed the pipe") from None
        except (OSError, ValueError) as e:  # closed file, a full disk, ...
            self.stats.errors += 1
            log.warning("print output failed: %s", e)
            return 0
        self.stats.sent += 1
        return 0  # a printed line is no MIDI/OSC message: the daemon's `messages` counts the wire only

    def _closed(self) -> None:
        self.closed = True
        self.stats.errors += 1
        log.warning("print output: the reader has closed the pipe; stopping")
        try:  # later writes and the flush at exit go nowhere, quietly
            fd = self.stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
        except (OSError, ValueError, AttributeError):
            pass
        self.on_closed()

    def maintain(self) -> None:
        """Nothing to check: a closed pipe shows on the next write."""

    def close(self) -> None:
        pass


def _stream(s: float | None) -> float | None:
    """stream_s to the 16 kHz sample (1/16000 s = 62.5 us: 5 digits keep every sample distinct)."""
    return None if s is None else round(s, 5)
