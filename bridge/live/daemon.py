"""`synthmatch bridge`: listen to an input, infer the 16 parameters, push them to the synth.

One worker thread runs the loop; the audio callback only fills a ring (bridge/audio/input.py):

    raw ring -> Converter (mono, sanitise, resample to 16 kHz) -> 16 kHz ring + onset detector
             -> mode logic -> engine.infer (1, 64000) -> smoothing / deadband / rate limit -> sinks

Modes:
  trigger     every onset opens a 4 s window starting exactly at the onset sample; once those 4 s are
              in (or the next onset / trigger.max_wait_s / end of input cuts it short: zero-padded),
              one inference, one snapshot of all 16 values.
  continuous  a sliding 4 s window every continuous.hop_s; per-parameter one-pole smoothing, deadband,
              rate limit; the silence gate stops updates while nobody plays.
  manual      like trigger, but only after a control message arms it (OSC /synthmatch/trigger or the
              MIDI footswitch); manual.start = "now" analyses the last 4 s at once instead.
With refine.passes > 0, each trigger/manual snapshot is followed by a refined one a few seconds later
(bridge/live/refiner.py: a second process searches by re-rendering), unless a newer update came first.
Freeze/unfreeze and mode changes arrive over the control server. Counters are logged every
log.interval_s and printed as one JSON line on stderr at exit ("synthmatch bridge: counters {...}").
"""

from __future__ import annotations

import collections
import contextlib
import faulthandler
import json
import logging
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from synthmatch.bridge.audio.input import Converter, open_source
from synthmatch.bridge.audio.notes import NoteStage
from synthmatch.bridge.audio.onset import OnsetDetector, rms_dbfs
from synthmatch.bridge.audio.ring import Ring
from synthmatch.bridge.engines import output_problem

log = logging.getLogger("synthmatch.bridge")

RING16_SECONDS = 12.0  # 16 kHz history: a 4 s window plus slack for a late trigger
IDLE_SLEEP_S = 0.001  # worker poll interval when no analysis is due soon (or input runs --fast)
NEAR_SLEEP_S = 0.0002  # ... when the block completing the next window may arrive any moment
FAR_SLEEP_S = 0.005  # longest sleep while a window is far off (commands wait at most this)
WAKE_EARLY_S = 0.002  # start polling this long before the earliest possible arrival, plus one block
STATUS_EVERY_S = 0.2
SILENCE_DBFS = -70.0  # manual.start = "now": a last 4 s whose peak is below this is not analysed (as match)
REFINE_DRAIN_S = 120.0  # end of file input: wait this long at most for the last refined snapshot
PITCH_STEP = 0.02  # semitones: continuous, a pitch moved this much is sent (pitch bend) even when the
#                         values are held by deadband or rate limit (about 80 steps of a +-2 semitone bend)


def percentile(xs, q: float) -> float | None:
    xs = list(xs)  # a snapshot: the worker may append meanwhile
    if not xs:
        return None
    return float(np.percentile(np.asarray(xs, dtype=np.float64), q))


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
    send_failures: int = 0  # updates a sink raised on (an update no sink took is not counted in updates)
    silent_captures: int = 0  # manual "now" captures refused: the last 4 s were silent (or all NaN)
    control_commands: int = 0
    refined: int = 0  # refined snapshots sent (refine.passes > 0)
    refines_dropped: int = 0  # refined answers not sent: a newer update, freeze or a mode change came first
    latency_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20000))
    infer_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20000))
    overhead_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20000))
    refine_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20000))


class Daemon:
    """The worker loop. Construct with opened parts; `start()`, then `stop()` or wait for `done`.

    window_tap(start, window, values): optional observer called with every analysed window
    (start = absolute 16 kHz sample position, window = (num_samples,) float32, values = raw model output).
    refiner: an opened bridge.refiner.Refiner, or None (no refined follow-ups).
    """

    def __init__(
        self,
        cfg,
        contract,
        engine,
        sinks: list,
        source,
        commands=None,
        window_tap: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
        refiner=None,
    ):
        self.cfg, self.contract, self.engine, self.sinks, self.source = cfg, contract, engine, sinks, source
        self.sr = contract.audio.sample_rate
        self.n = contract.audio.num_samples
        if commands is None:
            from synthmatch.bridge.live.control import CommandQueue

            commands = CommandQueue()
        self.commands = commands  # bridge.control.CommandQueue: get() -> ControlCommand | None
        self.window_tap = window_tap
        self.refiner = refiner
        self._update_id = 0  # counts updates sent: a refined answer is for the newest only
        self._snapshot_t_audio = 0.0  # t_audio of the newest snapshot (latency of its refined follow-up)
        self._answered: int | None = None  # the newest update id the refiner answered
        self.mode = cfg.mode
        self.frozen = False
        self.c = Counters()
        self.ring16 = Ring(int(RING16_SECONDS * self.sr), 1)
        self.converter = Converter(source.sample_rate, self.sr, source.channels, cfg.input.channel)
        self.onset = OnsetDetector(cfg.onset, self.sr)
        self.notes = NoteStage(cfg.notes, contract)  # note per window, model at that note (bridge/audio/notes.py)
        self._note_fields: dict[str, Any] = {}  # the newest update's note, for its refined follow-up
        self.done = threading.Event()  # the loop ended (stop() or end of file input)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run_guarded, name="synthmatch-worker", daemon=True)
        self._raw_pos = 0
        self._block_s = 0.0  # longest input block seen, s: how far a sample's arrival lags its capture
        self._gen = source.generation
        self._arrivals: collections.deque = collections.deque(maxlen=4096)  # (end16, monotonic time)
        self._pending: tuple[int, float] | None = None  # trigger/manual: (onset position, wall time)
        self._armed_at: float | None = None  # manual: armed since (wall time)
        cont = cfg.continuous
        self._hop = max(1, int(round(cont.hop_s * self.sr)))
        self._next_end = self.n  # continuous: end of the next window
        self._catch_up = cont.catch_up or cfg.input.fast
        self._smooth: np.ndarray | None = None
        self._last_sent: np.ndarray | None = None
        self._last_send_t = -math.inf
        self.last_values: np.ndarray | None = None
        self.status_reply: Callable[[tuple[str, int], dict], None] | None = None
        self.control_stats: list = []  # bridge.control.ControlStats of the running control inputs
        self.error: BaseException | None = None

    # ---- lifecycle ----
    def start(self) -> None:
        self.source.start()
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run_guarded(self) -> None:
        try:
            self._run()
        except BaseException as e:  # the worker must report, not vanish: main prints it and exits 1
            self.error = e
            log.exception("worker stopped by an error")
        finally:
            self.done.set()

    # ---- the loop ----
    def _run(self) -> None:
        while not self._stop.is_set():
            self.source.poll()
            self._commands()
            self._refined()
            raw, start = self.source.ring.read_since(self._raw_pos)
            if raw.shape[0]:
                self._block_s = max(self._block_s, raw.shape[0] / self.source.sample_rate)
                self._raw_pos = start + raw.shape[0]
                # arrival of the block holding the newest frame read (stamped by the producer)
                self._ingest(raw, self.source.ring.arrival_time(self._raw_pos))
                self._modes(time.monotonic())
            else:
                if self.source.eof and self.source.ring.written == self._raw_pos:
                    self._finish()
                    return
                self._modes(time.monotonic())
                self._maintain()
                time.sleep(self._idle_sleep())

    def _idle_sleep(self) -> float:
        """How long the idle worker may sleep, s. The block that completes the next window (continuous
        hop, or a trigger's 4 s) cannot arrive before its last sample is captured, which is at least
        `missing / sr` away, minus what was captured but not delivered yet (at most a block): sleep
        until shortly before that, then poll finely, so the wake-up adds at most NEAR_SLEEP_S."""
        if self.cfg.input.fast:
            return IDLE_SLEEP_S  # file input as fast as possible: no capture clock to plan by
        if self.mode == "continuous" and not self.frozen:
            missing = self._next_end - self.ring16.written
        elif self._pending is not None:
            missing = self._pending[0] + self.n - self.ring16.written
        else:
            return IDLE_SLEEP_S
        t = missing / self.sr - self._block_s - WAKE_EARLY_S
        return min(FAR_SLEEP_S, t) if t > NEAR_SLEEP_S else NEAR_SLEEP_S

    def _ingest(self, raw: np.ndarray, t_arrival: float) -> None:
        if self.source.generation != self._gen:  # the device was reopened: new resampler state
            self._gen = self.source.generation
            self.converter.reset()
        x = self.converter(raw)
        if x.size == 0:
            return
        pos = self.ring16.written
        self.ring16.write(x)
        self.ring16.read_pos = self.ring16.written  # nobody consumes ring16 sequentially
        self._arrivals.append((self.ring16.written, t_arrival))
        for p in self.onset.process(x, pos):
            self._on_onset(p)

    def _arrival_of(self, end: int) -> float:
        """Arrival time of the block holding sample end - 1 (the newest sample of a window)."""
        for e, t in self._arrivals:
            if e >= end:
                return t
        return time.monotonic()

    # ---- modes ----
    def _on_onset(self, p: int) -> None:
        self.c.onsets += 1
        if self.frozen:
            return
        if self.mode == "manual":
            if self._armed_at is None or self.cfg.manual.start != "onset":
                return
            self._armed_at = None
        elif self.mode != "trigger":
            return
        if self._pending is not None and self.cfg.trigger.cut_at_next_onset:
            self._capture(self._pending[0], end=p)
        self._pending = (p, time.monotonic())

    def _modes(self, now: float) -> None:
        if self.mode == "continuous":
            self._continuous()
            return
        if self._pending is not None:
            p, t0 = self._pending
            if self.ring16.written >= p + self.n:
                self._capture(p)
            elif now - t0 > self.cfg.trigger.max_wait_s:
                self._capture(p, end=self.ring16.written)
        if self.mode == "manual" and self._armed_at is not None and now - self._armed_at > self.cfg.manual.timeout_s:
            log.info("manual capture disarmed: no onset within %.0f s", self.cfg.manual.timeout_s)
            self._armed_at = None

    def _capture(self, p: int, end: int | None = None) -> None:
        """One snapshot of the window starting at p; `end` < p + n cuts it there (zero-padded)."""
        self._pending = None
        end = p + self.n if end is None else min(end, p + self.n)
        avail = self.ring16.written - p
        if avail > self.ring16.capacity:
            log.warning("capture at %d too old for the ring; dropped", p)
            return
        m = max(0, min(end, self.ring16.written) - p)
        window = np.zeros(self.n, dtype=np.float32)
        if m:
            window[:m] = self.ring16.window(p, m)[:, 0]
        if m < self.n:
            self.c.captures_padded += 1
        est = self.notes.snapshot(window, m)
        values = self._infer(p, window, est.note)
        if values is not None:
            self._send(values, self._arrival_of(p + max(m, 1)), _note_fields(est, est.note, True))
            if self.refiner is not None:
                self.refiner.submit(self._update_id, window, values)

    def _capture_now(self) -> None:
        """manual.start = "now": the last 4 s, unless they are silent (as `match` refuses silence; NaN
        input reaches the ring as zeros, so it is refused too)."""
        p = max(0, self.ring16.written - self.n)
        m = self.ring16.written - p
        recent = self.ring16.window(p, m) if m else None
        peak = float(np.max(np.abs(recent))) if recent is not None and recent.size else 0.0
        if peak <= 0 or 20 * math.log10(peak) < SILENCE_DBFS:
            self.c.silent_captures += 1
            log.warning(
                "manual capture refused: the last %.1f s are silent (peak below %.0f dBFS); play, then trigger",
                m / self.sr,
                SILENCE_DBFS,
            )
            return
        self._capture(p)

    def _continuous(self) -> None:
        while self.ring16.written >= self._next_end and not self._stop.is_set():
            self._hop_once()

    def _hop_once(self) -> None:
        w = self.ring16.written
        if not self._catch_up and w - self._next_end >= self._hop:  # late: jump to the newest hop
            k = (w - self._next_end) // self._hop
            self.c.skipped_hops += k
            self._next_end += k * self._hop
        end = self._next_end
        self._next_end += self._hop
        if self.frozen:
            self.c.held += 1
            return
        gate_n = min(self.n, int(self.cfg.continuous.gate_s * self.sr))
        recent = self.ring16.window(end - gate_n, gate_n)
        if recent is None or rms_dbfs(recent) < self.cfg.continuous.gate_db:
            self.c.gated += 1
            self._end_note()
            return
        window = self.ring16.window(end - self.n, self.n)
        if window is None:
            return
        est, held, changed = self.notes.track(window[:, 0])
        values = self._infer(end - self.n, window[:, 0], held)
        if values is None:
            return
        out = self._shape(values)
        sent_midi = self._note_fields.get("midi")
        moved = est.voiced and (sent_midi is None or abs(est.midi - sent_midi) > PITCH_STEP)
        if out is None and (changed or (moved and held is not None)) and self._last_sent is not None:
            out = self._last_sent  # a new note or a pitch glide goes out even when the values are held
        if out is None:
            self.c.held += 1
            return
        self._send(out, self._arrival_of(end), _note_fields(est, held, changed))

    def _shape(self, values: np.ndarray) -> np.ndarray | None:
        """Continuous post-processing: one-pole smoothing, deadband, rate limit. None = send nothing."""
        c = self.cfg.continuous
        if self._smooth is None or c.smoothing_s <= 0:
            self._smooth = values.copy()
        else:
            a = 1.0 - math.exp(-(self._hop / self.sr) / c.smoothing_s)
            self._smooth += a * (values - self._smooth)
        y = self._smooth
        if self._last_sent is not None:
            moved = np.abs(y - self._last_sent) > c.deadband
            if not moved.any():
                return None
            y = np.where(moved, y, self._last_sent)
        if c.max_rate_hz > 0 and time.monotonic() - self._last_send_t < 1.0 / c.max_rate_hz:
            return None
        return y.astype(np.float32)

    def _infer(self, start: int, window: np.ndarray, note: int | None = None) -> np.ndarray | None:
        t0 = time.monotonic()
        out = self.notes.infer(self.engine, window, note)  # the C4 model at this note (cfg.notes.normalise)
        self.c.infer_ms.append((time.monotonic() - t0) * 1000.0)
        self.c.inferences += 1
        if self.window_tap is not None:
            self.window_tap(start, window, out)
        why = output_problem(out)
        if why is not None:
            self.c.bad_outputs += 1
            if self.c.bad_outputs <= 10 or self.c.bad_outputs % 100 == 0:  # a broken model: do not flood
                log.warning("model output rejected (%d so far): %s; nothing sent", self.c.bad_outputs, why)
            return None
        return np.clip(out, 0.0, 1.0).astype(np.float32)  # within OUTPUT_TOLERANCE of [0, 1]

    def _emit(self, values: np.ndarray, t_audio: float, mode: str, notes: dict[str, Any] | None = None) -> float:
        """Hand one update to every sink -> the time it was handed over. notes: Update's note fields."""
        from synthmatch.bridge.outputs.sinks import Update

        u = Update(
            values=[float(v) for v in values],
            t_audio=t_audio,
            t_infer_done=time.monotonic(),
            mode=mode,
            **(notes or {}),
        )
        taken = 0
        for s in self.sinks:
            try:
                self.c.messages += s.send(u)
                taken += 1
            except (OSError, ValueError) as e:  # sinks count transport trouble; this is a last guard
                self.c.send_failures += 1
                log.warning("%s failed: %s", type(s).__name__, e)
        now = time.monotonic()
        if taken or not self.sinks:
            self.c.updates += 1
        self._last_sent = values.copy()
        self._last_send_t = now
        self.last_values = values
        return now

    def _end_note(self) -> None:
        """Continuous mode: the held note ends (silence, mode change, end of input): a note-off update."""
        held = self.notes.tracker.held
        if not self.notes.tracker.end():
            return
        from synthmatch.bridge.outputs.sinks import Update

        for s in self.sinks:
            try:
                self.c.messages += s.send(Update(values=(), mode=self.mode, note=held, note_off=True))
            except (OSError, ValueError) as e:
                self.c.send_failures += 1
                log.warning("%s failed: %s", type(s).__name__, e)

    def _send(self, values: np.ndarray, t_audio: float, notes: dict[str, Any] | None = None) -> None:
        self._note_fields = {**(notes or {}), "new_note": False}
        now = self._emit(values, t_audio, self.mode, notes)
        self._update_id += 1
        self._snapshot_t_audio = t_audio
        lat = (now - t_audio) * 1000.0
        self.c.latency_ms.append(lat)
        if self.c.infer_ms:  # everything but the model: waiting, conversion, windowing, sending
            self.c.overhead_ms.append(lat - self.c.infer_ms[-1])

    def _refined(self) -> None:
        """Send a refined snapshot that came back, if it is still for the newest update."""
        if self.refiner is None:
            return
        for ident, values, before, after, seconds in self.refiner.poll():
            self._answered = ident
            if ident != self._update_id or self.frozen or self.mode == "continuous":
                self.c.refines_dropped += 1
                continue
            self.c.refined += 1
            self.c.refine_ms.append(seconds * 1000.0)
            log.debug("refined snapshot: spectral distance %.3f -> %.3f in %.1f s", before, after, seconds)
            self._emit(
                values,
                self._snapshot_t_audio,
                f"{self.mode}+refined",  # refine() keeps [0, 1]
                self._note_fields,
            )

    def _finish(self) -> None:
        """End of file input: a capture still waiting is analysed zero-padded; the refined follow-up of
        the last snapshot is waited for (at most REFINE_DRAIN_S)."""
        if self._pending is not None and self.mode in ("trigger", "manual"):
            self._capture(self._pending[0], end=self.ring16.written)
        self._end_note()
        r = self.refiner
        deadline = time.monotonic() + REFINE_DRAIN_S
        while (
            r is not None
            and r.last_submitted is not None
            and self._answered != r.last_submitted
            and r.alive()
            and not self._stop.is_set()
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
            self._refined()

    def _maintain(self) -> None:
        for s in self.sinks:
            m = getattr(s, "maintain", None)
            if m is not None:
                m()

    # ---- control ----
    def _commands(self) -> None:
        while (cmd := self.commands.get()) is not None:
            self.c.control_commands += 1
            self.apply(cmd)

    def apply(self, cmd: Any) -> None:
        """A bridge.control.ControlCommand: kind trigger | freeze (value bool) | mode (value name) | status."""
        kind, arg = cmd.kind, cmd.value
        if kind == "trigger":
            if self.mode != "manual":
                log.info("trigger ignored: mode is %s (switch to manual)", self.mode)
            elif self.cfg.manual.start == "now":
                self._capture_now()
            else:
                self._armed_at = time.monotonic()
                log.info("manual capture armed: play a note")
        elif kind == "freeze":
            self.frozen = True if arg is None else bool(arg)
            log.info("values %s", "frozen" if self.frozen else "released")
        elif kind == "status":
            if cmd.reply_to is not None and self.status_reply is not None:
                self.status_reply(cmd.reply_to, self.status())
        elif kind == "mode":
            if arg in ("trigger", "continuous", "manual") and arg != self.mode:
                log.info("mode %s -> %s", self.mode, arg)
                self._end_note()
                self.mode = arg
                self._pending = None
                self._armed_at = None
                self._next_end = max(self.n, self.ring16.written)
        else:
            log.warning("unknown control command %r", kind)

    # ---- reporting ----
    def counters(self) -> dict[str, Any]:
        c = self.c
        src = self.source
        d = {
            k: getattr(c, k)
            for k in (
                "inferences",
                "updates",
                "messages",
                "onsets",
                "captures_padded",
                "gated",
                "held",
                "skipped_hops",
                "bad_outputs",
                "send_failures",
                "silent_captures",
                "control_commands",
                "refined",
                "refines_dropped",
            )
        }
        d["note_fallbacks"] = self.notes.fallbacks  # windows whose note fell back (silent or unpitched)
        d.update(
            {
                "input_overflows": src.status_counts.get("input_overflow", 0),
                "input_status_other": src.status_counts.get("input_underflow", 0) + src.status_counts.get("other", 0),
                "ring_overflows": src.ring.overflows,
                "lost_frames": src.ring.lost_frames,
                "device_lost": src.device_lost,
                "reconnects": src.reconnects,
                "nonfinite_samples": self.converter.nonfinite,
                "clipped_samples": self.converter.clipped,
                "latency_ms_p50": _r(percentile(c.latency_ms, 50)),
                "latency_ms_p99": _r(percentile(c.latency_ms, 99)),
                "infer_ms_p50": _r(percentile(c.infer_ms, 50)),
                "infer_ms_p99": _r(percentile(c.infer_ms, 99)),
                "overhead_ms_p50": _r(percentile(c.overhead_ms, 50)),
                "overhead_ms_p99": _r(percentile(c.overhead_ms, 99)),
                "refine_ms_p50": _r(percentile(c.refine_ms, 50)),
                "samples_16k": self.ring16.written,
            }
        )
        for k in ("received", "malformed", "dropped", "errors"):  # OSC / footswitch input (bridge.control)
            d[f"control_{k}"] = sum(getattr(st, k) for st in self.control_stats)
        return d

    def status(self) -> dict[str, Any]:
        """Read-only snapshot for /synthmatch/status (called from the control server's thread)."""
        vals = self.last_values
        return {
            "mode": self.mode,
            "frozen": self.frozen,
            "armed": self._armed_at is not None,
            "level_db": round(self.onset.level_db, 1),
            "values": None if vals is None else dict(zip(self.contract.names, map(float, vals))),
            "note": self._note_fields.get("note"),
            "f0_hz": self._note_fields.get("f0_hz"),
            "counters": self.counters(),
        }

    def status_line(self) -> str:
        level = self.onset.level_db
        lat = self.c.latency_ms[-1] if self.c.latency_ms else float("nan")
        vals = "" if self.last_values is None else " ".join(f"{v:.2f}" for v in self.last_values)
        flag = " FROZEN" if self.frozen else (" ARMED" if self._armed_at is not None else "")
        return f"{level:6.1f} dBFS | {self.mode}{flag} | {vals or '-'} | {lat:5.1f} ms | n={self.c.updates}"


def _note_fields(est, note: int | None, new: bool) -> dict[str, Any]:
    """Update's note fields from a bridge.pitch.NoteEstimate and the note sent (held, in continuous)."""
    return {
        "note": note,
        "f0_hz": est.f0_hz,
        "midi": est.midi if est.voiced else None,
        "confidence": round(est.confidence, 4),
        "new_note": new,
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


# ------------------------------------------------------------------------------------------------
# the command


def config_from_args(args):
    """Config file + CLI flags -> BridgeConfig (flags win)."""
    from synthmatch.bridge.core.errors import UsageError
    from synthmatch.bridge.live import config as config_mod

    over: dict[str, Any] = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: write KEY=VALUE, e.g. --set continuous.hop_s=0.1")
        over[key.strip()] = config_mod.parse_value(value.strip())
    if args.input is not None:
        over["input.source"] = args.input
    if args.fast:
        over["input.fast"] = True
    if args.mode is not None:
        over["mode"] = args.mode
    if args.model is not None:
        over["model"] = args.model
    if args.backend is not None:
        over["backend"] = args.backend
    if args.midi_port is not None:
        over["output.midi.enabled"] = True
        over["output.midi.port"] = args.midi_port
    if args.osc is not None:
        host, _, port = args.osc.rpartition(":")
        over["output.osc.enabled"] = True
        if host:
            over["output.osc.host"] = host
        try:
            over["output.osc.port"] = int(port)
        except ValueError:
            raise UsageError(f"--osc {args.osc!r}: give [HOST:]PORT, e.g. --osc 127.0.0.1:9000") from None
    if args.print:
        over["output.print.enabled"] = True
    if args.no_control:
        over["control.enabled"] = False
    if args.refine_passes is not None:
        over["refine.passes"] = args.refine_passes
    return config_mod.load(args.config, over)


def _open_engine(cfg, contract):
    from synthmatch.bridge.engines import ContractMismatch, load_engine
    from synthmatch.bridge.live.config import resolve_path

    # refining: the search takes a core, so by default inference keeps to the other one (on 2 cores,
    # snapshot latency p50 16.8 ms with two ONNX Runtime threads beside the search, 8.9 ms with one)
    threads = cfg.threads or (1 if cfg.refine.passes else None)
    try:
        engine = load_engine(resolve_path(cfg.model), backend=cfg.backend, contract=contract, threads=threads)
    except ContractMismatch as e:  # its advice names match's --contract flag; the bridge sets a config key
        text = str(e)
        cut = text.find("; re-export the model")
        raise ContractMismatch(
            f"{text[:cut] if cut >= 0 else text}; re-export the model from a checkpoint "
            "trained on this contract, or point the bridge at the contract it was trained "
            'with: contract = "PATH" in the config, or --set contract=\'"PATH"\''
        ) from None
    m = engine.meta
    if m.sample_rate != contract.audio.sample_rate or m.num_samples != contract.audio.num_samples:
        from synthmatch.bridge.core.errors import UsageError

        raise UsageError(
            f"{cfg.model}: model expects {m.num_samples} samples at {m.sample_rate} Hz, the "
            f"contract {contract.audio.num_samples} at {contract.audio.sample_rate} Hz"
        )
    return engine


def _open_control(cfg, commands, status: Callable[[], dict]) -> list:
    """Start the OSC control server and the MIDI footswitch if enabled; objects with close()."""
    from synthmatch.bridge.live import control

    out: list = []
    if cfg.control.enabled:
        out.append(
            control.ControlServer(
                cfg.control.host, cfg.control.port, commands, status=status, modes=("trigger", "continuous", "manual")
            ).start()
        )
    fs = cfg.control.footswitch
    if fs.enabled:
        import rtmidi

        from synthmatch.bridge.core.errors import UsageError
        from synthmatch.bridge.outputs.midiports import MidiPortError

        try:
            out.append(control.MidiTrigger(commands, port=fs.port, cc=fs.cc, channel=fs.channel, api=fs.api))
        except BaseException as e:
            for o in out:
                o.close()
            if isinstance(e, (MidiPortError, rtmidi.RtMidiError)):
                raise UsageError(
                    f"control.footswitch: {e}; start the JACK server (or load the ALSA sequencer: "
                    "sudo modprobe snd-seq), pick a port from `synthmatch devices`, or set "
                    "control.footswitch.enabled = false"
                ) from None
            raise
    return out


class Shutdown(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT/SIGHUP while the bridge is still starting, so a slow
    step (the refinement process importing torch, a TensorRT build) is abandoned at once and everything
    opened so far is closed by main's ExitStack. A BaseException: no `except Exception` swallows it."""


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, n))


def main(args) -> int:
    """`synthmatch bridge`. Signals are handled from the first line: while starting, one raises Shutdown
    (exit 0, nothing left running); once running, one stops the loop (the daemon shuts down cleanly)."""
    stop = threading.Event()
    starting = [True]

    def on_signal(signum, frame):
        stop.set()
        if starting[0]:
            starting[0] = False  # raise once; a second signal during the unwinding only sets `stop`
            raise Shutdown(signum)

    old = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 PID`: every thread's stack on stderr (what is it doing?)
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        with contextlib.ExitStack() as stack:
            return _serve(args, stack, stop, starting)
    except Shutdown as e:
        print(f"synthmatch bridge: stopped by {signal.Signals(e.args[0]).name} while starting", file=sys.stderr)
        return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _closer(stack: contextlib.ExitStack, obj) -> None:
    """Close obj when the stack unwinds; an OSError while closing is logged, not raised."""

    def close():
        try:
            obj.close()
        except OSError as e:
            log.warning("closing %s: %s", type(obj).__name__, e)

    stack.callback(close)


def _open_sinks(cfg, contract) -> list:
    import rtmidi

    from synthmatch.bridge.core.errors import UsageError
    from synthmatch.bridge.outputs.midiports import MidiPortError
    from synthmatch.bridge.outputs.sinks import build_sinks

    try:
        return build_sinks(cfg.output, contract)
    except (MidiPortError, rtmidi.RtMidiError) as e:
        raise UsageError(
            f"output.midi: {e}; start the JACK server (or load the ALSA sequencer: sudo modprobe "
            "snd-seq), pick a port from `synthmatch devices`, or set output.midi.api"
        ) from None


def _serve(args, stack: contextlib.ExitStack, stop: threading.Event, starting: list) -> int:
    from synthmatch.bridge.core import contract as contract_mod
    from synthmatch.bridge.live.config import resolve_path
    from synthmatch.bridge.live.control import CommandQueue

    cfg = config_from_args(args)
    logging.basicConfig(
        level=getattr(logging, cfg.log.level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    contract = contract_mod.load(resolve_path(cfg.contract) if cfg.contract else None)
    engine = _open_engine(cfg, contract)
    stack.callback(engine.close)
    if args.check:
        print(f"config {cfg.source}: ok; model {cfg.model}: ok ({engine.name}, contract {engine.meta.contract_hash})")
        return 0

    refiner = None
    if cfg.refine.passes:  # also in continuous mode: the control server may switch to trigger later
        from synthmatch.bridge.core.errors import UsageError
        from synthmatch.bridge.live.refiner import Refiner, RefinerError

        try:
            refiner = Refiner(contract, cfg.refine.passes, cfg.refine.threads)
        except RefinerError as e:
            raise UsageError(f"refine.passes = {cfg.refine.passes}: {e}") from None
        stack.callback(refiner.close)
    source = open_source(cfg.input)
    stack.callback(source.stop)
    sinks = _open_sinks(cfg, contract)
    for s in sinks:
        _closer(stack, s)
    commands = CommandQueue(64)
    daemon: Daemon | None = None
    controls = _open_control(cfg, commands, lambda: daemon.status() if daemon is not None else {})
    for obj in controls:
        _closer(stack, obj)
    daemon = Daemon(cfg, contract, engine, sinks, source, commands, refiner=refiner)
    daemon.control_stats = [obj.stats for obj in controls]
    stack.callback(daemon.stop, timeout=0.8)
    daemon.start()
    starting[0] = False  # from here a signal only sets `stop`
    if stop.is_set():  # a signal that came as the flag changed
        return _report(daemon)
    log.info("bridge running: input %s, mode %s, %d output(s)", source.name, cfg.mode, len(sinks))
    _loop(args, cfg, daemon, controls, stop)
    stack.close()  # stop everything before the counters are final
    return _report(daemon)


def _loop(args, cfg, daemon: Daemon, controls: list, stop: threading.Event) -> None:
    """Main thread while the worker runs: maintain the controls, status line and periodic counters."""
    t_end = time.monotonic() + args.seconds if args.seconds else math.inf
    status = cfg.log.status_line and sys.stderr.isatty()
    next_status = next_log = time.monotonic()
    while not stop.is_set() and not daemon.done.is_set() and time.monotonic() < t_end:
        stop.wait(0.05)
        for obj in controls:
            if hasattr(obj, "maintain"):
                obj.maintain()
        now = time.monotonic()
        if status and now >= next_status:
            sys.stderr.write("\r" + daemon.status_line()[:160] + "\033[K")
            sys.stderr.flush()
            next_status = now + STATUS_EVERY_S
        if cfg.log.interval_s and now >= next_log + cfg.log.interval_s:
            next_log = now
            if status:
                sys.stderr.write("\n")
            log.info("counters %s", json.dumps(daemon.counters()))
    if status:
        sys.stderr.write("\n")


def _report(daemon: Daemon) -> int:
    """Print the exit counters; the exit status says whether the run did its job."""
    counters = daemon.counters()
    print(f"synthmatch bridge: counters {json.dumps(counters)}", file=sys.stderr, flush=True)
    if daemon.error is not None:
        print(f"synthmatch bridge: error: worker stopped: {daemon.error!r}", file=sys.stderr)
        return 1
    failed = daemon.c.bad_outputs + daemon.c.send_failures
    if daemon.c.inferences and not daemon.c.updates and failed:
        print(
            f"synthmatch bridge: error: no update was sent: {daemon.c.bad_outputs} of "
            f"{daemon.c.inferences} model outputs were rejected (not finite or outside [0, 1]) and "
            f"{daemon.c.send_failures} sends failed (see the warnings above); check the model with "
            "`synthmatch bridge --check --model PATH` or re-export it",
            file=sys.stderr,
        )
        return 2
    return 0
