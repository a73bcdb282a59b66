"""`synthmatch bridge`: listen to an input, infer the 16 parameters, push them to the synth.

One worker thread runs the loop; the audio callback only fills a ring (bridge/audio/input.py):

    raw ring -> Converter (mono, sanitise, resample to 16 kHz) -> 16 kHz ring + onset detector
             -> mode logic -> engine.infer (1, 64000) -> smoothing / deadband / rate limit -> sinks

Modes:
  trigger     every onset opens a 4 s window starting exactly at the onset sample; once those 4 s are
              in (or the next onset / trigger.max_wait_s / end of input cuts it short: zero-padded),
              one inference, one snapshot of all 16 values.
  continuous  continuous.follow = "held" (performance mode, the default): every continuous.hop_s (50 ms)
              the held matcher (bridge/match/held.py) judges candidates by the steady spectrum of the
              newest 0.3 s, the answer playing among them and kept unless another is clearly closer
              (that is the stability: no one-pole lag); only oscillators and filters move, the envelope
              and reverb keep the answer playing. The network's 4 s answer seeds it on a new note and
              every continuous.network_every_s. The first update comes one hop after a voiced onset.
              follow = "window": a sliding 4 s window through the network (and refine's matcher) every
              hop. Both: optional smoothing, deadband, rate limit (on the stream's clock for "held");
              the silence gate stops updates while nobody plays.
  manual      like trigger, but only after a control message arms it (OSC /synthmatch/trigger or the
              MIDI footswitch); manual.start = "now" analyses the last 4 s at once instead.
With refine.budget_ms > 0 every answer is the matcher's (bridge/match/search.py): the network's values
judged by synthesis against the window and improved within the budget, in this thread, torch-free. A
snapshot carries the refined values (refine.network_first: the network's are sent first, as a preview);
in continuous mode the budget shrinks to fit the hop (HOP_SHARE), the previous answer is among the
candidates and is kept unless another is clearly closer, so a held sound does not chatter.
Freeze/unfreeze and mode changes arrive over the control server. Counters are logged every
log.interval_s and printed as one JSON line on stderr at exit ("synthmatch bridge: counters {...}").

Nothing an engine or a sink raises ends the show: the window (or that sink's send) is dropped, counted
(engine_errors, send_failures) and logged rate-limited, and the next window is tried. Only after
ENGINE_FAILURES_MAX engine errors in a row does the daemon act: it falls back to the `fallback` engine
(serve: onnxruntime, when backend = "auto" chose another), else it ends with `fatal` set (exit 2).

This module is the worker loop (Daemon); its parts, each readable and testable alone:
  intake.py       raw blocks -> Converter -> the 16 kHz ring, onsets, each sample's arrival time
  capture.py      trigger/manual capture: onset -> pending window -> the snapshot's samples
  shaping.py      continuous mode's hop plan, smoothing, deadband, rate limit, pitch resend (pure functions)
  report.py       Counters, the counter dict, /synthmatch/status, the status line, the exit status
  serve.py        the process: config, opening engine / matcher / input / sinks / control, signals, main
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Callable

import numpy as np

from synthmatch.bridge.audio.notes import NoteStage
from synthmatch.bridge.audio.onset import rms_dbfs
from synthmatch.bridge.core.ratelimit import LimitedLog
from synthmatch.bridge.engines import output_problem
from synthmatch.bridge.live import report
from synthmatch.bridge.live.capture import SILENCE_DBFS, TriggerCapture, cut_window, silent
from synthmatch.bridge.live.config import MODES
from synthmatch.bridge.live.intake import Intake
from synthmatch.bridge.live.report import Counters
from synthmatch.bridge.live.shaping import next_hop, pitch_resend, shape
from synthmatch.bridge.match.candidates import pitch_candidates

log = logging.getLogger("synthmatch.bridge")

IDLE_SLEEP_S = 0.001  # worker poll interval when no analysis is due soon (or input runs --fast)
NEAR_SLEEP_S = 0.0002  # ... when the block completing the next window may arrive any moment
FAR_SLEEP_S = 0.005  # longest sleep while a window is far off (commands wait at most this)
WAKE_EARLY_S = 0.002  # start polling this long before the earliest possible arrival, plus one block
# continuous mode: inference plus matching may take this share of a hop, so the worker never falls behind
# (the rest is headroom for the audio thread, the sinks and a slow hop)
HOP_SHARE = 0.6
# engine errors in a row before the backend falls back or the daemon exits 2: in continuous mode 5 hops
# are 1.25 s, in trigger mode 5 notes. A glitch of one window (a GPU hiccup) passes unnoticed; an engine
# that is broken for good is acted on while the audience has lost only a moment, not the show
ENGINE_FAILURES_MAX = 5


class EngineGaveUp(Exception):
    """ENGINE_FAILURES_MAX engine errors in a row and nothing to fall back to: the worker ends (exit 2)."""


class Daemon:
    """The worker loop. Construct with opened parts; `start()`, then `stop()` or wait for `done`.

    window_tap(start, window, values): optional observer called with every analysed window
    (start = absolute 16 kHz sample position, window = (num_samples,) float32, values = raw model output).
    matcher: a bridge.match.search.Matcher (answers judged by synthesis, cfg.refine), or None (the network's
    answer alone).
    fallback: () -> an opened engine to switch to after ENGINE_FAILURES_MAX engine errors in a row
    (called at most once), or None: then the worker ends with `fatal` set.
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
        matcher=None,
        fallback: Callable[[], Any] | None = None,
    ):
        self.cfg, self.contract, self.engine, self.sinks, self.source = cfg, contract, engine, sinks, source
        self.sr = contract.audio.sample_rate
        self.n = contract.audio.num_samples
        if commands is None:
            from synthmatch.bridge.live.control import CommandQueue

            commands = CommandQueue()
        self.commands = commands  # bridge.control.CommandQueue: get() -> ControlCommand | None
        self.window_tap = window_tap
        self.matcher = matcher
        self.mode = cfg.mode
        self.frozen = False
        self.c = Counters()
        self.intake = Intake(source, self.sr, cfg.onset, cfg.input.channel)  # 16 kHz ring, onsets, arrivals
        self.notes = NoteStage(cfg.notes, contract)  # note per window, model at that note (bridge/audio/notes.py)
        self._note_fields: dict[str, Any] = {}  # the newest update's note: refined follow-up, status, pitch
        self.done = threading.Event()  # the loop ended (stop() or end of file input)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run_guarded, name="synthmatch-worker", daemon=True)
        self.capture = TriggerCapture(cfg.trigger, cfg.manual, self.n)  # trigger/manual: pending, armed
        cont = cfg.continuous
        self._hop = max(1, int(round(cont.hop_s * self.sr)))  # continuous hop, samples
        self._held: Any = None  # continuous.follow = "held": the HeldMatcher (bridge/match/held.py), made once
        self._note_start = 0  # held: where the sounding note began (16 kHz sample), the network seed's start
        self._net_end = -1  # held: the end of the newest window the network answered (-1: none this note)
        self._sent_end = -1  # held: the end of the newest window sent (the rate limit's stream clock)
        if cfg.mode == "continuous" and cont.follow == "held":
            self._held_matcher()  # its tables (and numpy's FFT plans) before the first note, not during it
        self._next_end = self._first_end()  # continuous: end of the next window
        self._catch_up = cont.catch_up or cfg.input.fast
        self._smooth: np.ndarray | None = None  # continuous: smoothed values (shaping.shape's state)
        self._last_sent: np.ndarray | None = None  # the newest update's values (any mode; a copy)
        self._last_send_t = -math.inf  # ... when it was handed to the sinks (monotonic s)
        self.last_values: np.ndarray | None = None
        self.status_reply: Callable[[tuple[str, int], dict], None] | None = None
        self.control_stats: list = []  # bridge.control.ControlStats of the running control inputs
        self.error: BaseException | None = None  # the worker died of a bug (exit 1)
        self.fatal: str | None = None  # the worker ended for a reason the user must fix (exit 2): one line
        self.fallback = fallback
        self._failures_in_row = 0  # engine errors since the last inference that returned
        self._extras: dict[str, np.ndarray] = {}  # the newest inference's extra outputs (pitch head's top classes)
        # a failing engine or sink: 5 lines, then one every 30 s carrying the count suppressed (the counters
        # logged every log.interval_s have the totals): a fault that lasts all night adds 120 lines an hour
        self._engine_log = LimitedLog(log, burst=5, per_s=1 / 30)
        self._match_log = LimitedLog(log, burst=5, per_s=1 / 30)
        self._sink_log = LimitedLog(log, burst=5, per_s=1 / 30)

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
        except EngineGaveUp as e:
            self.fatal = str(e)
            log.error("%s", e)
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
            onsets = self.intake.pull()  # None: nothing new arrived
            if onsets is None and self.intake.drained():
                self._finish()
                return
            for p in onsets or ():
                self._on_onset(p)
            self._modes(time.monotonic())
            if onsets is None:
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
            missing = self._next_end - self.intake.ring16.written
        elif self.capture.pending is not None:
            missing = self.capture.pending[0] + self.n - self.intake.ring16.written
        else:
            return IDLE_SLEEP_S
        t = missing / self.sr - self.intake.block_s - WAKE_EARLY_S
        return min(FAR_SLEEP_S, t) if t > NEAR_SLEEP_S else NEAR_SLEEP_S

    # ---- modes ----
    def _on_onset(self, p: int) -> None:
        self.c.onsets += 1
        if self.frozen or not self.capture.onset_opens(self.mode):
            return
        cut = self.capture.cut()  # trigger.cut_at_next_onset: the window still filling ends here
        if cut is not None:
            self._capture(cut, end=p)
        self.capture.open(p, time.monotonic())

    def _modes(self, now: float) -> None:
        if self.mode == "continuous":
            self._continuous()
            return
        due = self.capture.due(self.intake.ring16.written, now)
        if due is not None:
            self._capture(*due)
        if self.mode == "manual":
            self.capture.arm_expired(now)

    def _capture(self, p: int, end: int | None = None) -> None:
        """One snapshot of the window starting at p; `end` < p + n cuts it there (zero-padded)."""
        got = cut_window(self.intake.ring16, p, end, self.n)
        if got is None:
            return
        window, m = got
        if m < self.n:
            self.c.captures_padded += 1
        est = self.notes.snapshot(window, m)
        values = self._infer(p, window, est.note)
        if values is None:
            return
        t_audio, fields = self.intake.arrival_of(p + max(m, 1)), _note_fields(est, est.note, True)
        fields["stream_s"] = (p + max(m, 1)) / self.sr  # the end of the audio analysed, on the input's clock
        if self.matcher is not None and self.cfg.refine.network_first:
            self._send(values, t_audio, fields)  # the preview; the refined answer follows within the budget
            fields = {**fields, "new_note": False}
        refined = self._refine(window, est.note, values, self.cfg.refine.budget_ms)
        if refined is not values:
            self._send(refined, t_audio, fields, "+refined" if self.cfg.refine.network_first else "")
        elif not (self.matcher is not None and self.cfg.refine.network_first):
            self._send(values, t_audio, fields)

    def _capture_now(self) -> None:
        """manual.start = "now": the last 4 s, unless they are silent (capture.silent)."""
        p = max(0, self.intake.ring16.written - self.n)
        if silent(self.intake.ring16, p):
            self.c.silent_captures += 1
            log.warning(
                "manual capture refused: the last %.1f s are silent (peak below %.0f dBFS); play, then trigger",
                (self.intake.ring16.written - p) / self.sr,
                SILENCE_DBFS,
            )
            return
        self.capture.pending = None  # a capture ends any pending window (none is pending in "now" mode)
        self._capture(p)

    def _continuous(self) -> None:
        while self.intake.ring16.written >= self._next_end and not self._stop.is_set():
            self._hop_once()

    def _first_end(self) -> int:
        """Continuous mode's first window end: the held window (performance mode) or the network's 4 s."""
        return self._held_matcher().window_n if self.cfg.continuous.follow == "held" else self.n

    def _held_matcher(self):
        if self._held is None:
            from synthmatch.bridge.match.held import HeldConfig, HeldMatcher

            cont = self.cfg.continuous
            config = HeldConfig(budget_ms=cont.budget_ms, keep_margin=cont.keep_margin)
            self._held = HeldMatcher(self.contract, config, synth=getattr(self.matcher, "synth", None))
            self._held.warm()
        return self._held

    def _hop_once(self) -> None:
        hop = next_hop(self.intake.ring16.written, self._next_end, self._hop, self._catch_up)
        self.c.skipped_hops += hop.skipped
        self._next_end = hop.next_end
        end = hop.end
        if self.frozen:
            self.c.held += 1
            return
        if self.cfg.continuous.follow == "held":
            self._held_hop(end)
            return
        gate_n = min(self.n, int(self.cfg.continuous.gate_s * self.sr))
        recent = self.intake.ring16.window(end - gate_n, gate_n)
        if recent is None or rms_dbfs(recent) < self.cfg.continuous.gate_db:
            self.c.gated += 1
            self._end_note(end)
            return
        window = self.intake.ring16.window(end - self.n, self.n)
        if window is None:
            return
        est, held, changed = self.notes.track(window[:, 0])
        values = self._infer(end - self.n, window[:, 0], held)
        if values is None:
            return
        budget = HOP_SHARE * self._hop / self.sr * 1000.0 - (self.c.infer_ms[-1] if self.c.infer_ms else 0.0)
        budget = min(self.cfg.refine.budget_ms, budget)
        values = self._refine(window[:, 0], held, values, budget, previous=self._last_sent)
        resend = pitch_resend(est.voiced, est.midi, self._note_fields.get("midi"), held, changed)
        since_sent_s = time.monotonic() - self._last_send_t
        out, self._smooth = shape(
            values, self._smooth, self._last_sent, since_sent_s, self.cfg.continuous, self._hop / self.sr, resend
        )
        if out is None:
            self.c.held += 1
            return
        self._send(out, self.intake.arrival_of(end), {**_note_fields(est, held, changed), "stream_s": end / self.sr})

    def _held_hop(self, end: int) -> None:
        """Performance mode's hop (window ending at `end`): gate, note, a network seed when due, the held
        matcher's answer, shaping, send."""
        cont, ring, held_m = self.cfg.continuous, self.intake.ring16, self._held_matcher()
        span = max(held_m.window_n, int(cont.gate_s * self.sr), int(self.cfg.notes.track_s * self.sr))
        recent = ring.window(max(0, end - span), min(span, end))
        gate_n = min(len(recent), int(cont.gate_s * self.sr)) if recent is not None else 0
        if recent is None or rms_dbfs(recent[len(recent) - gate_n :]) < cont.gate_db:
            self.c.gated += 1
            if self._net_end >= 0:  # the note ended: the next sound is a new note
                held_m.reset()
                self._net_end = -1
            self._end_note(end)
            return
        recent = recent[:, 0]
        est, held, changed = self.notes.track(recent)
        if self._net_end < 0 or changed:
            self._note_start = max(0, end - held_m.window_n)
            held_m.reset()
        seeds = []
        every = int(cont.network_every_s * self.sr)
        if self._net_end < 0 or changed or (every > 0 and end - self._net_end >= every):
            values = self._seed(end, held)
            self._net_end = end
            if values is not None:
                seeds.append(values)
        previous = self._last_sent if self._last_sent is not None else (seeds[0] if seeds else None)
        if previous is None:
            return
        spent = self.c.infer_ms[-1] if seeds and self.c.infer_ms else 0.0
        budget = max(0.0, min(cont.budget_ms, HOP_SHARE * self._hop / self.sr * 1000.0 - spent))
        heard = est.midi if est.voiced else float(self.contract.audio.note if held is None else held)
        try:
            r = held_m.match(recent, heard, previous, seeds=seeds, budget_ms=budget)
        except Exception as e:  # a matcher bug must not cost the show: the network's answer, if any
            self.c.refine_errors += 1
            self._match_log.warning("held matching failed (%d so far): %s", self.c.refine_errors, _one_line(e))
            if not seeds:
                return
            values = seeds[0]
        else:
            self.c.refined += 1
            self.c.refine_ms.append(r.seconds * 1000.0)
            values = r.values
        resend = pitch_resend(est.voiced, est.midi, self._note_fields.get("midi"), held, changed)
        since_sent_s = math.inf if self._sent_end < 0 else (end - self._sent_end) / self.sr  # stream clock
        out, self._smooth = shape(
            values, self._smooth, self._last_sent, since_sent_s, cont, self._hop / self.sr, resend
        )
        if out is None:
            self.c.held += 1
            return
        self._sent_end = end
        self._send(out, self.intake.arrival_of(end), {**_note_fields(est, held, changed), "stream_s": end / self.sr})

    def _seed(self, end: int, note: int | None) -> np.ndarray | None:
        """The network's answer as a held-matcher seed: the 4 s from the note's start (a one-shot, as it was
        trained on), or the newest 4 s once the note is longer; zero-padded after the end."""
        start = max(self._note_start, end - self.n)
        got = self.intake.ring16.window(start, end - start)
        if got is None:
            return None
        window = np.zeros(self.n, np.float32)
        window[: end - start] = got[:, 0]
        return self._infer(start, window, note)

    def _infer(self, start: int, window: np.ndarray, note: int | None = None) -> np.ndarray | None:
        t0 = time.monotonic()
        try:
            out, self._extras = self.notes.infer_full(self.engine, window, note)  # at this note (cfg.notes.normalise)
        except Exception as e:  # ONNX Runtime, a GPU fault, anything: this window is lost, not the show
            self._engine_failed(e)
            return None
        self._failures_in_row = 0
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

    def _refine(
        self, window: np.ndarray, note: int | None, values: np.ndarray, budget_ms: float, previous=None
    ) -> np.ndarray:
        """The matcher's answer for this window (values itself when there is no matcher, no budget left or
        the matcher failed: counted and logged rate-limited, the network's answer stands)."""
        if self.matcher is None or budget_ms <= 0:
            return values
        played = float(self.contract.audio.note if note is None else note)
        try:
            starts = pitch_candidates(values, self._extras, self.engine.meta)  # the pitch head's runner-ups
            r = self.matcher.match(window, played, values, previous=previous, extra=starts, budget_ms=budget_ms)
        except Exception as e:  # a matcher bug must not cost the show its answer
            self.c.refine_errors += 1
            self._match_log.warning(
                "matching failed (%d so far): %s; the network's answer is sent", self.c.refine_errors, _one_line(e)
            )
            return values
        self.c.refined += 1
        self.c.refine_ms.append(r.seconds * 1000.0)
        self.c.refine_before.append(r.network_distance)
        self.c.refine_after.append(r.distance)
        return r.values

    def _engine_failed(self, e: Exception) -> None:
        """Count and log (rate-limited) an engine error; the ENGINE_FAILURES_MAX-th in a row switches to
        the fallback engine, or raises EngineGaveUp when there is none (or it does not open)."""
        self.c.engine_errors += 1
        self._failures_in_row += 1
        why = _one_line(e)
        name = getattr(self.engine, "name", type(self.engine).__name__)
        self._engine_log.warning(
            "inference failed on %s (%d so far, %d in a row): %s; window dropped",
            name,
            self.c.engine_errors,
            self._failures_in_row,
            why,
        )
        if self._failures_in_row < ENGINE_FAILURES_MAX:
            return
        opener, self.fallback = self.fallback, None
        if opener is not None:
            try:
                engine = opener()
            except Exception as e2:  # the fallback cannot open either: say both
                why = f"{why}; the fallback did not open: {_one_line(e2)}"
            else:
                log.warning(
                    "inference backend %s failed %d times in a row (%s); falling back to %s",
                    name,
                    self._failures_in_row,
                    why,
                    getattr(engine, "name", type(engine).__name__),
                )
                self.engine, self._failures_in_row = engine, 0
                self.c.engine_fallbacks += 1
                return
        raise EngineGaveUp(
            f"inference failed {self._failures_in_row} times in a row on the {name} backend (last: {why}); "
            "check the model with `synthmatch bridge --check --model PATH` on loud input, re-export it, or "
            "choose another --backend"
        )

    def _emit(self, values: np.ndarray, t_audio: float, mode: str, notes: dict[str, Any] | None = None) -> float:
        """Hand one update to every sink -> the time it was handed over. notes: Update's note fields and
        stream_s."""
        from synthmatch.bridge.outputs.sinks import Update

        u = Update(
            values=[float(v) for v in values],
            t_audio=t_audio,
            t_infer_done=time.monotonic(),
            mode=mode,
            **(notes or {}),
        )
        taken = self._deliver(u)
        now = time.monotonic()
        if taken or not self.sinks:
            self.c.updates += 1
        self._last_sent = values.copy()
        self._last_send_t = now
        self.last_values = values
        return now

    def _end_note(self, end: int | None = None) -> None:
        """Continuous mode: the held note ends (silence, mode change, end of input): a note-off update.
        end: the stream position it ends at (default: all input so far)."""
        held = self.notes.tracker.held
        if not self.notes.tracker.end():
            return
        from synthmatch.bridge.outputs.sinks import Update

        at = (self.intake.ring16.written if end is None else end) / self.sr
        self._deliver(Update(values=(), mode=self.mode, note=held, note_off=True, stream_s=at))

    def _deliver(self, u: Any) -> int:
        """Hand an outputs.sinks.Update to every sink -> how many took it (counting messages and failures)."""
        taken = 0
        for s in self.sinks:
            try:
                self.c.messages += s.send(u)
                taken += 1
            except Exception as e:  # sinks count transport trouble; this guard keeps a sink's bug from the show
                self._sink_failed(s, "failed", e)
        return taken

    def _sink_failed(self, sink: Any, what: str, e: Exception) -> None:
        self.c.send_failures += 1
        self._sink_log.warning(
            "%s %s (%d sink failures so far): %s", type(sink).__name__, what, self.c.send_failures, _one_line(e)
        )

    def _send(self, values: np.ndarray, t_audio: float, notes: dict[str, Any] | None = None, tag: str = "") -> None:
        self._note_fields = {**(notes or {}), "new_note": False}
        now = self._emit(values, t_audio, self.mode + tag, notes)
        lat = (now - t_audio) * 1000.0
        self.c.latency_ms.append(lat)
        if self.c.infer_ms:  # everything but the model: waiting, conversion, windowing, sending
            self.c.overhead_ms.append(lat - self.c.infer_ms[-1])

    def _finish(self) -> None:
        """End of file input: a capture still waiting is analysed zero-padded."""
        if self.capture.pending is not None and self.mode in ("trigger", "manual"):
            self._capture(self.capture.take(), end=self.intake.ring16.written)
        self._end_note()

    def _maintain(self) -> None:
        for s in self.sinks:
            m = getattr(s, "maintain", None)
            if m is not None:
                try:
                    m()
                except Exception as e:  # as in _deliver: a sink's trouble is counted, never fatal
                    self._sink_failed(s, "port check failed", e)

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
                self.capture.arm(time.monotonic())
                log.info("manual capture armed: play a note")
        elif kind == "freeze":
            self.frozen = True if arg is None else bool(arg)
            log.info("values %s", "frozen" if self.frozen else "released")
        elif kind == "status":
            if cmd.reply_to is not None and self.status_reply is not None:
                self.status_reply(cmd.reply_to, self.status())
        elif kind == "mode":
            if arg in MODES and arg != self.mode:
                log.info("mode %s -> %s", self.mode, arg)
                self._end_note()
                self.mode = arg
                self.capture.reset()
                self._next_end = max(self._first_end(), self.intake.ring16.written)
        else:
            log.warning("unknown control command %r", kind)

    # ---- reporting (bridge/live/report.py) ----
    def counters(self) -> dict[str, Any]:
        return report.counters(
            self.c,
            self.source,
            self.intake.converter,
            self.notes.fallbacks,
            self.intake.ring16.written,
            self.control_stats,
        )

    def status(self) -> dict[str, Any]:
        """Read-only snapshot for /synthmatch/status (called from the control server's thread)."""
        return report.status(
            mode=self.mode,
            frozen=self.frozen,
            armed=self.capture.armed,
            level_db=self.intake.onset.level_db,
            names=self.contract.names,
            values=self.last_values,
            note_fields=self._note_fields,
            counters=self.counters(),
        )

    def status_line(self) -> str:
        return report.status_line(
            level_db=self.intake.onset.level_db,
            mode=self.mode,
            frozen=self.frozen,
            armed=self.capture.armed,
            values=self.last_values,
            latency_ms=self.c.latency_ms,
            updates=self.c.updates,
        )


def _one_line(e: BaseException, limit: int = 300) -> str:
    """An exception as one short line: its type and the first line of its message (ONNX Runtime's run
    over many), cut to `limit` characters."""
    lines = str(e).strip().splitlines()
    text = f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _note_fields(est, note: int | None, new: bool) -> dict[str, Any]:
    """Update's note fields from a bridge.pitch.NoteEstimate and the note sent (held, in continuous)."""
    return {
        "note": note,
        "f0_hz": est.f0_hz,
        "midi": est.midi if est.voiced else None,
        "confidence": round(est.confidence, 4),
        "new_note": new,
    }
