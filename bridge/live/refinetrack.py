"""Which refined answer is still current (refine.passes > 0; the search itself: bridge/live/refiner.py).

Every update the daemon sends gets the next id; a trigger/manual snapshot is submitted to the refiner
under its id. An answer comes back seconds later and is sent only if its id is still the newest (no
update went out meanwhile) and nothing blocks it (frozen, continuous mode); otherwise it is dropped.
Used by the worker thread only.
"""

from __future__ import annotations

from synthmatch.bridge.live.report import Counters


class RefineTracker:
    """Update ids and the refiner's answers to them; counts refined / refines_dropped / refine_ms in c."""

    def __init__(self, c: Counters):
        self.c = c
        self.update_id = 0  # counts updates sent: a refined answer is for the newest only
        self.t_audio = 0.0  # t_audio of the newest update (monotonic s): its refined follow-up's latency
        self.answered: int | None = None  # the newest update id the refiner answered

    def sent(self, t_audio: float) -> int:
        """An update went out (any mode; not a refined follow-up) -> its id; older answers are stale now."""
        self.update_id += 1
        self.t_audio = t_audio
        return self.update_id

    def current(self, ident: int, blocked: bool, seconds: float) -> bool:
        """The answer for update `ident` came back after `seconds` of search: True if it is to be sent (for
        the newest update, and not `blocked`: frozen or continuous mode), counted as refined; else dropped."""
        self.answered = ident
        if ident != self.update_id or blocked:
            self.c.refines_dropped += 1
            return False
        self.c.refined += 1
        self.c.refine_ms.append(seconds * 1000.0)
        return True

    def owed(self, last_submitted: int | None) -> bool:
        """Whether the answer to the newest submission (the refiner's last_submitted id) is still to come."""
        return last_submitted is not None and self.answered != last_submitted
