"""Fixtures for the runtime's tests: a real JACK server (dummy driver), see tests/jack.py."""

from __future__ import annotations

import os
import sys

import pytest

from tests.jack import JackError, JackServer, JackXrun, missing_tools

JACK_RERUNS = 2


def pytest_collection_modifyitems(items):
    """A jack test that lost MIDI while jackd logged an xrun (JackXrun: the machine stalled a client
    past a cycle; tests/jack.py) runs again, up to JACK_RERUNS times (pytest-rerunfailures). Any other
    failure, lost MIDI without an xrun included, fails at once."""
    for item in items:
        if item.get_closest_marker("jack"):
            item.add_marker(pytest.mark.flaky(reruns=JACK_RERUNS, only_rerun=[JackXrun]))


@pytest.fixture(scope="session")
def jack(tmp_path_factory):
    """A running JACK server private to this test session; every JACK client in the session uses it.

    Skips (with the reason) when the Debian jackd2 tools are absent; fails when they are installed and
    the server cannot start.
    """
    missing = missing_tools()
    if missing:
        pytest.skip(f"JACK tools not installed ({', '.join(missing)}): apt-get install jackd2")
    server = JackServer(log=tmp_path_factory.mktemp("jack") / "jackd.log")
    saved = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    os.environ.update(JACK_DEFAULT_SERVER=server.name, JACK_NO_START_SERVER="1")
    try:
        server.start()
    except JackError as e:  # installed but not starting is a failure, not a skip: it would hide tests
        server.close()
        pytest.fail(f"jackd did not start: {e}", pytrace=False)
    yield server
    if "sounddevice" in sys.modules:
        # PortAudio may hold a client of this server; Pa_Terminate after the server is gone aborts the
        # process (tests/jack.py), so terminate it while the server still answers
        sys.modules["sounddevice"]._terminate()
    server.close()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def jack_server(jack, monkeypatch, tmp_path):
    """A private server for one test, which may kill()/restart() it; JACK clients created during the test
    (in this process via os.environ, subprocesses via `server.env`) use it. Stopped afterwards.

    Killing the session-wide `jack` instead would break later tests, and abort pytest at exit if
    sounddevice/PortAudio had attached to it (see tests/jack.py).
    """
    server = JackServer(log=tmp_path / "jackd.log")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", server.name)
    try:
        server.start()
    except JackError as e:  # installed but not starting is a failure, not a skip: it would hide tests
        server.close()
        pytest.fail(f"jackd did not start: {e}", pytrace=False)
    yield server
    server.close()
