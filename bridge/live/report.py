"""The daemon's counters and what it reports: the counter set the worker increments, the flat dict logged
every log.interval_s and printed at exit, the /synthmatch/status answer, the terminal status line, the
exit status and an exception as one log line. Plain functions of the values they are given (no daemon,
no threads), so each is testable alone.

Threads: the worker alone writes `Counters`; the control server's thread and the main thread read them
(ints are read whole; the latency deques are copied before their percentiles are taken).
"""

from __future__ import annotations

import collections
import json
import sys
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Sequence

import numpy as np

LATENCY_KEEP = 20000  # timings kept per deque, the newest (at 4 updates/s: the last 80 minutes)


def _times() -> collections.deque:
    return collections.deque(maxlen=LATENCY_KEEP)


@dataclass
class Counters:
    inferences: int = 0
    updates: int = 0  # updates handed to the sinks
    messages: int = 0  # messages the sinks put on the wire
    onsets: int = 0
    captures_padded: int = 0  # trigger/manual windows cut short and zero-padded
    gated: int = 0  # continuous hops skipped by the silence gate
    held: int = 0  # continuous hops with nothing to send (deadband / rate limit / frozen)
    skipped_hops: int = 0  # continuous hops dropped because the worker was late
    bad_outputs: int = 0  # model outputs not finite or outside [0, 1] (never sent)
    send_failures: int = 0  # sends (or port checks) a sink raised on (an update no sink took is not an update)
    engine_errors: int = 0  # inferences that raised (the window dropped; inference.ENGINE_FAILURES_MAX in a row: act)
    engine_fallbacks: int = 0  # switches to the fallback backend after engine errors in a row
    silent_captures: int = 0  # manual "now" captures refused: the last 4 s were silent (or all NaN)
    control_commands: int = 0
    perf_inferences: int = 0  # the performance model's calls (continuous.model; follow = "held")
    refined: int = 0  # answers judged by synthesis (refine.budget_ms > 0; bridge/match/search.py)
    refine_errors: int = 0  # matcher calls that raised (the network's answer was sent)
    latency_ms: collections.deque = field(default_factory=_times)  # audio arrival -> handed to the sinks, ms
    infer_ms: collections.deque = field(default_factory=_times)  # engine call, ms
    perf_ms: collections.deque = field(default_factory=_times)  # the performance model's call, ms
    overhead_ms: collections.deque = field(default_factory=_times)  # latency minus its inference, ms
    refine_ms: collections.deque = field(default_factory=_times)  # the matcher's call, ms
    # the full multi-scale spectral distance to the window: the network's answer, the answer sent
    refine_before: collections.deque = field(default_factory=_times)
    refine_after: collections.deque = field(default_factory=_times)


# the plain counts of `Counters`, in the order counters() reports them
COUNTS = tuple(f.name for f in fields(Counters) if f.type == "int")


def percentile(xs: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) of xs, or None when empty."""
    xs = list(xs)  # a snapshot: the worker may append meanwhile
    if not xs:
        return None
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q))


def one_line(e: BaseException, limit: int = 300) -> str:
    """An exception as one short line for a log: its type and the first line of its message (ONNX Runtime's
    run over many), cut to `limit` characters."""
    lines = str(e).strip().splitlines()
    text = f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def rounded(x: float | None) -> float | None:
    """A millisecond figure for the report: 3 decimals (microseconds), None stays None."""
    return None if x is None else round(x, 3)


def counters(
    c: Counters,
    source: Any,
    converter: Any,
    note_fallbacks: int,
    samples_16k: int,
    control_stats: Sequence[Any] = (),
) -> dict[str, Any]:
    """The flat, JSON-able counter dict (the periodic log line, the exit line, status's "counters").

    source: the bridge.audio.input source (status flags, its ring's overflows, device losses);
    converter: its bridge.audio.input.Converter (samples sanitised); note_fallbacks: windows whose note
    fell back (silent or unpitched; bridge.audio.notes.NoteStage.fallbacks); samples_16k: samples heard at
    16 kHz; control_stats: bridge.live.control.ControlStats of the running control inputs.
    """
    d: dict[str, Any] = {k: getattr(c, k) for k in COUNTS}
    d["note_fallbacks"] = note_fallbacks
    counts = source.status_counts
    d.update(
        {
            "input_overflows": counts.get("input_overflow", 0),
            "input_status_other": counts.get("input_underflow", 0) + counts.get("other", 0),
            "ring_overflows": source.ring.overflows,
            "lost_frames": source.ring.lost_frames,
            "device_lost": source.device_lost,
            "reconnects": source.reconnects,
            "nonfinite_samples": converter.nonfinite,
            "clipped_samples": converter.clipped,
            "latency_ms_p50": rounded(percentile(c.latency_ms, 50)),
            "latency_ms_p99": rounded(percentile(c.latency_ms, 99)),
            "infer_ms_p50": rounded(percentile(c.infer_ms, 50)),
            "infer_ms_p99": rounded(percentile(c.infer_ms, 99)),
            "perf_ms_p50": rounded(percentile(c.perf_ms, 50)),
            "overhead_ms_p50": rounded(percentile(c.overhead_ms, 50)),
            "overhead_ms_p99": rounded(percentile(c.overhead_ms, 99)),
            "refine_ms_p50": rounded(percentile(c.refine_ms, 50)),
            "refine_ms_p99": rounded(percentile(c.refine_ms, 99)),
            "refine_distance_before_p50": rounded(percentile(c.refine_before, 50)),
            "refine_distance_after_p50": rounded(percentile(c.refine_after, 50)),
            "samples_16k": samples_16k,
        }
    )
    for k in ("received", "malformed", "dropped", "errors"):  # OSC / footswitch input (bridge.live.control)
        d[f"control_{k}"] = sum(getattr(st, k) for st in control_stats)
    return d


def status(
    *,
    mode: str,
    frozen: bool,
    armed: bool,
    level_db: float,
    names: Sequence[str],
    values: Iterable[float] | None,
    note_fields: dict[str, Any],
    counters: dict[str, Any],
) -> dict[str, Any]:
    """The /synthmatch/status answer. values: the newest update's 16 values (None before the first);
    note_fields: the newest update's note fields (bridge.outputs.base.Update's note, f0_hz, ...)."""
    return {
        "mode": mode,
        "frozen": frozen,
        "armed": armed,
        "level_db": round(level_db, 1),
        "values": None if values is None else dict(zip(names, map(float, values))),
        "note": note_fields.get("note"),
        "f0_hz": note_fields.get("f0_hz"),
        "counters": counters,
    }


def status_line(
    *,
    level_db: float,
    mode: str,
    frozen: bool,
    armed: bool,
    values: Iterable[float] | None,
    latency_ms: Sequence[float],
    updates: int,
) -> str:
    """One terminal line: input level (dBFS), mode and flag, the newest values, the newest latency (ms),
    updates sent."""
    lat = latency_ms[-1] if latency_ms else float("nan")
    vals = "" if values is None else " ".join(f"{v:.2f}" for v in values)
    flag = " FROZEN" if frozen else (" ARMED" if armed else "")
    return f"{level_db:6.1f} dBFS | {mode}{flag} | {vals or '-'} | {lat:5.1f} ms | n={updates}"


def exit_report(counters: dict[str, Any], c: Counters, error: BaseException | None, fatal: str | None = None) -> int:
    """Print the exit counters on stderr -> the exit status: 1 the worker stopped by an error (a bug),
    2 it ended for a reason the user must fix (`fatal`: the engine failed again and again) or it inferred
    but sent nothing because every output was rejected or every send failed, else 0."""
    print(f"synthmatch bridge: counters {json.dumps(counters)}", file=sys.stderr, flush=True)
    if error is not None:
        print(f"synthmatch bridge: error: worker stopped: {error!r}", file=sys.stderr)
        return 1
    if fatal is not None:
        print(f"synthmatch bridge: error: {fatal}", file=sys.stderr)
        return 2
    failed = c.bad_outputs + c.send_failures + c.engine_errors
    if (c.inferences or c.engine_errors) and not c.updates and failed:
        print(
            f"synthmatch bridge: error: no update was sent: {c.bad_outputs} of "
            f"{c.inferences} model outputs were rejected (not finite or outside [0, 1]), "
            f"{c.engine_errors} inferences failed and "
            f"{c.send_failures} sends failed (see the warnings above); check the model with "
            "`synthmatch bridge --check --model PATH` or re-export it",
            file=sys.stderr,
        )
        return 2
    return 0
