"""The JACK test fixture itself: a real server, MIDI through it, kill and restart."""

from __future__ import annotations

import pytest

from synthmatch.bridge.outputs import midiports
from tests.jack import MidiDump, MidiReceiver

pytestmark = pytest.mark.jack


def test_server_up_and_midi_flows(jack):
    jack_server = jack
    assert midiports.jack_server_alive(jack_server.name) is True
    assert "system:capture_1" in jack_server.ports(midi=False)
    out = midiports.new_client("out", "jack", "fixture-src")
    try:
        out.open_virtual_port("out")
        with MidiReceiver(jack_server, "fixture-rx") as rx, MidiDump(jack_server, "fixture-dump") as dump:
            jack_server.connect("fixture-src:out", rx.port)
            jack_server.connect("fixture-src:out", dump.port)
            assert ("fixture-rx:in", "fixture-src:out") in jack_server.connections()
            jack_server.settle()
            out.send_message([0xB0, 14, 64])
            out.send_message([0xB5, 46, 127])
            assert rx.wait_for(2) == [bytes([0xB0, 14, 64]), bytes([0xB5, 46, 127])]
            assert dump.wait_for(2) == [bytes([0xB0, 14, 64]), bytes([0xB5, 46, 127])]
    finally:
        midiports.retire(out, server_dead=False)


def test_kill_and_restart(jack_server):
    rx = MidiReceiver(jack_server, "fixture-victim")
    starts = jack_server.starts
    jack_server.kill()
    assert midiports.jack_server_alive(jack_server.name) is False  # stale socket refuses
    jack_server.start()
    assert jack_server.starts == starts + 1 and jack_server.running()
    assert "fixture-victim:in" not in jack_server.ports()
    rx.close()  # dead client: retired without being touched
    with MidiReceiver(jack_server, "fixture-victim") as rx2:
        assert rx2.port in jack_server.ports(midi=True)


def test_portaudio_sees_jack_after_rescan(jack):
    sd = pytest.importorskip("sounddevice")
    from tests.jack import portaudio_rescan

    portaudio_rescan()
    apis = [h["name"] for h in sd.query_hostapis()]
    assert "JACK Audio Connection Kit" in apis, apis
    jack_api = apis.index("JACK Audio Connection Kit")
    inputs = [d for d in sd.query_devices() if d["hostapi"] == jack_api and d["max_input_channels"] > 0]
    assert inputs and inputs[0]["default_samplerate"] == jack.rate
