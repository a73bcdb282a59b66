"""The bridge against a hostile user (issue 14): a fuzzed control port, signals at awkward moments, models
whose outputs are unusable, MIDI with no MIDI system. `synthmatch bridge` runs as a subprocess."""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from synthmatch.bridge.core import contract as contract_mod
from tests.bridge.bad_models import write_model
from tests.bridge.daemon_util import SHUTDOWN_S, SR, bridge_cmd, exit_counters, notes_file

MODES = ("trigger", "continuous", "manual")


@pytest.fixture(scope="module")
def long_notes(tmp_path_factory, c):
    """20 s with a note every 2 s: keeps a real-time daemon busy while it is attacked."""
    path = tmp_path_factory.mktemp("audio") / "long.wav"
    notes_file(path, c, [4000 + 2 * SR * k for k in range(10)], 20 * SR)
    return path


class Bridge:
    """`synthmatch bridge ARGS` with stderr collected on a thread (the OSC port and 'running' read off it)."""

    def __init__(self, *args: str):
        self.p = subprocess.Popen(bridge_cmd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        self._t = threading.Thread(target=lambda: [self.err.append(ln) for ln in self.p.stderr], daemon=True)
        self._t.start()

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.err):
                if m := re.search(pattern, line):
                    return m
            assert self.p.poll() is None, f"bridge exited ({self.p.returncode}):\n{self.stderr}"
            time.sleep(0.02)
        raise AssertionError(f"no {pattern!r} on stderr within {timeout} s:\n{self.stderr}")

    def signal(self, sig: int, timeout: float = 10.0) -> float:
        """Send sig -> seconds until the process exited."""
        t0 = time.monotonic()
        self.p.send_signal(sig)
        self.p.wait(timeout)
        elapsed = time.monotonic() - t0
        self._t.join(5)
        return elapsed

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(5)


def _osc(address: str, *args: tuple[str, object]) -> bytes:
    m = OscMessageBuilder(address)
    for tag, v in args:
        m.add_arg(v, tag)
    return m.build().dgram


def _fuzz_datagrams(rng: random.Random, n: int):
    """n datagrams: valid commands, bundles, and mutations of them (bit flips, truncation, random int32 at
    aligned offsets, which hits size fields: negative, huge, unaligned), plus random bytes."""
    valid = [
        _osc("/synthmatch/trigger"),
        _osc("/synthmatch/trigger", ("f", 1.0)),
        _osc("/synthmatch/freeze", ("i", 1)),
        _osc("/synthmatch/freeze", ("i", 0)),
        _osc("/synthmatch/mode", ("s", "continuous")),
        _osc("/synthmatch/mode", ("s", "trigger")),
        _osc("/synthmatch/mode", ("s", "manual")),
        _osc("/synthmatch/status"),
        _osc("/synthmatch/freeze", ("f", float("nan"))),
        _osc("/synthmatch/mode", ("b", b"\xff" * 7)),
    ]

    def bundle(elems):
        return b"#bundle\0" + struct.pack(">Q", 1) + b"".join(struct.pack(">i", len(e)) + e for e in elems)

    for _ in range(n):
        kind = rng.random()
        d = rng.choice(valid)
        if rng.random() < 0.4:
            d = bundle(rng.sample(valid, rng.randint(1, 3)))
            if rng.random() < 0.3:
                d = bundle([d])
        d = bytearray(d)
        if kind < 0.15:
            pass  # valid as it is
        elif kind < 0.45:
            for _ in range(rng.randint(1, 4)):
                d[rng.randrange(len(d))] ^= 1 << rng.randrange(8)
        elif kind < 0.65 and len(d) >= 8:
            off = rng.randrange(0, len(d) - 3, 4)
            d[off : off + 4] = struct.pack(
                ">i", rng.choice([-4, -1, -(2**31), 2**31 - 1, 3, 0, 4096, rng.randint(-99, 99)])
            )
        elif kind < 0.8:
            d = d[: rng.randrange(1, len(d) + 1)]
        elif kind < 0.9:
            d = bytearray(b"#bundle\0" + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64))))
        else:
            d = bytearray(rng.randbytes(rng.randrange(0, 200)))
        yield bytes(d)


def _status(port: int, timeout: float = 2.0) -> dict:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.25)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.sendto(_osc("/synthmatch/status"), ("127.0.0.1", port))
            try:
                data, _ = s.recvfrom(65536)
                return json.loads(OscMessage(data).params[0])
            except socket.timeout:
                continue  # the reply rate limit may have eaten one
        raise AssertionError(f"/synthmatch/status did not answer within {timeout} s")
    finally:
        s.close()


def test_fuzzed_control_port_keeps_the_daemon_answering_and_stoppable(c, tiny_onnx, long_notes):
    b = Bridge(
        "--input",
        f"file:{long_notes}",
        "--model",
        str(tiny_onnx),
        "--mode",
        "continuous",
        "--print",
        "--set",
        "control.port=0",
        "--set",
        "log.interval_s=0",
    )
    try:
        port = int(b.wait_for(r"control: OSC on 127\.0\.0\.1:(\d+)").group(1))
        b.wait_for("bridge running")
        deadline = time.monotonic() + 15
        while _status(port)["values"] is None:  # the first 4 s window: attack a daemon that is sending
            assert time.monotonic() < deadline, "no update within 15 s"
            time.sleep(0.1)
        rng = random.Random(14)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        sent, t0 = 0, time.monotonic()
        for d in _fuzz_datagrams(rng, 3000):
            s.sendto(d, ("127.0.0.1", port))
            sent += 1
            if sent % 20 == 0:
                time.sleep(0.02)  # ~3 s in all: the receive buffer keeps up, the worker keeps running
            if sent % 500 == 0:  # answers mid-attack too
                assert "counters" in _status(port)
        s.close()
        assert time.monotonic() - t0 < 15
        st = _status(port)
        assert st["mode"] in MODES and isinstance(st["frozen"], bool)
        assert len(st["values"]) == 16
        assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in st["values"].values()), st["values"]
        assert all(v is None or math.isfinite(v) for v in st["counters"].values() if not isinstance(v, str))
        counters = st["counters"]
        assert counters["control_malformed"] > 500 and counters["control_errors"] == 0, counters
        assert counters["control_received"] > 0.9 * sent
        assert b.p.poll() is None
        elapsed = b.signal(signal.SIGTERM)
    finally:
        b.kill()
    assert b.p.returncode == 0, b.stderr
    assert elapsed < SHUTDOWN_S, f"shutdown took {elapsed:.2f} s"
    final = exit_counters(b.stderr)
    assert final["control_malformed"] >= counters["control_malformed"]
    warned = [ln for ln in b.err if "control: ignored message" in ln]
    assert 0 < len(warned) < 60, f"{len(warned)} warnings: the attack flooded the log"  # rate-limited


# ---- signals while the matcher works -------------------------------------------------------------------


def test_sighup_stops_the_daemon_while_it_matches(tiny_onnx, long_notes):
    """The matcher runs in the worker thread (no child process any more): a signal mid-run stops it cleanly."""
    b = Bridge(
        "--input",
        f"file:{long_notes}",
        "--mode",
        "trigger",
        "--model",
        str(tiny_onnx),
        "--no-control",
        "--print",
        "--refine-budget",
        "500",
    )
    try:
        b.wait_for("bridge running")
        elapsed = b.signal(signal.SIGHUP)
    finally:
        b.kill()
    assert b.p.returncode == 0, b.stderr
    assert elapsed < SHUTDOWN_S and "synthmatch bridge: counters" in b.stderr
    assert "Traceback" not in b.stderr


# ---- model outputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, why",
    [
        ({"outputs": 15}, r"outputs shape \(1, 15\).*16 parameters"),
        ({"outputs": 17}, r"outputs shape \(1, 17\).*16 parameters"),
        ({"value": float("nan")}, "not finite"),
        ({"value": 5.0}, r"outside the normalised \[0, 1\]"),
    ],
)
def test_check_refuses_a_model_with_unusable_outputs(c, tmp_path, kw, why):
    model = write_model(tmp_path / "bad.onnx", c, **kw)
    r = subprocess.run(bridge_cmd("--model", str(model), "--check"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    err = [ln for ln in r.stderr.splitlines() if "synthmatch bridge: error" in ln]
    assert len(err) == 1 and re.search(why, err[0]) and "bad.onnx" in err[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("on_sound", ["nan", "range"])
def test_outputs_gone_bad_on_sound_are_never_sent_nor_counted_as_updates(c, tmp_path, on_sound):
    model = write_model(tmp_path / "bad.onnx", c, on_sound=on_sound)  # fine on silence: passes the load check
    path = tmp_path / "three.wav"
    notes_file(path, c, [8000, 8000 + 5 * SR, 8000 + 10 * SR], 16 * SR)
    r = subprocess.run(
        bridge_cmd(
            "--input", f"file:{path}", "--fast", "--mode", "trigger", "--print", "--no-control", "--model", str(model)
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.stdout == ""  # nothing printed (sent)
    counters = exit_counters(r.stderr)
    assert counters["inferences"] == 3 and counters["bad_outputs"] == 3 and counters["updates"] == 0, counters
    assert r.returncode == 2 and "no update was sent: 3 of 3 model outputs were rejected" in r.stderr, r.stderr


# ---- a MIDI output with no MIDI system; --seconds ---------------------------------------------------


def test_midi_output_without_jack_or_alsa_is_a_one_line_error(tiny_onnx, tmp_path):
    if Path("/dev/snd/seq").exists():
        pytest.skip("this machine has an ALSA sequencer")
    from synthmatch.bridge.core import audiofile

    audiofile.write(tmp_path / "quiet.wav", np.zeros(SR, np.float32), SR)
    env = {**os.environ, "JACK_DEFAULT_SERVER": f"none-{os.getpid()}", "JACK_NO_START_SERVER": "1"}
    r = subprocess.run(
        bridge_cmd(
            "--input",
            f"file:{tmp_path / 'quiet.wav'}",
            "--model",
            str(tiny_onnx),
            "--midi-port",
            "synth",
            "--no-control",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "output.midi:" in r.stderr and "start the JACK server" in r.stderr


@pytest.mark.parametrize("seconds", ["-1", "0", "nan"])
def test_seconds_must_be_positive(seconds):
    r = subprocess.run(bridge_cmd("--seconds", seconds, "--check"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--seconds" in r.stderr and "Traceback" not in r.stderr, r.stderr


# ---- in-process: manual "now" on silence, sinks that fail ----------------------------------------------


def _manual_now(c, engine, path, sinks) -> "object":
    """Play path in real time in manual mode, start = now; trigger once 1.5 s in; -> the daemon."""
    from synthmatch.bridge.audio.input import open_source
    from synthmatch.bridge.live.control import CommandQueue, ControlCommand
    from synthmatch.bridge.live.daemon import Daemon
    from tests.bridge.daemon_util import make_config

    cfg = make_config(c, mode="manual", manual={"start": "now"}, input={"source": f"file:{path}"})
    q = CommandQueue()
    source = open_source(cfg.input)
    d = Daemon(cfg, c, engine, sinks, source, commands=q)
    d.start()
    try:
        time.sleep(1.5)
        q.put(ControlCommand("trigger"))
        assert d.done.wait(10)
    finally:
        d.stop()
        source.stop()
    assert d.error is None, d.error
    return d


@pytest.mark.parametrize("fill", ["silence", "nan", "note"])
def test_manual_now_refuses_silent_or_nan_input_like_match(c, engine, tmp_path, fill):
    import io

    from synthmatch.bridge.core import audiofile
    from synthmatch.bridge.outputs.printer import PrintSink

    x = {"silence": np.zeros(2 * SR), "nan": np.full(2 * SR, np.nan)}.get(fill)
    path = tmp_path / f"{fill}.wav"
    if x is None:
        notes_file(path, c, [800], 2 * SR)
    else:
        audiofile.write(path, x.astype(np.float32), SR)
    out = io.StringIO()
    d = _manual_now(c, engine, path, [PrintSink(c, stream=out)])
    if fill == "note":  # the same path with sound in it sends its snapshot
        assert d.c.updates == 1 and d.c.silent_captures == 0 and len(out.getvalue().splitlines()) == 1
    else:
        assert d.c.updates == 0 and d.c.inferences == 0 and d.c.silent_captures == 1 and out.getvalue() == ""


def test_contract_mismatch_advice_names_what_the_bridge_accepts(tiny_onnx, tmp_path):
    text = contract_mod.DEFAULT_CONTRACT.read_text().replace("note_off_s = 3.0", "note_off_s = 2.5")
    other = tmp_path / "contract.toml"  # a valid contract with another hash
    other.write_text(text)
    r = subprocess.run(
        bridge_cmd("--model", str(tiny_onnx), "--set", f'contract="{other}"', "--check"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    line = [ln for ln in r.stderr.splitlines() if "error:" in ln][-1]
    assert "exported for contract" in line and "differs in: synth" in line, line
    assert "--contract" not in line and "--set contract=" in line, line


def test_an_update_every_sink_refused_is_a_failure_not_an_update(c, engine, tmp_path):
    """A sink made for 15 parameters raises on every 16-value update (the path a 15-output model took
    before the load check): the daemon counts a send failure, never an update."""
    import dataclasses
    import io

    from synthmatch.bridge.outputs.printer import PrintSink

    path = tmp_path / "note.wav"
    notes_file(path, c, [800], 2 * SR)
    out = io.StringIO()
    d = _manual_now(c, engine, path, [PrintSink(dataclasses.replace(c, params=c.params[:15]), stream=out)])
    assert d.c.inferences == 1 and d.c.send_failures == 1 and d.c.updates == 0 and out.getvalue() == ""


def test_file_input_that_is_a_directory_says_so(tiny_onnx, tmp_path):
    r = subprocess.run(
        bridge_cmd("--input", f"file:{tmp_path}", "--model", str(tiny_onnx), "--no-control"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"input: {tmp_path}: is a directory; give an audio file" in r.stderr
