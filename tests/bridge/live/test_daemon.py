"""The daemon end to end with real parts: file input through the ring, onset detection, the exported
model (tiny_onnx), print/OSC sinks, the control queue; the CLI as a subprocess for signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from synthmatch.bridge.audio.onset import OnsetSettings, offline_onsets
from synthmatch.bridge.core import audiofile
from tests.bridge.daemon_util import (
    SHUTDOWN_S,
    SR,
    bridge_cmd,
    exit_counters,
    make_config,
    notes_file,
    run_daemon,
    running_bridge,
    sigterm_bridge,
)

N = 64000


@pytest.fixture(scope="module")
def three_notes(tmp_path_factory, c):
    path = tmp_path_factory.mktemp("audio") / "three.wav"
    starts = [8000, 8000 + 5 * SR + 123, 8000 + 10 * SR + 777]
    x = notes_file(path, c, starts, 16 * SR)
    return path, starts, x


def test_trigger_three_notes_three_snapshots_equal_offline_inference(c, engine, three_notes):
    path, starts, x = three_notes
    cfg = make_config(c, mode="trigger", input={"source": f"file:{path}", "fast": True, "blocksize": 512})
    d, taps, lines = run_daemon(cfg, c, engine)
    assert len(lines) == 3 and len(taps) == 3
    expected_onsets = offline_onsets(x, cfg.onset, SR)
    assert [t[0] for t in taps] == expected_onsets
    for (start, window, values), line, true_start in zip(taps, lines, starts):
        assert 0 <= start - true_start <= 16  # the rendered note's first audible sample
        np.testing.assert_array_equal(window, x[start : start + N])
        # the daemon's inference at the window's detected note equals the offline call (notes.normalise,
        # default "off": the raw window)
        offline = d.notes.infer(engine, x[start : start + N], line["note"]["midi"])
        np.testing.assert_allclose(values, offline, atol=1e-6)
        absolute = [i for i, p in enumerate(c.params) if p.unit != "semitones"]
        np.testing.assert_allclose(values[absolute], engine.infer(x[start : start + N][None])[0][absolute], atol=1e-5)
        sent = np.array([line["values"][n] for n in c.names])
        np.testing.assert_allclose(sent, np.clip(offline, 0, 1), atol=1e-5)  # print rounds to 5 digits
        assert line["mode"] == "trigger" and line["latency_ms"] >= 0
    assert d.c.captures_padded == 0 and d.counters()["ring_overflows"] == 0


@pytest.mark.parametrize("block", [1, 63, 64, 65, 4097])
def test_analysed_window_is_sample_identical_to_the_file_slice(c, engine, tmp_path, block):
    path = tmp_path / "one.wav"
    x = notes_file(path, c, [4321], 4321 + N + 2000, seed=block)
    cfg = make_config(c, mode="trigger", input={"source": f"file:{path}", "fast": True, "blocksize": block})
    d, taps, lines = run_daemon(cfg, c, engine)
    (onset,) = offline_onsets(x, OnsetSettings(), SR)
    assert [t[0] for t in taps] == [onset] and len(lines) == 1
    np.testing.assert_array_equal(taps[0][1], x[onset : onset + N])


def test_continuous_mode_gates_silence_and_smooths(c, engine, three_notes):
    path, starts, x = three_notes
    cfg = make_config(
        c,
        mode="continuous",
        input={"source": f"file:{path}", "fast": True},
        continuous={"follow": "window", "hop_s": 0.25, "smoothing_s": 0.5, "deadband": 0.0, "max_rate_hz": 0},
    )
    d, taps, lines = run_daemon(cfg, c, engine)
    # the gate (silence after notes 1 and 3, then the end of input) ends the note held at that moment;
    # note 2 runs into note 3's onset without silence, so it changes note without a note-off line
    held, offs = None, []
    for ln in lines:
        if "note_off" in ln:
            offs.append((ln["note_off"], held))
            held = None
        elif ln.get("note", {}).get("new"):
            held = ln["note"]["midi"]
    assert len(offs) >= 2 and all(off == was for off, was in offs), offs
    lines = [ln for ln in lines if "note_off" not in ln]
    hops = (x.size - N) // int(0.25 * SR) + 1
    assert d.c.inferences + d.c.gated + d.c.held == hops  # every hop accounted for (catch-up with --fast)
    assert d.c.gated > 0 and len(lines) == d.c.updates > 0
    # each window ends on a hop boundary and is the file's slice
    for start, window, _ in taps:
        assert (start + N) % int(0.25 * SR) == 0
        np.testing.assert_array_equal(window, x[start : start + N])
    # one-pole smoothing: the first update is the raw output, later ones move part of the way
    raw = np.array([t[2] for t in taps])
    sent = np.array([[ln["values"][n] for n in c.names] for ln in lines])
    np.testing.assert_allclose(sent[0], raw[0], atol=1e-5)
    a = 1 - np.exp(-0.25 / 0.5)
    np.testing.assert_allclose(sent[1], sent[0] + a * (raw[1] - sent[0]), atol=2e-5)


def test_garbage_input_sends_no_garbage(c, engine, tmp_path):
    rng = np.random.default_rng(1)
    x = np.zeros(9 * SR, np.float32)
    x[SR : 2 * SR] = np.nan
    x[2 * SR : 3 * SR] = rng.choice([np.inf, -np.inf, 0.5], size=SR)
    x[3 * SR : 5 * SR] = np.sign(np.sin(np.arange(2 * SR) * 0.05)) * 8.0  # badly clipped square
    x[5 * SR : 7 * SR] = 0.5 + 0.01 * rng.standard_normal(2 * SR)  # DC offset with a little noise
    path = tmp_path / "garbage.wav"
    audiofile.write(path, x, SR)
    for mode in ("continuous", "trigger"):
        cfg = make_config(c, mode=mode, input={"source": f"file:{path}", "fast": True}, continuous={"max_rate_hz": 0})
        d, taps, lines = run_daemon(cfg, c, engine)
        assert d.intake.converter.nonfinite >= SR and d.intake.converter.clipped > 0
        for _, window, _ in taps:
            assert np.all(np.isfinite(window)) and np.abs(window).max() <= 1.0
        for ln in lines:  # note-off lines (the gate ends a held note) carry no values
            assert "note_off" in ln or all(0.0 <= v <= 1.0 for v in ln["values"].values())
        assert d.c.bad_outputs == 0


def test_silence_sends_nothing(c, engine, tmp_path):
    path = tmp_path / "silence.wav"
    audiofile.write(path, np.zeros(6 * SR, np.float32), SR)
    for mode in ("continuous", "trigger"):
        cfg = make_config(c, mode=mode, input={"source": f"file:{path}", "fast": True})
        d, taps, lines = run_daemon(cfg, c, engine)
        assert lines == [] and taps == [] and d.c.onsets == 0
    assert d.c.inferences == 0


def test_freeze_and_mode_switch_from_the_control_queue(c, engine, three_notes):
    from synthmatch.bridge.live.control import CommandQueue, ControlCommand

    path, _, _ = three_notes
    q = CommandQueue()
    q.put(ControlCommand("freeze", True))
    cfg = make_config(c, mode="continuous", input={"source": f"file:{path}", "fast": True})
    d, taps, lines = run_daemon(cfg, c, engine, commands=q)
    assert lines == [] and d.c.held > 0 and d.frozen
    q.put(ControlCommand("mode", "trigger"))
    d, taps, lines = run_daemon(cfg, c, engine, commands=q)
    assert d.mode == "trigger" and len(lines) == 3


def test_manual_capture_armed_over_osc(c, engine, tmp_path):
    """Real-time file input; an OSC /synthmatch/trigger over UDP arms the capture of the next note."""
    from pythonosc.udp_client import SimpleUDPClient

    from synthmatch.bridge.audio.input import open_source
    from synthmatch.bridge.live.control import CommandQueue, ControlServer
    from synthmatch.bridge.live.daemon import Daemon

    path = tmp_path / "two.wav"
    x = notes_file(path, c, [int(0.1 * SR), int(1.0 * SR)], int(1.5 * SR))
    x[int(0.5 * SR) : int(1.0 * SR)] = 0.0  # the first note stops: the detector re-arms
    audiofile.write(path, x, SR)
    cfg = make_config(c, mode="manual", input={"source": f"file:{path}"}, onset={"holdoff_s": 0.1})
    q = CommandQueue()
    got = []
    with ControlServer("127.0.0.1", 0, q) as server:
        source = open_source(cfg.input)

        class Collect:
            def send(self, u):
                got.append(u)
                return 1

            def close(self):
                pass

            def maintain(self):
                pass

        d = Daemon(cfg, c, engine, [Collect()], source, commands=q)
        d.start()
        time.sleep(0.5)  # the first note (0.1 s) passed unarmed
        SimpleUDPClient(*server.address).send_message("/synthmatch/trigger", [])
        assert d.done.wait(10)
        d.stop()
        source.stop()
    assert d.c.onsets == 2 and len(got) == 1 and got[0].mode == "manual"
    assert d.c.captures_padded == 1  # the file ends 0.5 s after the note: zero-padded


def test_sigterm_shuts_down_promptly_and_prints_counters(c, tiny_onnx, three_notes):
    path, _, _ = three_notes
    args = ("--input", f"file:{path}", "--model", str(tiny_onnx), "--mode", "continuous", "--print")
    with running_bridge(*args, "--set", "control.port=0") as p:
        time.sleep(0.3)
        elapsed, err, counters = sigterm_bridge(p)
    assert elapsed < SHUTDOWN_S, f"shutdown took {elapsed:.2f} s"
    assert counters["samples_16k"] > 0 and counters["input_overflows"] == 0


def test_sigusr1_dumps_every_thread_and_the_bridge_runs_on(c, tiny_onnx, three_notes):
    path, _, _ = three_notes
    args = ("--input", f"file:{path}", "--model", str(tiny_onnx), "--mode", "continuous", "--print")
    with running_bridge(*args, "--set", "control.port=0") as p:
        p.send_signal(signal.SIGUSR1)
        dump = [p.stderr.readline() for _ in range(3)]
        assert p.poll() is None  # still running
        _, err, _ = sigterm_bridge(p)
    assert any(d.startswith(("Thread 0x", "Current thread 0x")) for d in dump), dump
    frames = "".join(dump) + err
    assert " in _run_guarded\n" in frames and "Current thread 0x" in frames, frames  # the worker and main


def test_corrupt_model_is_a_clear_error(tmp_path, three_notes):
    path, _, _ = three_notes
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    r = subprocess.run(
        bridge_cmd("--input", f"file:{path}", "--model", str(bad), "--check"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "bad.onnx" in r.stderr
    r = subprocess.run(
        bridge_cmd("--model", str(tmp_path / "missing.onnx"), "--check"), capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "missing.onnx" in r.stderr


class _Lines:
    """Lines of a subprocess's stdout collected on a thread."""

    def __init__(self, stream):
        import threading

        self.lines: list[str] = []
        self._t = threading.Thread(target=lambda: [self.lines.append(ln) for ln in stream], daemon=True)
        self._t.start()

    def wait(self, n: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while len(self.lines) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.lines)


@pytest.mark.jack
@pytest.mark.slow
def test_captures_through_jack_and_recovers_when_jackd_is_killed(jack_server, c, tiny_onnx, tmp_path):
    """The daemon records from JACK's "system" device via sounddevice while a second JACK client plays
    a rendered note into its input ports; jackd is killed and restarted; updates resume."""
    loop = tmp_path / "loop.wav"
    notes_file(loop, c, [0], 2 * SR)
    env = jack_server.env

    def player():
        p = subprocess.Popen(
            [sys.executable, "-m", "tests.bridge.jack_player", str(loop), "player"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert p.stdout.readline().strip() == "playing"
        jack_server.wait_for_port("synthmatch:in_0", 15)
        jack_server.connect("player:out_0", "synthmatch:in_0")
        jack_server.connect("player:out_0", "synthmatch:in_1")
        return p

    d = subprocess.Popen(
        bridge_cmd(
            "--input",
            "system",
            "--model",
            str(tiny_onnx),
            "--mode",
            "continuous",
            "--print",
            "--set",
            "control.port=0",
            "--set",
            "continuous.hop_s=0.25",
            "--set",
            "continuous.deadband=0",
            "--set",
            "continuous.max_rate_hz=0",
        ),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    p = None
    try:
        p = player()
        out = _Lines(d.stdout)
        assert out.wait(2, 20) >= 2, "no updates from JACK input"
        first = json.loads(out.lines[0])
        assert first["mode"] == "continuous" and len(first["values"]) == 16
        jack_server.kill()
        p.kill()
        p.wait()
        time.sleep(0.5)
        jack_server.start()
        n0 = len(out.lines)
        p = player()
        assert out.wait(n0 + 2, 20) >= n0 + 2, "no updates after jackd came back"
        d.send_signal(signal.SIGTERM)
        d.wait(5)
    finally:
        for proc in (p, d):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    err = d.stderr.read()
    assert d.returncode == 0, err[-2000:]
    counters = exit_counters(err)
    assert counters["device_lost"] >= 1 and counters["reconnects"] >= 1
    assert "lost" in err and "back" in err


def test_idle_worker_sleeps_until_the_next_window_can_arrive(c, engine, tmp_path):
    """The wake-up plan: long sleeps while a window is far off, fine polling when it may complete."""
    from synthmatch.bridge.audio.input import open_source
    from synthmatch.bridge.live import daemon as daemon_mod
    from synthmatch.bridge.live.daemon import Daemon

    path = tmp_path / "quiet.wav"
    audiofile.write(path, np.zeros(SR, np.float32), SR)
    plans = {}
    for name, sections in {
        "continuous": dict(mode="continuous", continuous={"follow": "window"}),  # first window: the 4 s one
        "trigger": dict(mode="trigger"),
        "fast": dict(mode="continuous", input={"source": f"file:{path}", "fast": True}),
    }.items():
        cfg = make_config(c, **{"input": {"source": f"file:{path}"}, **sections})
        d = Daemon(cfg, c, engine, [], open_source(cfg.input))
        d.intake.block_s = 256 / 48000  # blocks of 5.3 ms have been arriving
        plans[name] = d
    d = plans["continuous"]
    assert d._idle_sleep() == daemon_mod.FAR_SLEEP_S  # 4 s of audio still to come
    d.intake.ring16.write(np.zeros(d.n - int(0.0095 * SR), np.float32))  # 9.5 ms short of the first window
    assert d._idle_sleep() == pytest.approx(0.0095 - 256 / 48000 - daemon_mod.WAKE_EARLY_S, abs=1e-4)
    d.intake.ring16.write(np.zeros(int(0.004 * SR), np.float32))  # 5.5 ms short: inside a block of arrival
    assert d._idle_sleep() == daemon_mod.NEAR_SLEEP_S
    assert plans["trigger"]._idle_sleep() == daemon_mod.IDLE_SLEEP_S  # nothing pending: no deadline
    plans["trigger"].capture.pending = (0, 0.0)
    assert plans["trigger"]._idle_sleep() == daemon_mod.FAR_SLEEP_S
    assert plans["fast"]._idle_sleep() == daemon_mod.IDLE_SLEEP_S  # no capture clock with --fast
