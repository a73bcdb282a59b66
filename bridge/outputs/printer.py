"""Print output: one JSON line per update on a stream (stdout by default), for scripts and tests."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any, Sequence

from synthmatch.bridge.outputs.sinks import (
    SinkStats,
    Update,
    as_update,
    checked_values,
)

log = logging.getLogger("synthmatch.sinks")


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
