"""`synthmatch bridge` as a process: config from file and flags, open the model, matcher, input, outputs
and control inputs, run the worker (bridge/live/daemon.py's Daemon), keep the main thread's status line and
periodic counters, stop on a signal, print the exit counters.

Signals are handled from the first line of `main`: while starting, SIGTERM/SIGINT/SIGHUP raise Shutdown
(everything opened so far is closed, exit 0); once running, one stops the loop. SIGUSR1 prints every
thread's stack on stderr. cli.py reaches `main` as synthmatch.bridge.live.serve:main.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging
import math
import signal
import sys
import threading
import time
from typing import Any, Callable

from synthmatch.bridge.audio.input import open_source
from synthmatch.bridge.live.config import MODES
from synthmatch.bridge.live.daemon import Daemon
from synthmatch.bridge.live.report import exit_report

log = logging.getLogger("synthmatch.bridge")

STATUS_EVERY_S = 0.2  # terminal status line refresh, s


def config_from_args(args):
    """Config file + CLI flags -> BridgeConfig (flags win)."""
    from synthmatch.bridge.core.errors import UsageError
    from synthmatch.bridge.live import config as config_mod

    over: dict[str, Any] = {}
    origins: dict[str, str] = {}  # key -> the flag that set it, for error messages
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: write KEY=VALUE, e.g. --set continuous.hop_s=0.1")
        over[key.strip()] = config_mod.parse_value(value.strip())
        origins[key.strip()] = f"--set {item}"
    if isinstance(over.get("input.source"), int) and not isinstance(over["input.source"], bool):
        over["input.source"] = str(over["input.source"])  # a device index, as `synthmatch devices` lists it
    if args.input is not None:
        over["input.source"] = args.input
        origins["input.source"] = f"--input {args.input}"
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
        origins["output.midi.port"] = f"--midi-port {args.midi_port}"
    if getattr(args, "channel", None) is not None:
        over["output.midi.channel"] = args.channel
        origins["output.midi.channel"] = f"--channel {args.channel}"
    if getattr(args, "profile", None) is not None:
        over["output.profile"] = args.profile
        origins["output.profile"] = f"--profile {args.profile}"
    if args.osc is not None:
        host, _, port = args.osc.rpartition(":")
        over["output.osc.enabled"] = True
        if host:
            over["output.osc.host"] = host
        try:
            over["output.osc.port"] = int(port)
        except ValueError:
            raise UsageError(f"--osc {args.osc!r}: give [HOST:]PORT, e.g. --osc 127.0.0.1:9000") from None
        origins["output.osc.port"] = origins["output.osc.host"] = f"--osc {args.osc}"
    if args.print:
        over["output.print.enabled"] = True
    if args.no_control:
        over["control.enabled"] = False
    if args.refine_budget is not None:
        over["refine.budget_ms"] = args.refine_budget
    source = str(over.get("input.source", ""))
    if source.startswith("file:") and "mode" not in over:
        # a file is most often one note (a one-shot): trigger mode answers each note it holds, where
        # continuous mode would gate a decaying one-shot to silence and print nothing
        over["mode"] = "trigger"
        origins["mode"] = "file input (trigger mode unless --mode is given)"
    return config_mod.load(args.config, over, origins=origins)


def _open_matcher(cfg, contract, meta):
    """The live matcher (bridge/match/search.py), warmed up, or None: refine.budget_ms = 0, or a model trained
    on another synth than the reference one (the reference synth cannot judge a plugin's sound)."""
    if not cfg.refine.budget_ms:
        return None
    if meta.synth != "reference":
        log.info("refine: off (the model was trained on %s; only the reference synth judges answers)", meta.synth)
        return None
    from synthmatch.bridge.match.search import MatchConfig, Matcher

    matcher = Matcher(contract, MatchConfig(budget_ms=cfg.refine.budget_ms, keep_margin=cfg.refine.keep_margin))
    matcher.warm()
    return matcher


def _load(path: str, contract, backend: str, threads: int | None, performance: bool = False):
    """load_engine on a config's model path, a contract mismatch advising the bridge's config key (the
    loader's own advice names match's --contract flag)."""
    from synthmatch.bridge.engines import ContractMismatch, load_engine
    from synthmatch.bridge.live.config import resolve_path

    try:
        return load_engine(resolve_path(path), backend, contract, threads, performance=performance)
    except ContractMismatch as e:
        text = str(e)
        cut = text.find("; re-export the model")
        raise ContractMismatch(
            f"{text[:cut] if cut >= 0 else text}; re-export the model from a checkpoint "
            "trained on this contract, or point the bridge at the contract it was trained "
            'with: contract = "PATH" in the config, or --set contract=\'"PATH"\''
        ) from None


def _open_engine(cfg, contract, backend: str | None = None):
    """The model on cfg.backend (or `backend`), checked against the contract."""
    engine = _load(cfg.model, contract, backend or cfg.backend, cfg.threads or None)
    m = engine.meta
    if m.sample_rate != contract.audio.sample_rate or m.num_samples != contract.audio.num_samples:
        from synthmatch.bridge.core.errors import UsageError

        raise UsageError(
            f"{cfg.model}: model expects {m.num_samples} samples at {m.sample_rate} Hz, the "
            f"contract {contract.audio.num_samples} at {contract.audio.sample_rate} Hz"
        )
    return engine


def _open_perf(cfg, contract, engines: list):
    """Continuous mode's performance model (continuous.model, follow = "held") on cfg.backend, checked as
    one (a short window; bridge.core.modelfile.check_contract), appended to `engines`; None when off."""
    if cfg.continuous.follow != "held" or not cfg.continuous.model:
        return None
    from synthmatch.bridge.engines import ModelError

    # one ONNX Runtime thread unless set: on its 0.4 s window one is as fast (3.6 ms), and the default pool
    # spins between the 50 ms hops: 24 ms of CPU a call against 3.9 ms (measured, 2 cores)
    try:
        engine = _load(cfg.continuous.model, contract, cfg.backend, cfg.threads or 1, performance=True)
    except ModelError as e:
        raise type(e)(f'continuous.model: {e}; or set continuous.model = "" to play without it') from None
    engines.append(engine)
    return engine


def _fallback(cfg, contract, engine, engines: list) -> Callable[[], Any] | None:
    """What the daemon falls back to after engine errors in a row: with backend = "auto" and another
    backend chosen, an opener of onnxruntime (the CPU reference; what it opens is appended to `engines`,
    closed at exit); else None (the daemon exits 2)."""
    if cfg.backend != "auto" or engine.name == "onnxruntime":
        return None

    def open_onnxruntime():
        e = _open_engine(cfg, contract, backend="onnxruntime")
        engines.append(e)
        return e

    return open_onnxruntime


def _close_engines(engines: list) -> None:
    """Close every engine opened (a failed GPU engine may raise as it closes: logged)."""
    for e in reversed(engines):
        try:
            e.close()
        except Exception as err:  # a broken engine must not keep the others open or hide the exit report
            log.warning("closing the %s engine: %s", getattr(e, "name", "?"), err)


def _open_control(cfg, commands, status: Callable[[], dict]) -> list:
    """Start the OSC control server and the MIDI footswitch if enabled; objects with close()."""
    from synthmatch.bridge.live import control, footswitch

    out: list = []
    if cfg.control.enabled:
        out.append(
            control.ControlServer(cfg.control.host, cfg.control.port, commands, status=status, modes=MODES).start()
        )
    fs = cfg.control.footswitch
    if fs.enabled:
        import rtmidi

        from synthmatch.bridge.outputs.midiports import MidiPortError

        try:
            out.append(footswitch.MidiTrigger(commands, port=fs.port, cc=fs.cc, channel=fs.channel, api=fs.api))
        except BaseException as e:
            for o in out:
                o.close()
            if isinstance(e, (MidiPortError, rtmidi.RtMidiError)):
                raise _midi_error("control.footswitch", e, "control.footswitch.enabled = false") from None
            raise
    return out


class Shutdown(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT/SIGHUP while the bridge is still starting, so a slow
    step (a TensorRT build, say) is abandoned at once and everything
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

    from synthmatch.bridge.outputs import build_sinks
    from synthmatch.bridge.outputs.midiports import MidiPortError

    try:
        return build_sinks(cfg.output, contract)
    except (MidiPortError, rtmidi.RtMidiError) as e:
        raise _midi_error("output.midi", e, "output.midi.api") from None


def _midi_error(key: str, e: Exception, or_set: str):
    """The UsageError for a MIDI port that cannot be opened under config key `key`."""
    from synthmatch.bridge.core.errors import UsageError

    text = str(e)
    if "ambiguous" in text:  # the server answered and listed the candidates: more of the name is the fix
        return UsageError(f"{key}: {text} (`synthmatch devices` lists the ports)")
    if "no MIDI" in text and "matches" in text:  # the server answered; the port is not among its ports
        return UsageError(f"{key}: {text}; start the synth first, or pick a port from that list")
    return UsageError(
        f"{key}: {text}; start the JACK server (or load the ALSA sequencer: sudo modprobe snd-seq), pick a "
        f'port from `synthmatch devices`, or set {or_set} (under PipeWire: api = "alsa")'
    )


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
    engines = [engine]  # and the performance model, and the fallback if the daemon switches to it
    stack.callback(_close_engines, engines)
    perf_engine = _open_perf(cfg, contract, engines)
    if args.check:  # the outputs are opened exactly as the run opens them (a missing MIDI port fails here)
        outputs = _open_sinks(cfg, contract)
        for s in outputs:
            _closer(stack, s)
        names = ", ".join(type(s).__name__ for s in outputs) or "none"
        perf = f"; performance model {cfg.continuous.model}: ok ({perf_engine.name})" if perf_engine else ""
        print(
            f"config {cfg.source}: ok; model {cfg.model}: ok ({engine.name}, contract "
            f"{engine.meta.contract_hash}){perf}; outputs: {names}: ok"
        )
        return 0

    matcher = _open_matcher(cfg, contract, engine.meta)
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
    daemon = Daemon(
        cfg,
        contract,
        engine,
        sinks,
        source,
        commands,
        matcher=matcher,
        fallback=_fallback(cfg, contract, engine, engines),
        perf_engine=perf_engine,
    )
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
    return exit_report(daemon.counters(), daemon.c, daemon.error, daemon.fatal)
