"""Fault injection into the live worker (issue 22): engines that raise now and then or always, sinks that
raise on send or on their port check. Real parts everywhere else: file input through the ring, the
exported model (tiny_onnx) on ONNX Runtime, the print sink; the CLI as a subprocess for the exit status.

Nothing an engine or a sink raises may end the show: the window or the send is dropped and counted, the
next window tried. ENGINE_FAILURES_MAX engine errors in a row switch to the fallback engine, or end the
daemon with one line and exit 2."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from pythonosc.osc_message_builder import BuildError

from synthmatch.bridge.live.inference import ENGINE_FAILURES_MAX
from synthmatch.bridge.live.report import exit_report
from tests.bridge.bad_models import write_raising_model
from tests.bridge.daemon_util import SR, bridge_cmd, exit_counters, make_config, notes_file

N = 64000
SECONDS = 12  # the test file: 12 s, a hop every 0.25 s -> (12 s - 4 s) / 0.25 s + 1 = 33 windows
WINDOWS = (SECONDS * SR - N) // (SR // 4) + 1


@pytest.fixture(scope="module")
def notes(tmp_path_factory, c) -> Path:
    path = tmp_path_factory.mktemp("audio") / "notes.wav"
    notes_file(path, c, [2000, 2000 + 4 * SR, 2000 + 8 * SR], SECONDS * SR)
    return path


class FlakyEngine:
    """A real engine with faults injected: every `every`-th call raises (0: none), or every call from
    call `broken_from` on (1-based; 0: never)."""

    def __init__(self, engine, every: int = 0, broken_from: int = 0, name: str = "flaky", error=RuntimeError):
        self.engine, self.every, self.broken_from, self.name, self.error = engine, every, broken_from, name, error
        self.calls = 0
        self.closed = False

    @property
    def meta(self):
        return self.engine.meta

    def infer(self, audio, notes=None):
        self.calls += 1
        if (self.every and self.calls % self.every == 0) or (self.broken_from and self.calls >= self.broken_from):
            raise self.error(f"injected fault at call {self.calls}\nsecond line of a long runtime message")
        return self.engine.infer(audio) if notes is None else self.engine.infer(audio, notes)

    def close(self):
        self.closed = True


class RaisingSink:
    """A sink that raises `error` on send (and, with on_maintain, in maintain)."""

    def __init__(self, error: Exception, on_maintain: bool = False):
        self.error, self.on_maintain = error, on_maintain
        self.sends = self.checks = 0

    def send(self, update):
        self.sends += 1
        raise self.error

    def maintain(self):
        self.checks += 1
        if self.on_maintain:
            raise self.error

    def close(self):
        pass


def continuous(c, path, **over):
    """Continuous mode on the file as fast as it is read, every hop analysed (no gate) and sent."""
    return make_config(
        c,
        mode="continuous",
        input={"source": f"file:{path}", "fast": True},
        continuous={"follow": "window", "hop_s": 0.25, "deadband": 0.0, "max_rate_hz": 0, "gate_db": -200.0, **over},
    )


def run(cfg, c, engine, sinks=(), fallback=None, timeout: float = 60.0):
    """The daemon on cfg's file input until it ends (or the worker gives up) -> (daemon, printed updates;
    note-offs left out)."""
    from synthmatch.bridge.audio.input import open_source
    from synthmatch.bridge.live.daemon import Daemon
    from synthmatch.bridge.outputs.printer import PrintSink

    out = io.StringIO()
    source = open_source(cfg.input)
    d = Daemon(cfg, c, engine, [*sinks, PrintSink(c, stream=out)], source, fallback=fallback)
    d.start()
    try:
        assert d.done.wait(timeout), "the worker neither finished the file nor gave up in time"
    finally:
        d.stop()
        source.stop()
    assert d.error is None, d.error  # never "worker stopped by an error"
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return d, [ln for ln in lines if "note_off" not in ln]


# ---- engine faults --------------------------------------------------------------------------------


def test_an_engine_failing_one_call_in_ten_keeps_the_updates_flowing(c, engine, notes, caplog):
    flaky = FlakyEngine(engine, every=10)
    with caplog.at_level(logging.WARNING, "synthmatch.bridge"):
        d, lines = run(continuous(c, notes), c, flaky)
    assert flaky.calls == WINDOWS  # every window was tried, the ones after a failure too
    assert d.c.engine_errors == WINDOWS // 10 and d.c.inferences == WINDOWS - WINDOWS // 10
    assert d.fatal is None and d.c.engine_fallbacks == 0
    assert d.c.updates + d.c.held == d.c.inferences and len(lines) == d.c.updates >= 0.8 * d.c.inferences
    assert all(0.0 <= v <= 1.0 for ln in lines for v in ln["values"].values())
    warned = [r.getMessage() for r in caplog.records if "inference failed" in r.getMessage()]
    assert len(warned) == WINDOWS // 10 and "RuntimeError: injected fault" in warned[0]
    assert "second line" not in warned[0]  # one line each


def test_engine_warnings_are_rate_limited(c, engine, notes, caplog):
    flaky = FlakyEngine(engine, every=2)  # never ENGINE_FAILURES_MAX in a row: runs to the end
    with caplog.at_level(logging.WARNING, "synthmatch.bridge"):
        d, lines = run(continuous(c, notes), c, flaky)
    assert d.c.engine_errors == WINDOWS // 2 and d.fatal is None and lines
    warned = [r for r in caplog.records if "inference failed" in r.getMessage()]
    assert len(warned) < 10 < d.c.engine_errors, len(warned)


def test_failures_in_a_row_end_the_daemon_with_one_line_and_exit_2(c, engine, notes, capsys):
    flaky = FlakyEngine(engine, broken_from=4)
    d, lines = run(continuous(c, notes), c, flaky)
    assert d.fatal is not None and d.c.engine_errors == ENGINE_FAILURES_MAX
    assert flaky.calls == 3 + ENGINE_FAILURES_MAX  # it gave up at once, not at the end of the file
    assert d.c.inferences == 3 and len(lines) == d.c.updates == 3
    assert exit_report(d.counters(), d.c, d.error, d.fatal) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("synthmatch bridge: error: inference failed 5 times in a row on the flaky backend")
    assert "RuntimeError: injected fault at call 8" in err[-1] and "--backend" in err[-1]
    assert json.loads(err[-2].split("counters ", 1)[1])["engine_errors"] == ENGINE_FAILURES_MAX


def test_failures_in_a_row_fall_back_to_the_other_engine(c, engine, notes):
    flaky = FlakyEngine(engine, broken_from=1, name="cuda")
    d, lines = run(continuous(c, notes), c, flaky, fallback=lambda: engine)
    assert d.fatal is None and d.engine is engine and d.c.engine_fallbacks == 1
    assert d.c.engine_errors == ENGINE_FAILURES_MAX and flaky.calls == ENGINE_FAILURES_MAX
    assert d.c.inferences == WINDOWS - ENGINE_FAILURES_MAX and len(lines) == d.c.updates > 0


def test_a_fallback_that_does_not_open_ends_the_daemon_naming_both(c, engine, notes):
    def broken():
        raise OSError("no such library")

    d, _ = run(continuous(c, notes), c, FlakyEngine(engine, broken_from=1, name="cuda"), fallback=broken)
    assert d.fatal is not None and "on the cuda backend" in d.fatal
    assert "the fallback did not open: OSError: no such library" in d.fatal and d.c.engine_fallbacks == 0


def test_the_fallback_is_onnxruntime_only_for_auto_and_another_backend(c, tiny_onnx):
    from synthmatch.bridge.live.serve import _close_engines, _fallback

    cfg = make_config(c, model=str(tiny_onnx))
    assert cfg.backend == "auto"
    gpu, cpu = FlakyEngine(None, name="cuda"), FlakyEngine(None, name="onnxruntime")
    assert _fallback(cfg, c, cpu, [cpu]) is None  # nothing to fall back to
    assert _fallback(make_config(c, model=str(tiny_onnx), backend="cuda"), c, gpu, [gpu]) is None  # asked for
    engines: list = [gpu]
    opened = _fallback(cfg, c, gpu, engines)()
    assert opened.name == "onnxruntime" and engines == [gpu, opened]
    assert opened.infer(np.zeros((1, N), np.float32)).shape == (1, len(c.names))
    _close_engines(engines)
    assert gpu.closed


# ---- sink faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        BuildError("Could not build the message: 'i' format requires -2147483648 <= number <= 2147483647"),
        RuntimeError("a sink's bug"),
        KeyError("track"),
        OSError(28, "No space left on device"),
    ],
    ids=["python-osc BuildError", "RuntimeError", "KeyError", "OSError"],
)
def test_a_sink_that_raises_is_counted_and_the_others_still_get_every_update(c, engine, notes, error, caplog):
    bad = RaisingSink(error)
    with caplog.at_level(logging.WARNING, "synthmatch.bridge"):
        d, lines = run(continuous(c, notes), c, engine, sinks=[bad])
    assert d.fatal is None and d.c.updates == len(lines) > 10
    # every update (and the note-off at the end) reached the bad sink, and failed there
    assert bad.sends == d.c.send_failures >= d.c.updates
    warned = [r for r in caplog.records if "RaisingSink failed" in r.getMessage()]
    assert 0 < len(warned) < 10 and type(error).__name__ in warned[0].getMessage()


def test_a_sink_whose_port_check_raises_is_counted_not_fatal(c, engine, notes):
    """The idle worker checks the sinks' ports (maintain); one that raises there is counted, the worker runs on."""
    from synthmatch.bridge.audio.input import open_source
    from synthmatch.bridge.live.daemon import Daemon

    cfg = make_config(c, mode="continuous", input={"source": f"file:{notes}"})  # real time: the worker idles
    bad = RaisingSink(RuntimeError("port check"), on_maintain=True)
    source = open_source(cfg.input)
    d = Daemon(cfg, c, engine, [bad], source)
    d.start()
    try:
        time.sleep(1.0)
        assert not d.done.is_set()  # still running
    finally:
        d.stop()
        source.stop()
    assert d.error is None and d.fatal is None
    assert bad.checks > 10 and d.c.send_failures == bad.checks + bad.sends


# ---- the CLI: a model that raises in ONNX Runtime on loud input -----------------------------------


NOTHING_SENT = r"error: no update was sent: 0 of 0 model outputs were rejected .*, 3 inferences failed"


@pytest.mark.parametrize(
    "mode, perf, says",
    [
        # without the performance model the 4 s network runs every hop: the fifth failure in a row ends it
        (
            "continuous",
            '""',
            rf"error: inference failed {ENGINE_FAILURES_MAX} times in a row on the onnxruntime backend",
        ),
        # with it, the 4 s network seeds the three notes only, and with no answer to start from nothing is sent
        ("continuous", '"models/performance.onnx"', NOTHING_SENT),
        ("trigger", '"models/performance.onnx"', NOTHING_SENT),
    ],
)
def test_a_model_raising_on_loud_input_is_one_line_and_exit_2(c, tmp_path, notes, mode, perf, says):
    model = write_raising_model(tmp_path / "raising.onnx", c)
    r = subprocess.run(
        bridge_cmd(
            "--input",
            f"file:{notes}",
            "--fast",
            "--mode",
            mode,
            "--print",
            "--no-control",
            "--model",
            str(model),
            "--set",
            f"continuous.model={perf}",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "worker stopped" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "synthmatch bridge: error" in ln]
    assert len(errors) == 1 and re.search(says, errors[0]), r.stderr
    counters = exit_counters(r.stderr)
    assert counters["updates"] == 0 and counters["engine_errors"] >= 3, counters
