"""The OSC control server over real UDP, and the MIDI footswitch through a JACK server."""

from __future__ import annotations

import json
import socket
import struct
import time

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from synthmatch.bridge.live.control import CommandQueue, ControlCommand, ControlServer
from synthmatch.bridge.live.footswitch import MidiTrigger
from synthmatch.bridge.outputs import midiports

MODES = ("trigger", "continuous", "manual")


def osc(address: str, *args: tuple[str, object]) -> bytes:
    m = OscMessageBuilder(address)
    for tag, v in args:
        m.add_arg(v, tag)
    return m.build().dgram


@pytest.fixture
def client():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(3)
    yield s
    s.close()


def wait_for(pred, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_commands_from_real_udp(client):
    with ControlServer(port=0, modes=MODES) as srv:
        assert srv.address[0] == "127.0.0.1"
        for dgram in (
            osc("/synthmatch/trigger"),
            osc("/synthmatch/trigger", ("f", 1.0)),  # a TouchOSC button press
            osc("/synthmatch/trigger", ("f", 0.0)),  # ... and its release: ignored
            osc("/synthmatch/freeze", ("i", 1)),
            osc("/synthmatch/freeze", ("F", False)),
            osc("/synthmatch/mode", ("s", "manual")),
        ):
            client.sendto(dgram, srv.address)
        assert wait_for(lambda: srv.stats.accepted == 5)
        cmds = srv.commands.drain()
    assert [(c.kind, c.value, c.source) for c in cmds] == [
        ("trigger", None, "osc"),
        ("trigger", None, "osc"),
        ("freeze", True, "osc"),
        ("freeze", False, "osc"),
        ("mode", "manual", "osc"),
    ]
    assert srv.stats.malformed == 0 and srv.stats.received == 6


def test_status_reply_goes_back_to_the_sender(client):
    status = {"mode": "continuous", "frozen": False, "updates": 12, "latency_ms": 31.5}
    with ControlServer(port=0, status=lambda: status) as srv:
        client.sendto(osc("/synthmatch/status"), srv.address)
        data, sender = client.recvfrom(65536)
    assert sender == srv.address
    msg = OscMessage(data)
    assert msg.address == "/synthmatch/status" and json.loads(msg.params[0]) == status
    assert srv.stats.replies == 1 and len(srv.commands) == 0


def test_status_without_provider_is_queued_and_answered_by_the_daemon(client):
    with ControlServer(port=0) as srv:
        client.sendto(osc("/synthmatch/status"), srv.address)
        assert wait_for(lambda: len(srv.commands) == 1)
        cmd = srv.commands.get()
        assert cmd.kind == "status" and cmd.reply_to == client.getsockname()
        srv.send_status(cmd.reply_to, {"mode": "manual"})
        data, _ = client.recvfrom(65536)
    assert json.loads(OscMessage(data).params[0]) == {"mode": "manual"}


def test_malformed_messages_are_ignored_and_counted(client, caplog):
    bad = [
        osc("/synthmatch/freeze"),  # missing argument
        osc("/synthmatch/freeze", ("s", "yes")),  # wrong type
        osc("/synthmatch/freeze", ("i", 1), ("i", 0)),  # too many
        osc("/synthmatch/mode", ("i", 2)),  # wrong type
        osc("/synthmatch/mode", ("s", "jazz")),  # unknown mode
        osc("/synthmatch/trigger", ("s", "now")),  # wrong type
        osc("/synthmatch/status", ("i", 1)),  # status takes nothing
        osc("/synthmatch/explode"),  # unknown address
        osc("/other/thing", ("f", 1.0)),  # not ours
        b"hello, not OSC",  # not OSC at all
        b"/synthmatch/trigger\0\0\0\0,x\0\0",  # broken OSC (unknown type tag)
    ]
    with ControlServer(port=0, modes=MODES) as srv:
        for dgram in bad:
            client.sendto(dgram, srv.address)
        client.sendto(osc("/synthmatch/trigger"), srv.address)  # still serving after all that
        assert wait_for(lambda: srv.stats.accepted == 1 and srv.stats.malformed == len(bad))
        assert [c.kind for c in srv.commands.drain()] == ["trigger"]
    assert srv.stats.received == len(bad) + 1
    assert "unknown address /synthmatch/explode" in caplog.text
    assert "modes are trigger, continuous, manual" in caplog.text


def test_queue_is_bounded(client):
    q = CommandQueue(maxsize=3)
    with ControlServer(port=0, commands=q) as srv:
        for _ in range(6):
            client.sendto(osc("/synthmatch/trigger"), srv.address)
        assert wait_for(lambda: srv.stats.accepted + srv.stats.dropped == 6)
    assert len(q) == 3 and q.dropped == 3 and srv.stats.dropped == 3
    assert all(isinstance(c, ControlCommand) for c in q.drain()) and q.get() is None


def test_port_in_use_is_a_usage_error():
    from synthmatch.bridge.core.errors import UsageError

    with ControlServer(port=0) as srv:
        with pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1:{srv.address[1]}"):
            ControlServer(port=srv.address[1])


@pytest.mark.jack
def test_midi_footswitch_through_jack(jack):
    q = CommandQueue()
    pedal = midiports.new_client("out", "jack", "pedal")
    pedal.open_virtual_port("out")
    trig = MidiTrigger(q, port="pedal", cc=64, channel=2, api="jack", client_name="sm-trig")
    try:
        assert trig.port_name == "pedal:out"
        mark = jack.log_mark()
        jack.settle()  # the trigger's connection to the pedal takes effect at a cycle boundary
        for msg in (
            [0xB1, 64, 127],
            [0xB1, 64, 127],  # press (held: the repeat does not fire again)
            [0xB1, 64, 0],  # release
            [0xB0, 64, 127],  # other channel: ignored
            [0xB1, 1, 127],  # other CC: ignored
            [0x91, 60, 100],  # a note: ignored in CC mode
            [0xB1, 64, 100],
        ):  # second press
            pedal.send_message(msg)
        jack.wait_until(lambda: trig.stats.received == 7, "the 7 pedal messages", mark)
        cmds = q.drain()
        assert [(c.kind, c.source) for c in cmds] == [("trigger", "midi")] * 2
    finally:
        trig.close()
        midiports.retire(pedal, server_dead=False)


@pytest.mark.jack
def test_midi_note_trigger_virtual_port(jack):
    q = CommandQueue()
    trig = MidiTrigger(q, note=36, cc=None, api="jack", client_name="sm-pad")
    pad = midiports.new_client("out", "jack", "pad")
    try:
        pad.open_port(pad.get_ports().index("sm-pad:trigger_in"), "out")
        mark = jack.log_mark()
        jack.settle()
        pad.send_message([0x99, 36, 90])  # channel 10 note-on: fires (channel 0 = any)
        pad.send_message([0x89, 36, 0])  # note-off
        pad.send_message([0x99, 36, 0])  # note-on velocity 0 = note-off
        pad.send_message([0x99, 38, 90])  # other note
        jack.wait_until(lambda: trig.stats.received == 4, "the 4 pad messages", mark)
        assert len(q.drain()) == 1
    finally:
        trig.close()
        midiports.retire(pad, server_dead=False)


# ---- hostile datagrams (issue 14): decoded with bounds, counted, never a stall ----------------------


def _bundle(*elements: bytes, size: int | None = None) -> bytes:
    """#bundle, time tag 'immediately', then each element with its size (or `size` for all of them)."""
    out = b"#bundle\0" + struct.pack(">Q", 1)
    for e in elements:
        out += struct.pack(">i", len(e) if size is None else size) + e
    return out


def _nested(depth: int) -> bytes:
    d = osc("/synthmatch/trigger")
    for _ in range(depth):
        d = _bundle(d)
    return d


HOSTILE = {
    "negative bundle element size (the 20-byte freeze)": b"#bundle\0" + b"\0" * 8 + struct.pack(">i", -4),
    "element size past the end": _bundle(osc("/synthmatch/trigger"), size=4096),
    "element size not a multiple of 4": b"#bundle\0" + b"\0" * 8 + struct.pack(">i", 3) + b"/a\0\0",
    "zero element size": _bundle(b"", size=0),
    "unaligned datagram": osc("/synthmatch/trigger") + b"\0",
    "bundle nested too deep": _nested(40),
    "non-UTF-8 address": b"/synthmatch/\xff\xfe\0\0\0\0,\0\0\0",
    "non-UTF-8 string argument": b"/synthmatch/mode\0\0\0\0,s\0\0\xc3\x28\0\0",
    "negative blob size": b"/synthmatch/trigger\0,b\0\0" + struct.pack(">i", -8),
    "string without NUL": b"/synthmatch/trigger!!!!",
    "arrays nested too deep": b"/synthmatch/trigger\0" + b",[[[[[[[[]]]]]]]]\0\0",
    "truncated float": b"/synthmatch/freeze\0\0,f\0\0\0\0",
    "NaN freeze": osc("/synthmatch/freeze", ("f", float("nan"))),
    "oversize datagram": b"/" + b"x" * 20000 + b"\0\0\0",
    "empty datagram": b"",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_datagram_is_counted_and_the_server_keeps_answering(client, name):
    with ControlServer(port=0, status=lambda: {"ok": True}, modes=MODES) as srv:
        client.sendto(HOSTILE[name], srv.address)
        client.sendto(osc("/synthmatch/status"), srv.address)
        data, _ = client.recvfrom(65536)  # times out (3 s) if the server is stuck
        assert json.loads(OscMessage(data).params[0]) == {"ok": True}
        assert wait_for(lambda: srv.stats.received == 2)
        assert srv.stats.malformed == 1 and srv.stats.errors == 0, (name, srv.stats)
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 0.5  # close() waits for nothing


def test_valid_bundles_nested_a_little_are_accepted(client):
    with ControlServer(port=0, modes=MODES) as srv:
        client.sendto(_bundle(osc("/synthmatch/freeze", ("T", True)), _nested(2)), srv.address)
        assert wait_for(lambda: srv.stats.accepted == 2)
        assert [(c.kind, c.value) for c in srv.commands.drain()] == [("freeze", True), ("trigger", None)]
    assert srv.stats.malformed == 0


def test_a_flood_is_logged_briefly_and_status_requests_are_rate_limited(client, caplog):
    with ControlServer(port=0, status=lambda: {"ok": True}) as srv:
        for i, dgram in enumerate([b"garbage!"] * 300 + [osc("/synthmatch/status")] * 300):
            client.sendto(dgram, srv.address)
            if i % 50 == 49:  # paced: the kernel's receive buffer would drop some of a burst of 600
                assert wait_for(lambda: srv.stats.received == i + 1)
    assert srv.stats.malformed == 300
    assert srv.stats.replies + srv.stats.dropped == 300 and srv.stats.dropped > 0
    warnings = [r for r in caplog.records if "ignored message" in r.getMessage()]
    assert len(warnings) <= ControlServer.LOG_BURST + 2, len(warnings)


def test_an_address_of_another_machine_gets_advice_about_control_host():
    from synthmatch.bridge.core.errors import UsageError

    with pytest.raises(UsageError, match=r"8\.8\.8\.8 is not an address of this machine: set control\.host"):
        ControlServer(host="8.8.8.8", port=0)


def test_listening_on_all_interfaces_warns(caplog):
    with ControlServer(host="0.0.0.0", port=0):
        pass
    assert "listening on 0.0.0.0: any machine" in caplog.text


def test_warnings_show_network_text_escaped_and_cut(client, caplog):
    with ControlServer(port=0, modes=MODES) as srv:
        client.sendto(osc("/synthmatch/x\n12:00:00 INFO forged line" + "y" * 2000), srv.address)
        assert wait_for(lambda: srv.stats.malformed == 1)
    (text,) = [r.getMessage() for r in caplog.records if "unknown address" in r.getMessage()]
    assert "\n" not in text and "\\n12:00:00 INFO forged" in text and len(text) < 400
