"""`synthmatch devices` as a subprocess: with a JACK server and ports, and with nothing at all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.jack import MidiReceiver

ROOT = Path(__file__).resolve().parents[2]


def run_devices(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synthmatch.bridge.cli", "devices"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_devices_without_sound_card_or_jack(tmp_path):
    env = {**os.environ, "JACK_DEFAULT_SERVER": "synthmatch-test-nonexistent", "JACK_NO_START_SERVER": "1"}
    r = run_devices(env)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "Audio inputs" in r.stdout
    if not Path("/dev/snd").exists():
        assert "no audio input devices" in r.stdout
    assert 'MIDI (jack):\n  no JACK server running (server "synthmatch-test-nonexistent")' in r.stdout


@pytest.mark.jack
def test_devices_lists_jack_audio_and_midi(jack):
    with MidiReceiver(jack, "devices-rx", "midi_in"):
        r = run_devices(jack.env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    audio = lines[1 : lines.index("")]
    assert any("[JACK Audio Connection Kit]" in ln and "2 ch" in ln and f"{jack.rate} Hz" in ln for ln in audio), (
        r.stdout
    )
    jack_section = r.stdout.split("MIDI (jack):")[1].split("MIDI (alsa)")[0]
    send_to, receive_from = jack_section.split("can receive from")
    assert "devices-rx:midi_in" in send_to and "devices-rx:midi_in" not in receive_from
