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
              newest 0.2 s, the answer playing among them and kept unless another is clearly closer
              (that is the stability: no one-pole lag); only oscillators and filters move, the envelope
              and reverb keep the answer playing. The network's 4 s answer seeds it on a new note and
              every continuous.network_every_s; the performance model (continuous.model: a 0.4 s window,
              told the note) seeds it every hop once the note fills that window. The first update comes
              one hop after a voiced onset.
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

Nothing an engine, the matcher or a sink raises ends the show: the window (or that answer, or that sink's
send) is dropped, counted and logged rate-limited. Only ENGINE_FAILURES_MAX engine errors in a row are
acted on: the `fallback` engine, else the worker ends with `fatal` set (exit 2; bridge/live/inference.py).

This module is the worker loop (Daemon) and the modes' dispatch; its parts, each readable and testable alone:
  intake.py       raw blocks -> Converter -> the 16 kHz ring, onsets, each sample's arrival time
  capture.py      trigger/manual capture: onset -> pending window -> the snapshot's samples
  inference.py    the engine's call on a window (timed, tapped, checked); engine errors, fallback, EngineGaveUp
  judge.py        refine: the network's answer judged by synthesis (the Matcher), counted, failures logged
  follow.py       follow = "held": HeldFollower, the held matcher, its gate, network seeds and their schedule
  shaping.py      continuous mode's hop plan, smoothing, deadband, rate limit, pitch resend (pure functions)
  outlet.py       updates and note-offs to every sink, counted; the newest update; a sink's fault never fatal
  report.py       Counters, the counter dict, /synthmatch/status, the status line, the exit status
  serve.py        the process: config, opening engine / matcher / input / sinks / control, signals, main
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from synthmatch.bridge.audio.notes import NoteStage
from synthmatch.bridge.audio.onset import rms_dbfs
from synthmatch.bridge.core.ratelimit import LimitedLog
from synthmatch.bridge.live import report
from synthmatch.bridge.live.capture import SILENCE_DBFS, TriggerCapture, cut_window, silent
from synthmatch.bridge.live.config import MODES
from synthmatch.bridge.live.follow import HeldFollower
from synthmatch.bridge.live.inference import EngineGaveUp, Inference
from synthmatch.bridge.live.intake import Intake
from synthmatch.bridge.live.judge import Judge
from synthmatch.bridge.live.outlet import Outlet, note_fields
from synthmatch.bridge.live.report import Counters
from synthmatch.bridge.live.shaping import next_hop, pitch_resend, shape

if TYPE_CHECKING:
    from synthmatch.bridge.audio.input import DeviceSource, FileSource
    from synthmatch.bridge.core.contract import Contract
    from synthmatch.bridge.engines import Engine
    from synthmatch.bridge.live.config import BridgeConfig
    from synthmatch.bridge.live.control import CommandQueue
    from synthmatch.bridge.match.search import Matcher
    from synthmatch.bridge.outputs.base import Sink

log = logging.getLogger("synthmatch.bridge")

IDLE_SLEEP_S = 0.001  # worker poll interval when no analysis is due soon (or input runs --fast)
NEAR_SLEEP_S = 0.0002  # ... when the block completing the next window may arrive any moment
FAR_SLEEP_S = 0.005  # longest sleep while a window is far off (commands wait at most this)
WAKE_EARLY_S = 0.002  # start polling this long before the earliest possible arrival, plus one block
# continuous mode: inference plus matching may take this share of a hop, so the worker never falls behind
# (the rest is headroom for the audio thread, the sinks and a slow hop)
HOP_SHARE = 0.6


class Daemon:
    """The worker loop. Construct with opened parts; `start()`, then `stop()` or wait for `done`.

    window_tap(start, window, values): optional observer called with every analysed window
    (start = absolute 16 kHz sample position, window = (num_samples,) float32, values = raw model output).
    matcher: a bridge.match.search.Matcher (answers judged by synthesis, cfg.refine), or None (the network's
    answer alone).
    fallback: () -> an opened engine to switch to after inference.ENGINE_FAILURES_MAX engine errors in a row
    (called at most once), or None: then the worker ends with `fatal` set.
    """

    def __init__(
        self,
        cfg: BridgeConfig,
        contract: Contract,
        engine: Engine,
        sinks: list[Sink],
        source: DeviceSource | FileSource,
        commands: CommandQueue | None = None,
        window_tap: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
        matcher: Matcher | None = None,
        fallback: Callable[[], Engine] | None = None,
        perf_engine: Engine | None = None,
    ):
        self.cfg, self.contract, self.source = cfg, contract, source
        self.sr = contract.audio.sample_rate
        self.n = contract.audio.num_samples
        if commands is None:
            from synthmatch.bridge.live.control import CommandQueue

            commands = CommandQueue()
        self.commands = commands  # bridge.control.CommandQueue: get() -> ControlCommand | None
        self.matcher = matcher
        self.mode = cfg.mode
        self.frozen = False
        self.c = Counters()
        self.intake = Intake(source, self.sr, cfg.onset, cfg.input.channel)  # 16 kHz ring, onsets, arrivals
        self.notes = NoteStage(cfg.notes, contract)  # note per window, model at that note (bridge/audio/notes.py)
        self.inference = Inference(engine, self.notes, self.c, window_tap, fallback)  # engine call, its faults
        self.outlet = Outlet(sinks, self.c)  # the sinks; the newest update (values, time, note fields)
        # a failing matcher: 5 lines, then one every 30 s carrying the count suppressed (the counters logged
        # every log.interval_s have the totals): a fault that lasts all night adds 120 lines an hour
        match_log = LimitedLog(log, burst=5, per_s=1 / 30)  # the matcher's and the held matcher's
        self.judge = Judge(matcher, self.c, contract.audio.note, match_log)  # refine: judged by synthesis
        synth = getattr(matcher, "synth", None)
        perf = None  # the performance model (continuous.model), its calls counted apart
        if perf_engine is not None:
            perf = Inference(
                perf_engine, self.notes, self.c, counted=("perf_inferences", "perf_ms"), label="performance model"
            )
        self.follower = HeldFollower(cfg.continuous, contract, self.c, match_log, synth, perf=perf)  # "held"
        self.done = threading.Event()  # the loop ended (stop() or end of file input)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run_guarded, name="synthmatch-worker", daemon=True)
        self.capture = TriggerCapture(cfg.trigger, cfg.manual, self.n)  # trigger/manual: pending, armed
        cont = cfg.continuous
        self._hop = max(1, int(round(cont.hop_s * self.sr)))  # continuous hop, samples
        self._next_end = self._first_end()  # continuous: end of the next window (makes the held matcher)
        self._catch_up = cont.catch_up or cfg.input.fast
        self._smooth: np.ndarray | None = None  # continuous: smoothed values (shaping.shape's state)
        self.status_reply: Callable[[tuple[str, int], dict], None] | None = None
        self.control_stats: list = []  # bridge.control.ControlStats of the running control inputs
        self.error: BaseException | None = None  # the worker died of a bug (exit 1)
        self.fatal: str | None = None  # the worker ended for a reason the user must fix (exit 2): one line

    @property
    def engine(self) -> Any:
        """The engine answering now (the fallback's after ENGINE_FAILURES_MAX errors in a row)."""
        return self.inference.engine

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
                self.outlet.maintain()
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
        t_audio, fields = self.intake.arrival_of(p + max(m, 1)), note_fields(est, est.note, True)
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
        return self.follower.window_n if self.cfg.continuous.follow == "held" else self.n

    def _budget_ms(self, limit_ms: float, spent_ms: float) -> float:
        """The matcher's budget this hop: its share of the hop (HOP_SHARE) less the inference's, at most limit_ms."""
        return min(limit_ms, HOP_SHARE * self._hop / self.sr * 1000.0 - spent_ms)

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
        budget = self._budget_ms(self.cfg.refine.budget_ms, self.c.infer_ms[-1] if self.c.infer_ms else 0.0)
        values = self._refine(window[:, 0], held, values, budget, previous=self.outlet.last_sent)
        self._shape_send(values, est, held, changed, end, time.monotonic() - self.outlet.last_send_t)

    def _held_hop(self, end: int) -> None:
        """Performance mode's hop (window ending at `end`; bridge/live/follow.py): gate, note, a network seed
        when due, the performance model's seed, the held matcher's answer, shaping, send."""
        cont, ring, f = self.cfg.continuous, self.intake.ring16, self.follower
        recent = f.listen(ring, end, self.cfg.notes.track_s)
        if recent is None:
            self.c.gated += 1
            self._end_note(end)
            return
        est, held, changed = self.notes.track(recent)
        seeds = f.seeds(ring, end, changed, lambda start, window: self._infer(start, window, held))
        spent = self.c.infer_ms[-1] if seeds and self.c.infer_ms else 0.0  # ms of this hop's inferences
        previous = self.outlet.last_sent if self.outlet.last_sent is not None else (seeds[0] if seeds else None)
        t0 = time.monotonic()
        seeds += f.perf_seeds(ring, end, previous, held)
        spent += (time.monotonic() - t0) * 1000.0
        if previous is None:
            return
        heard = est.midi if est.voiced else float(self.contract.audio.note if held is None else held)
        values = f.answer(recent, heard, previous, seeds, max(0.0, self._budget_ms(cont.budget_ms, spent)))
        if values is not None and self._shape_send(values, est, held, changed, end, f.since_sent_s(end)):
            f.sent_end = end  # the rate limit's stream clock

    def _shape_send(
        self, values: np.ndarray, est: Any, held: int | None, changed: bool, end: int, since_s: float
    ) -> bool:
        """A hop's answer (window ending at `end`; est, held, changed: notes.track's) through smoothing,
        deadband, rate limit and pitch resend (shaping.shape) to the sinks -> whether it went out."""
        resend = pitch_resend(est.voiced, est.midi, self.outlet.note_fields.get("midi"), held, changed)
        out, self._smooth = shape(
            values, self._smooth, self.outlet.last_sent, since_s, self.cfg.continuous, self._hop / self.sr, resend
        )
        if out is None:
            self.c.held += 1
            return False
        self._send(out, self.intake.arrival_of(end), {**note_fields(est, held, changed), "stream_s": end / self.sr})
        return True

    def _infer(self, start: int, window: np.ndarray, note: int | None = None) -> np.ndarray | None:
        return self.inference.run(start, window, note)  # bridge/live/inference.py: None when the window is lost

    def _refine(
        self, window: np.ndarray, note: int | None, values: np.ndarray, budget_ms: float, previous=None
    ) -> np.ndarray:
        """The matcher's answer for this window (bridge/live/judge.py; values itself without one)."""
        return self.judge.refine(window, note, values, budget_ms, self.inference.extras, self.engine, previous)

    def _end_note(self, end: int | None = None) -> None:
        """Continuous mode: the held note ends (silence, mode change, end of input): a note-off update.
        end: the stream position it ends at (default: all input so far)."""
        held = self.notes.tracker.held
        if not self.notes.tracker.end():
            return
        self.outlet.note_off(held, self.mode, (self.intake.ring16.written if end is None else end) / self.sr)

    def _send(self, values: np.ndarray, t_audio: float, notes: dict[str, Any] | None = None, tag: str = "") -> None:
        self.outlet.send(values, t_audio, self.mode + tag, notes)  # bridge/live/outlet.py

    def _finish(self) -> None:
        """End of file input: a capture still waiting is analysed zero-padded."""
        if self.capture.pending is not None and self.mode in ("trigger", "manual"):
            self._capture(self.capture.take(), end=self.intake.ring16.written)
        self._end_note()

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
        fallbacks, written = self.notes.fallbacks, self.intake.ring16.written
        return report.counters(self.c, self.source, self.intake.converter, fallbacks, written, self.control_stats)

    def status(self) -> dict[str, Any]:
        """Read-only snapshot for /synthmatch/status (called from the control server's thread)."""
        return report.status(
            mode=self.mode,
            frozen=self.frozen,
            armed=self.capture.armed,
            level_db=self.intake.onset.level_db,
            names=self.contract.names,
            values=self.outlet.last_values,
            note_fields=self.outlet.note_fields,
            counters=self.counters(),
        )

    def status_line(self) -> str:
        return report.status_line(
            level_db=self.intake.onset.level_db,
            mode=self.mode,
            frozen=self.frozen,
            armed=self.capture.armed,
            values=self.outlet.last_values,
            latency_ms=self.c.latency_ms,
            updates=self.c.updates,
        )
