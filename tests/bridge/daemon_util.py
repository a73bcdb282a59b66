"""Helpers for the daemon's tests: test audio from the reference synth, an in-process daemon run."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

SR = 16000


def loud_patches(contract, n: int, seed: int = 3) -> np.ndarray:
    """n random patches made clearly audible (fast attack, open filters, oscillators up): (n, 16)."""
    from synthmatch.training.synths.sampling import sample_params

    v = np.array(sample_params(contract, seed, np.arange(n)), dtype=np.float32)
    names = list(contract.names)
    for name, value in (
        ("env_attack", 0.02),
        ("osc1_gain", 0.9),
        ("osc2_gain", 0.6),
        ("osc3_gain", 0.4),
        ("filter1_cutoff", 0.85),
        ("filter2_cutoff", 0.05),
        ("reverb_mix", 0.2),
    ):
        v[:, names.index(name)] = value
    return v


def render(contract, values: np.ndarray) -> np.ndarray:
    torch = pytest.importorskip("torch")  # the reference synth: a test needing it skips in a runtime-only venv

    from synthmatch.training.synths.reference import ReferenceSynth

    with torch.no_grad():
        return ReferenceSynth(contract).render(torch.as_tensor(values)).numpy().astype(np.float32)


def notes_file(path, contract, starts, total, seed: int = 3) -> np.ndarray:
    """Write a 16 kHz float WAV with one rendered note at each start sample; returns the signal."""
    from synthmatch.bridge.core import audiofile

    notes = render(contract, loud_patches(contract, len(starts), seed))
    x = np.zeros(total, np.float32)
    for s, a in zip(starts, notes):
        m = min(a.size, total - s)
        x[s : s + m] += a[:m]
    audiofile.write(path, x, SR)
    return x


# SIGTERM/SIGHUP to exit, s: the worker's join (0.8 s) and the control server's (0.7 s) bound it; a hang
# (what these tests are for) never ends. Kept above the sum because a loaded CI machine adds to it.
SHUTDOWN_S = 2.0


def bridge_cmd(*args) -> list[str]:
    """`synthmatch bridge ARGS` as a subprocess command line."""
    return [sys.executable, "-m", "synthmatch.bridge.cli", "bridge", *args]


def exit_counters(stderr: str) -> dict:
    """The counters `synthmatch bridge` prints on stderr as it exits."""
    return json.loads(stderr.split("synthmatch bridge: counters ", 1)[1].splitlines()[0])


@contextlib.contextmanager
def running_bridge(*args: str, timeout: float = 30.0):
    """`synthmatch bridge ARGS` (stdout and stderr piped) once it has logged "bridge running"; killed on
    leaving if it still runs."""
    p = subprocess.Popen(bridge_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line, deadline = "", time.monotonic() + timeout
        while "bridge running" not in line:
            line = p.stderr.readline()
            assert line and time.monotonic() < deadline, "daemon did not start"
        yield p
    finally:
        if p.poll() is None:
            p.kill()


def sigterm_bridge(p) -> tuple[float, str, dict]:
    """SIGTERM a running `synthmatch bridge` subprocess (stderr piped) -> (seconds until it exited, its
    stderr, its exit counters); it must exit with status 0."""
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:  # a hang: show where every thread of it is (bridge.daemon's SIGUSR1)
        p.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        p.kill()
        pytest.fail(f"no exit 10 s after SIGTERM; its threads and stderr:\n{p.communicate()[1][-6000:]}")
    elapsed = time.monotonic() - t0
    err = p.stderr.read()
    assert p.returncode == 0, err
    return elapsed, err, exit_counters(err)


def make_config(contract, **sections):
    """A BridgeConfig from nested dicts, e.g. make_config(c, mode="trigger", input={"source": ...})."""
    from synthmatch.bridge.live import config

    data = {"control": {"enabled": False}, "log": {"status_line": False}}
    for k, v in sections.items():
        if isinstance(v, dict) and isinstance(data.get(k), dict):
            data[k] = {**data[k], **v}
        else:
            data[k] = v
    return config.from_dict(data, contract=contract)


def run_daemon(cfg, contract, engine, commands=None, timeout: float = 60.0, matcher=None):
    """Run the daemon on cfg's (file) input until the input ends; returns (daemon, taps, printed lines).

    taps: (start position, analysed window copy, raw model output) per inference.
    """
    from synthmatch.bridge.audio.input import open_source
    from synthmatch.bridge.live.daemon import Daemon
    from synthmatch.bridge.outputs.printer import PrintSink

    out = io.StringIO()
    taps: list[tuple[int, np.ndarray, np.ndarray]] = []
    source = open_source(cfg.input)
    d = Daemon(
        cfg,
        contract,
        engine,
        [PrintSink(contract, stream=out)],
        source,
        commands=commands,
        window_tap=lambda s, w, v: taps.append((s, w.copy(), v.copy())),
        matcher=matcher,
    )
    d.start()
    try:
        assert d.done.wait(timeout), "daemon did not finish its file input in time"
    finally:
        d.stop()
        source.stop()
    assert d.error is None, d.error
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return d, taps, lines
