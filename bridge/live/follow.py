"""Performance mode (continuous.follow = "held"): the held matcher's side of each continuous hop.

The daemon calls, every hop (window end `end`, a 16 kHz position):

    recent = f.listen(ring, end, track_s)   # the newest audio, or None: silent (the gate) -> the note ended
    est, held, changed = notes.track(recent)
    seeds = f.seeds(ring, end, changed, infer)   # the network's answer, on a new note and every
                                                 # network_every_s: the held matcher's seed
    seeds += f.perf_seeds(ring, end, base, note)  # the performance model's, every hop once the note
                                                 # fills its window (base: what it does not carry)
    values = f.answer(recent, heard, previous, seeds, budget_ms)   # the held matcher's answer

and shapes and sends the values itself (bridge/live/shaping.py), telling `sent_end` (the rate limit's
stream clock: `since_sent_s`). The held matcher (bridge/match/held.py) judges candidates by the steady
spectrum of the newest 0.2 s (`window_n` samples: continuous mode's first window end); it is made and
warmed on first use, its tables (and numpy's FFT plans) before the first note, not during it.

State: where the sounding note began (the network seed's start), the end of the newest window the network
answered (-1: none this note) and of the newest window sent. Worker thread only.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from synthmatch.bridge.audio.onset import rms_dbfs
from synthmatch.bridge.core.ratelimit import LimitedLog
from synthmatch.bridge.live.inference import EngineGaveUp
from synthmatch.bridge.live.report import Counters, one_line

PERF_HEAD_S = 0.05  # the performance window's head that must be above the gate (training's LEAD_S)


class HeldFollower:
    """cont: the daemon's ContinuousSettings (gate_s, gate_db, network_every_s, budget_ms, keep_margin);
    contract: the contract (sample rate, window length); counters: the daemon's Counters (refined,
    refine_ms, refine_errors); log: the rate-limited log of matching failures; synth: the matcher's
    bridge.match.synth.Synth to share (None: the held matcher makes its own); matcher: a HeldMatcher to
    use instead of making one (tests)."""

    def __init__(
        self,
        cont: Any,
        contract: Any,
        counters: Counters,
        log: LimitedLog,
        synth: Any = None,
        matcher: Any = None,
        perf: Any = None,
    ):
        self.cont, self.contract, self.c, self.log, self.synth = cont, contract, counters, log, synth
        # the performance model: an Inference (bridge/live/inference.py) on its engine; None: none loaded,
        # or given up after failures in a row
        self.perf = perf
        self.sr = contract.audio.sample_rate
        self.n = contract.audio.num_samples
        self._held = matcher  # the HeldMatcher (bridge/match/held.py), made once
        self.note_start = 0  # where the sounding note began (16 kHz sample), the network seed's start
        self.net_end = -1  # the end of the newest window the network answered (-1: none this note)
        self.sent_end = -1  # the end of the newest window sent (the rate limit's stream clock)

    @property
    def matcher(self) -> Any:
        if self._held is None:
            from synthmatch.bridge.match.held import HeldConfig, HeldMatcher

            config = HeldConfig(budget_ms=self.cont.budget_ms, keep_margin=self.cont.keep_margin)
            self._held = HeldMatcher(self.contract, config, synth=self.synth)
            self._held.warm()
        return self._held

    @property
    def perf_n(self) -> int:
        """Samples the performance model reads (its metadata's window); 0 without one."""
        return self.perf.engine.meta.num_samples if self.perf is not None else 0

    @property
    def window_n(self) -> int:
        """Samples the held matcher hears: continuous mode's first window end."""
        return self.matcher.window_n

    def listen(self, ring: Any, end: int, track_s: float) -> np.ndarray | None:
        """The newest audio before `end` the hop needs (held window, gate, note tracking; mono float32), or
        None when the ring does not hold it or its last gate_s are below gate_db: then a sounding note has
        ended and the next sound is a new note (the held matcher forgets its answer)."""
        span = max(self.window_n, int(self.cont.gate_s * self.sr), int(track_s * self.sr))
        recent = ring.window(max(0, end - span), min(span, end))
        gate_n = min(len(recent), int(self.cont.gate_s * self.sr)) if recent is not None else 0
        if recent is None or rms_dbfs(recent[len(recent) - gate_n :]) < self.cont.gate_db:
            if self.net_end >= 0:  # the note ended: the next sound is a new note
                self.matcher.reset()
                self.net_end = -1
            return None
        return recent[:, 0]

    def seeds(
        self,
        ring: Any,
        end: int,
        changed: bool,
        infer: Callable[[int, np.ndarray], np.ndarray | None],
    ) -> list[np.ndarray]:
        """The network's answers to seed this hop with: on a new note (the matcher restarts, the note's
        start is `end` less the held window) and every network_every_s, else none. infer(start, window):
        the network's 16 values for a 4 s window (None: lost)."""
        if self.net_end < 0 or changed:
            self.note_start = max(0, end - self.window_n)
            self.matcher.reset()
        # with a performance model seeding every hop, the 4 s network seeds new notes only: its periodic
        # seeds changed no answer on the benchmark (13 switches, counting clock) and cost 8-12 % of a core
        every = int(self.cont.network_every_s * self.sr) if self.perf is None else 0
        if not (self.net_end < 0 or changed or (every > 0 and end - self.net_end >= every)):
            return []
        values = self._seed(ring, end, infer)
        self.net_end = end
        return [] if values is None else [values]

    def _seed(self, ring: Any, end: int, infer: Callable[[int, np.ndarray], np.ndarray | None]) -> np.ndarray | None:
        """The network's answer as a seed: the 4 s from the note's start (a one-shot, as it was trained on),
        or the newest 4 s once the note is longer; zero-padded after the end."""
        start = max(self.note_start, end - self.n)
        got = ring.window(start, end - start)
        if got is None:
            return None
        window = np.zeros(self.n, np.float32)
        window[: end - start] = got[:, 0]
        return infer(start, window)

    def perf_seeds(self, ring: Any, end: int, base: np.ndarray | None, note: int | None) -> list[np.ndarray]:
        """The performance model's answer for the newest perf_n samples at `note`, once the sounding note
        fills them: the outputs it carries, the rest from `base` (the answer playing, else the network's
        seed) -> [values], or [] (no model, no note heard, no base, or lost; or the window is not all
        note: younger than the window, or its first PERF_HEAD_S below the gate, i.e. before the onset:
        the model was trained on windows that start inside the note)."""
        if self.perf is None or base is None or note is None or end - self.note_start < self.perf_n:
            return []
        got = ring.window(end - self.perf_n, self.perf_n)
        if got is None or rms_dbfs(got[: int(PERF_HEAD_S * self.sr), 0]) < self.cont.gate_db:
            return []
        try:
            values = self.perf.run(end - self.perf_n, np.ascontiguousarray(got[:, 0]), note)
        except EngineGaveUp as e:  # a broken performance model costs its seeds, not the show
            self.log.warning("performance model off for this run: %s", one_line(e))
            self.perf = None
            return []
        if values is None:
            return []
        return [np.where(self.perf.engine.meta.carried_mask, values, base).astype(np.float32)]

    def answer(
        self, recent: np.ndarray, heard: float, previous: np.ndarray, seeds: list[np.ndarray], budget_ms: float
    ) -> np.ndarray | None:
        """The held matcher's answer for the newest audio at MIDI note `heard`, among the previous answer and
        the seeds -> its values; the first seed when the matcher raised (counted, logged rate-limited), or
        None when there is none."""
        try:
            r = self.matcher.match(recent, heard, previous, seeds=seeds, budget_ms=budget_ms)
        except Exception as e:  # a matcher bug must not cost the show: the network's answer, if any
            self.c.refine_errors += 1
            self.log.warning("held matching failed (%d so far): %s", self.c.refine_errors, one_line(e))
            return seeds[0] if seeds else None
        self.c.refined += 1
        self.c.refine_ms.append(r.seconds * 1000.0)
        return r.values

    def since_sent_s(self, end: int) -> float:
        """Stream seconds from the newest window sent to `end` (inf before the first): the rate limit's clock."""
        return math.inf if self.sent_end < 0 else (end - self.sent_end) / self.sr
