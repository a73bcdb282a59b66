"""The engine's call on one window, and what the daemon does when the engine fails.

`Inference.run(start, window, note)` runs the current engine on a window (the model's length: 4 s, or
the performance model's 0.4 s) at the note played
(bridge/audio/notes.py's NoteStage.infer_full: a model told the note hears it; its extra outputs, the pitch
head's top classes, are kept in `extras` for the matcher), times and counts the call, shows the window to
the optional tap and checks the output (bridge.engines.output_problem) -> the 16 values clipped to [0, 1],
or None when the window is lost.

Nothing an engine raises ends the show: the window is dropped, the error counted (engine_errors) and
logged rate-limited, and the next window is tried. Only ENGINE_FAILURES_MAX errors in a row are acted on:
the `fallback` engine is opened and used from then on (serve: onnxruntime, when backend = "auto" chose
another), else EngineGaveUp ends the worker (exit 2, one line naming the backend and the last error).

Worker thread only; `engine` (the current one) is read by tests and the matcher's candidate starts.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np

from synthmatch.bridge.core.ratelimit import LimitedLog
from synthmatch.bridge.engines import output_problem
from synthmatch.bridge.live.report import Counters, one_line

log = logging.getLogger("synthmatch.bridge")

# engine errors in a row before the backend falls back or the daemon exits 2: in continuous mode 5 hops
# are 1.25 s, in trigger mode 5 notes. A glitch of one window (a GPU hiccup) passes unnoticed; an engine
# that is broken for good is acted on while the audience has lost only a moment, not the show
ENGINE_FAILURES_MAX = 5


class EngineGaveUp(Exception):
    """ENGINE_FAILURES_MAX engine errors in a row and nothing to fall back to: the worker ends (exit 2)."""


class Inference:
    """engine: an opened bridge.engines Engine; notes: the NoteStage (`infer_full(engine, window, note)`);
    counters: the daemon's Counters (inferences, infer_ms, bad_outputs, engine_errors, engine_fallbacks).

    window_tap(start, window, values): optional observer of every window the engine answered (start =
    absolute 16 kHz sample position, window = (num_samples,) float32, values = the raw model output).
    fallback: () -> an opened engine to switch to after ENGINE_FAILURES_MAX errors in a row (called at most
    once), or None: then EngineGaveUp is raised. counted: the Counters fields its calls are counted and
    timed in (the performance model's: perf_inferences, perf_ms); label: what its log lines call it.
    """

    def __init__(
        self,
        engine: Any,
        notes: Any,
        counters: Counters,
        window_tap: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
        fallback: Callable[[], Any] | None = None,
        counted: tuple[str, str] = ("inferences", "infer_ms"),
        label: str = "inference",
    ):
        self.engine, self.notes, self.c = engine, notes, counters
        self.counted = counted  # the Counters fields this engine's calls go to (count, times)
        self.label = label  # what the log lines call these calls
        self.window_tap = window_tap
        self.fallback = fallback
        self.failures_in_row = 0  # engine errors since the last inference that returned
        self.extras: dict[str, np.ndarray] = {}  # the newest inference's extra outputs (pitch head's top classes)
        # 5 lines, then one every 30 s carrying the count suppressed (the counters logged every
        # log.interval_s have the totals): a fault that lasts all night adds 120 lines an hour
        self._log = LimitedLog(log, burst=5, per_s=1 / 30)

    def run(self, start: int, window: np.ndarray, note: int | None = None) -> np.ndarray | None:
        """The model's 16 values for `window` (starting at 16 kHz position `start`) at `note`, clipped to
        [0, 1] -> None when the engine raised or its output was rejected (both counted)."""
        t0 = time.monotonic()
        try:
            out, self.extras = self.notes.infer_full(self.engine, window, note)  # at this note (cfg.notes.normalise)
        except Exception as e:  # ONNX Runtime, a GPU fault, anything: this window is lost, not the show
            self.failed(e)
            return None
        self.failures_in_row = 0
        count, times = self.counted
        getattr(self.c, times).append((time.monotonic() - t0) * 1000.0)
        setattr(self.c, count, getattr(self.c, count) + 1)
        if self.window_tap is not None:
            self.window_tap(start, window, out)
        why = output_problem(out)
        if why is not None:
            self.c.bad_outputs += 1
            if self.c.bad_outputs <= 10 or self.c.bad_outputs % 100 == 0:  # a broken model: do not flood
                log.warning("%s: output rejected (%d so far): %s; not used", self.label, self.c.bad_outputs, why)
            return None
        return np.clip(out, 0.0, 1.0).astype(np.float32)  # within OUTPUT_TOLERANCE of [0, 1]

    def failed(self, e: Exception) -> None:
        """Count and log (rate-limited) an engine error; the ENGINE_FAILURES_MAX-th in a row switches to
        the fallback engine, or raises EngineGaveUp when there is none (or it does not open)."""
        self.c.engine_errors += 1
        self.failures_in_row += 1
        why = one_line(e)
        name = _name(self.engine)
        self._log.warning(
            "%s failed on %s (%d so far, %d in a row): %s; window dropped",
            self.label,
            name,
            self.c.engine_errors,
            self.failures_in_row,
            why,
        )
        if self.failures_in_row < ENGINE_FAILURES_MAX:
            return
        opener, self.fallback = self.fallback, None
        if opener is not None:
            try:
                engine = opener()
            except Exception as e2:  # the fallback cannot open either: say both
                why = f"{why}; the fallback did not open: {one_line(e2)}"
            else:
                log.warning(
                    "inference backend %s failed %d times in a row (%s); falling back to %s",
                    name,
                    self.failures_in_row,
                    why,
                    _name(engine),
                )
                self.engine, self.failures_in_row = engine, 0
                self.c.engine_fallbacks += 1
                return
        raise EngineGaveUp(
            f"inference failed {self.failures_in_row} times in a row on the {name} backend (last: {why}); "
            "check the model with `synthmatch bridge --check --model PATH` on loud input, re-export it, or "
            "choose another --backend"
        )


def _name(engine: Any) -> str:
    return getattr(engine, "name", type(engine).__name__)
