"""Trigger and manual capture: onset -> a 4 s window filling from the onset sample -> the snapshot's samples.

`TriggerCapture` holds which window is pending and whether a manual capture is armed, and decides when a
window is due; `cut_window` copies a (possibly cut short, zero-padded) window out of the 16 kHz ring;
`silent` is manual.start = "now"'s refusal of a silent last 4 s. The worker (bridge/live/daemon.py)
runs the inference and sends. Positions are absolute 16 kHz sample counts; times are time.monotonic() s.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np

from synthmatch.bridge.audio.ring import Ring

if TYPE_CHECKING:
    from synthmatch.bridge.live.config import ManualSettings, TriggerSettings

log = logging.getLogger("synthmatch.bridge")

SILENCE_DBFS = -70.0  # manual.start = "now": a last 4 s whose peak is below this is not analysed (as match)


class TriggerCapture:
    """Which trigger/manual window is pending. n: window length, samples (the contract's num_samples).

    Modes: trigger: every onset opens a window; manual: only the first onset after `arm` does (with
    manual.start = "onset"); continuous: none. A window is due once its n samples are in, or after
    trigger.max_wait_s of waiting (then cut at what arrived); with trigger.cut_at_next_onset the next
    onset ends it early. Used by the worker thread only; `armed` is read by the status thread."""

    def __init__(self, trigger: TriggerSettings, manual: ManualSettings, n: int):
        self.trigger, self.manual, self.n = trigger, manual, n
        self.pending: tuple[int, float] | None = None  # (onset position, monotonic time it was opened)
        self.armed_at: float | None = None  # manual: armed since (monotonic time); None: not armed

    @property
    def armed(self) -> bool:
        return self.armed_at is not None

    def arm(self, now: float) -> None:
        """manual.start = "onset": the next onset opens a window (until manual.timeout_s passes)."""
        self.armed_at = now

    def reset(self) -> None:
        """Mode change: nothing pending, nothing armed."""
        self.pending = None
        self.armed_at = None

    def onset_opens(self, mode: str) -> bool:
        """Whether an onset heard in `mode` opens a window; a manual arming is used up by it."""
        if mode == "manual":
            if self.armed_at is None or self.manual.start != "onset":
                return False
            self.armed_at = None
            return True
        return mode == "trigger"

    def cut(self) -> int | None:
        """A new onset opens a window: with trigger.cut_at_next_onset the pending one ends at it; returns its
        start (capture it now, cut at the onset) and drops it, or None."""
        if self.pending is not None and self.trigger.cut_at_next_onset:
            return self.take()
        return None

    def open(self, p: int, now: float) -> None:
        """A window starting at sample p begins to fill (replacing any pending one)."""
        self.pending = (p, now)

    def take(self) -> int:
        """The pending window's start; it is no longer pending."""
        assert self.pending is not None
        p = self.pending[0]
        self.pending = None
        return p

    def due(self, written: int, now: float) -> tuple[int, int | None] | None:
        """(start, end) of the pending window if it is to be captured now, else None; end None: complete
        (start + n). With `written` samples in the ring: complete once they reach start + n, else cut at
        `written` when it has waited more than trigger.max_wait_s."""
        if self.pending is None:
            return None
        p, t0 = self.pending
        if written >= p + self.n:
            return self.take(), None
        if now - t0 > self.trigger.max_wait_s:
            return self.take(), written
        return None

    def arm_expired(self, now: float) -> bool:
        """manual: an arming older than manual.timeout_s without an onset is dropped (True, logged)."""
        if self.armed_at is not None and now - self.armed_at > self.manual.timeout_s:
            log.info("manual capture disarmed: no onset within %.0f s", self.manual.timeout_s)
            self.armed_at = None
            return True
        return False


def cut_window(ring: Ring, p: int, end: int | None, n: int) -> tuple[np.ndarray, int] | None:
    """The n-sample window starting at p, from a mono ring -> (window (n,) float32, m samples of audio).

    end (None: p + n) cuts it short; so does the ring's newest sample. The m samples from p are copied,
    the rest stays zero (m < n: zero-padded). None (logged): p is no longer in the ring."""
    end = p + n if end is None else min(end, p + n)
    if ring.written - p > ring.capacity:
        log.warning("capture at %d too old for the ring; dropped", p)
        return None
    m = max(0, min(end, ring.written) - p)
    window = np.zeros(n, dtype=np.float32)
    if m:
        got = ring.window(p, m)
        assert got is not None  # [p, p + m) is written and within capacity (checked above)
        window[:m] = got[:, 0]
    return window, m


def silent(ring: Ring, p: int) -> bool:
    """manual.start = "now": whether the ring's samples from p to the newest peak below SILENCE_DBFS (as
    `match` refuses silence; NaN input reaches the ring as zeros, so it is silent too)."""
    m = ring.written - p
    recent = ring.window(p, m) if m else None
    peak = float(np.max(np.abs(recent))) if recent is not None and recent.size else 0.0
    return peak <= 0 or 20 * math.log10(peak) < SILENCE_DBFS
