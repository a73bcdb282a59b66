"""The network's answer judged by synthesis (refine.budget_ms > 0): the matcher's answer for a window.

`Judge.refine` hands the window, the note played and the network's 16 values to the matcher
(bridge/match/search.py's Matcher, torch-free, in the worker thread) with the pitch head's runner-up
classes as extra starts (bridge/match/candidates.py) and, in continuous mode, the previous answer (kept
unless another is clearly closer). It counts what the matcher did (refined, refine_ms, the distances before
and after). A matcher that raises never costs the show its answer: the error is counted (refine_errors) and
logged rate-limited, and the network's values stand. Without a matcher or a budget it is the identity.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synthmatch.bridge.core.ratelimit import LimitedLog
from synthmatch.bridge.live.report import Counters, one_line
from synthmatch.bridge.match.candidates import pitch_candidates


class Judge:
    """matcher: a bridge.match.search.Matcher (or None: the network's answer alone); counters: the
    daemon's Counters; reference_note: the MIDI note assumed when none was heard (the contract's);
    log: the rate-limited log of matching failures (shared with the held matcher's)."""

    def __init__(self, matcher: Any, counters: Counters, reference_note: int, log: LimitedLog):
        self.matcher, self.c, self.reference_note, self.log = matcher, counters, reference_note, log

    def refine(
        self,
        window: np.ndarray,
        note: int | None,
        values: np.ndarray,
        budget_ms: float,
        extras: dict[str, np.ndarray],
        engine: Any,
        previous: np.ndarray | None = None,
    ) -> np.ndarray:
        """The matcher's answer for this window -> values itself when there is no matcher, no budget left
        or the matcher failed. extras: the inference's extra outputs; engine: the engine that answered
        (its meta names them)."""
        if self.matcher is None or budget_ms <= 0:
            return values
        played = float(self.reference_note if note is None else note)
        try:
            starts = pitch_candidates(values, extras, engine.meta)  # the pitch head's runner-ups
            r = self.matcher.match(window, played, values, previous=previous, extra=starts, budget_ms=budget_ms)
        except Exception as e:  # a matcher bug must not cost the show its answer
            self.c.refine_errors += 1
            self.log.warning(
                "matching failed (%d so far): %s; the network's answer is sent", self.c.refine_errors, one_line(e)
            )
            return values
        self.c.refined += 1
        self.c.refine_ms.append(r.seconds * 1000.0)
        self.c.refine_before.append(r.network_distance)
        self.c.refine_after.append(r.distance)
        return r.values
