"""Output sinks against real peers: JACK MIDI receivers (rtmidi and jack_midi_dump), UDP OSC servers
(python-osc and liblo's oscdump), plus golden bytes written out by hand."""

from __future__ import annotations

import io
import json
import shutil
import socket
import struct
import subprocess
import threading
import time

import numpy as np
import pytest

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.loader import load_dataclass
from synthmatch.bridge.outputs.base import SinkConfigError, Update
from synthmatch.bridge.outputs.config import (
    MidiSinkConfig,
    OscSinkConfig,
    OutputSettings,
    validate_midi,
    validate_outputs,
)
from synthmatch.bridge.outputs.midi import MidiCCSink, cc_messages, quantise
from synthmatch.bridge.outputs.midiports import MidiPortError
from synthmatch.bridge.outputs.osc import OscSink
from synthmatch.bridge.outputs.printer import PrintSink
from tests.jack import MidiDump, MidiReceiver

C = contract_mod.default()
N = len(C.names)
CCS = [p.cc for p in C.params]  # 14..29


def ramp(offset: float = 0.0) -> list[float]:
    return [round((i / (N - 1) + offset) % 1.0, 4) for i in range(N)]


# ------------------------------------------------------------------------------------------------
# golden bytes


def test_cc_golden_bytes_7bit():
    values = [0.0, 0.5, 1.0] + [0.25] * (N - 3)
    q = quantise(values, 7)
    assert q[:4] == [0, 64, 127, 32]  # 63.5 rounds half up
    msgs = [m for _, ms in cc_messages(q, [None] * N, CCS, channel=3, resolution=7) for m in ms]
    hexes = [m.hex() for m in msgs]
    assert hexes[:4] == ["B2 0E 00", "B2 0F 40", "B2 10 7F", "B2 11 20"]
    assert len(hexes) == N and hexes[-1] == "B2 1D 20"


def test_cc_golden_bytes_14bit_msb_then_lsb_and_only_changed():
    q = quantise([1.0, 0.5, 0.0, 1 / 3] + [0.0] * (N - 4), 14)
    assert q[:4] == [16383, 8192, 0, 5461]
    pairs = cc_messages(q, [None] * N, CCS, channel=16, resolution=14)
    assert [" ".join(m.hex() for m in ms) for _, ms in pairs[:4]] == [
        "BF 0E 7F BF 2E 7F",  # CC14 = 127, CC46 = 127
        "BF 0F 40 BF 2F 00",  # 8192 = 64 << 7 | 0
        "BF 10 00 BF 30 00",
        "BF 11 2A BF 31 55",  # 5461 = 42 << 7 | 85
    ]
    prev = list(q)
    prev[3] = 5460
    changed = cc_messages(q, prev, CCS, channel=16, resolution=14)
    assert [(i, [m.hex() for m in ms]) for i, ms in changed] == [(3, ["BF 11 2A", "BF 31 55"])]


# ------------------------------------------------------------------------------------------------
# config validation


@pytest.mark.parametrize(
    "kw, fragment",
    [
        (dict(channel=0), "output.midi.channel = 0"),
        (dict(channel=17), "output.midi.channel = 17"),
        (dict(ccs=[14] * N), "output.midi.ccs[1] (osc1_position) = 14 collides with output.midi.ccs[0]"),
        (dict(ccs=[128] + CCS[1:]), "output.midi.ccs[0] (osc1_pitch) = 128: CC numbers are integers 0..127"),
        (dict(ccs=[123] + CCS[1:]), "channel mode messages"),
        (dict(ccs=CCS[:5]), "output.midi.ccs: 5 CC numbers for 16 parameters"),
        (
            dict(resolution=14, ccs=[14, 46] + CCS[2:]),
            "ccs[1] (osc1_position) = 46 collides with output.midi.ccs[0] (osc1_pitch) 14-bit LSB 46",
        ),
        (dict(resolution=14, ccs=[40] + CCS[1:]), "ccs[0] (osc1_pitch) = 40: with resolution 14 the MSB"),
        (
            dict(resolution=14, ccs=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 47]),
            "ccs[15] (reverb_mix) = 47 collides with output.midi.ccs[14] (env_decay) 14-bit LSB 47",
        ),
        (dict(resolution=10), "output.midi.resolution = 10"),
        (dict(api="coreaudio"), "output.midi.api = 'coreaudio'"),
    ],
)
def test_midi_config_errors_name_the_key(kw, fragment):
    with pytest.raises(SinkConfigError) as e:
        validate_midi(MidiSinkConfig(**kw), C)
    assert fragment in str(e.value)
    assert isinstance(e.value, ValueError)


def test_contract_ccs_valid_at_both_resolutions_and_unknown_keys_rejected():
    assert validate_midi(MidiSinkConfig(), C) == CCS
    assert validate_midi(MidiSinkConfig(resolution=14), C) == CCS
    with pytest.raises(
        SinkConfigError, match=r"unknown key 'output.midi.chanel'; allowed keys in \[output.midi\]: .*channel"
    ):
        load_dataclass(MidiSinkConfig, {"chanel": 2}, "output.midi", SinkConfigError)
    with pytest.raises(SinkConfigError, match=r"output.osc.preset = 'cubase'"):
        validate_outputs(OutputSettings(osc=OscSinkConfig(enabled=True, preset="cubase")), C)
    with pytest.raises(SinkConfigError, match=r"unknown template field 'slots'"):
        validate_outputs(OutputSettings(osc=OscSinkConfig(enabled=True, address="/x/{slots}")), C)


# ------------------------------------------------------------------------------------------------
# MIDI through JACK


def parse_cc(raw: list[bytes]) -> list[tuple[int, int, int]]:
    """(channel 1..16, cc, value) per message, asserting each is a control change."""
    out = []
    for b in raw:
        assert len(b) == 3 and b[0] & 0xF0 == 0xB0, b.hex()
        out.append(((b[0] & 0x0F) + 1, b[1], b[2]))
    return out


@pytest.mark.jack
def test_virtual_port_7bit_into_rtmidi_and_jack_midi_dump(jack):
    sink = MidiCCSink(MidiSinkConfig(enabled=True, virtual="cc7", channel=5, api="jack", client_name="sm-7bit"), C)
    try:
        with MidiReceiver(jack, "rx7") as rx, MidiDump(jack, "dump7") as dump:
            jack.connect("sm-7bit:cc7", rx.port)
            jack.connect("sm-7bit:cc7", dump.port)
            jack.settle()
            values = np.float32([round(v * 127) / 127 for v in ramp()])  # step centres; numpy is fine
            assert sink.send(Update(values, mode="trigger")) == N
            want = [(5, cc, int(v * 127 + 0.5)) for cc, v in zip(CCS, values.astype(float))]
            assert parse_cc(rx.wait_for(N)) == want
            assert parse_cc(dump.wait_for(N)) == want
            # unchanged at 7-bit resolution -> nothing; one changed -> exactly one message
            assert sink.send(values + 0.002) == 0  # a quarter step
            changed = values.copy()
            changed[9] = 0.9
            assert sink.send(changed) == 1
            assert parse_cc(rx.wait_for(N + 1))[N] == (5, CCS[9], 114)
            assert parse_cc(dump.wait_for(N + 1))[N] == (5, CCS[9], 114)
            assert sink.stats.sent == N + 1 and sink.stats.errors == 0
            # closing sends nothing (no reset-all-controllers, no all-notes-off)
            sink.close()
            time.sleep(0.1)
            assert len(rx.messages) == N + 1 and len(dump.messages) == N + 1
    finally:
        sink.close()


class HeldClock:
    """A sink's clock that moves only when told: a settle window that cannot expire while a loaded
    machine runs the test's own checks (the JACK connection itself still settles in real time)."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.jack
def test_named_port_14bit_msb_before_lsb(jack):
    clock = HeldClock()
    with MidiReceiver(jack, "massive14", "midi_in") as rx:
        sink = MidiCCSink(
            MidiSinkConfig(
                enabled=True, port="massive14", resolution=14, channel=1, api="jack", client_name="sm-14bit"
            ),
            C,
            clock=clock,
        )
        try:
            assert sink.port_name == "massive14:midi_in"
            assert ("massive14:midi_in", "sm-14bit:cc_out") in jack.connections()
            values = ramp(0.03)
            assert sink.send(values) == 0 and sink.stats.deferred == 1  # its connection is settling
            time.sleep(sink.SETTLE_S)
            clock.t += sink.SETTLE_S
            sink.maintain()  # pushes the deferred update
            assert sink.stats.sent == 2 * N
            got = parse_cc(rx.wait_for(2 * N))
            for i, v in enumerate(values):
                q = int(v * 16383 + 0.5)
                assert got[2 * i] == (1, CCS[i], q >> 7)  # MSB first
                assert got[2 * i + 1] == (1, CCS[i] + 32, q & 127)  # then LSB
            # a change visible only at 14 bits still goes out, as a full pair
            v2 = list(values)
            v2[0] += 1.0 / 16383
            assert sink.send(v2) == 2
            assert [c for _, c, _ in parse_cc(rx.wait_for(2 * N + 2))[2 * N :]] == [CCS[0], CCS[0] + 32]
        finally:
            sink.close()


@pytest.mark.jack
def test_update_deferred_by_a_settling_connection_is_sent_on_close(jack):
    with MidiReceiver(jack, "late", "in") as rx:
        sink = MidiCCSink(
            MidiSinkConfig(enabled=True, port="late", api="jack", client_name="sm-late"), C, clock=HeldClock()
        )
        assert sink.send(ramp(0.4)) == 0 and sink.stats.deferred == 1
        sink.close()  # waits out the settle and sends it: closing right after a match loses nothing
        assert parse_cc(rx.wait_for(N)) == [(1, cc, int(v * 127 + 0.5)) for cc, v in zip(CCS, ramp(0.4))]


@pytest.mark.jack
def test_missing_and_ambiguous_port_list_candidates(jack):
    with MidiReceiver(jack, "synthA", "in"), MidiReceiver(jack, "synthB", "in"):
        with pytest.raises(MidiPortError) as e:
            MidiCCSink(MidiSinkConfig(enabled=True, port="massive", api="jack"), C)
        assert "no MIDI output port (jack) matches 'massive'" in str(e.value)
        assert "synthA:in" in str(e.value) and "synthB:in" in str(e.value)
        with pytest.raises(MidiPortError, match="ambiguous"):
            MidiCCSink(MidiSinkConfig(enabled=True, port="synth", api="jack"), C)


@pytest.mark.jack
def test_receiver_disappears_and_returns(jack):
    rx = MidiReceiver(jack, "flaky", "in")
    sink = MidiCCSink(
        MidiSinkConfig(
            enabled=True,
            port="flaky",
            api="jack",
            client_name="sm-flaky",
            check_interval_s=0.01,
            retry_min_s=0.01,
            retry_max_s=0.05,
        ),
        C,
    )
    try:
        time.sleep(sink.SETTLE_S)
        assert sink.send(ramp()) == N
        rx.wait_for(N)
        rx.close()
        jack.wait_for_port("flaky:in", present=False)
        time.sleep(0.02)
        assert sink.send(ramp(0.1)) == 0  # detected gone: dropped, not fatal
        assert sink.stats.dropped == 1
        for _ in range(5):  # retries while it is away stay quiet
            time.sleep(0.02)
            assert sink.send(ramp(0.2)) == 0
        rx = MidiReceiver(jack, "flaky", "in")
        deadline = time.monotonic() + 3
        while sink.stats.reopens == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
            sink.maintain()  # reopens and resends the newest values in full
        assert sink.stats.reopens == 1
        sent = sink.stats.sent
        while sink.stats.sent == sent and time.monotonic() < deadline + sink.SETTLE_S:
            time.sleep(0.02)
            sink.maintain()  # the full resend waits for the new connection to settle
        want = [(1, cc, int(v * 127 + 0.5)) for cc, v in zip(CCS, ramp(0.2))]
        assert parse_cc(rx.wait_for(N)) == want
        n2 = sink.send(ramp(0.3))  # and keeps delivering
        assert n2 > 0 and len(rx.wait_for(N + n2)) == N + n2
    finally:
        sink.close()
        rx.close()


@pytest.mark.jack
def test_jack_server_killed_and_restarted(jack_server):
    sink = MidiCCSink(
        MidiSinkConfig(
            enabled=True,
            virtual="cc",
            api="jack",
            client_name="sm-crash",
            check_interval_s=0.01,
            retry_min_s=0.02,
            retry_max_s=0.1,
        ),
        C,
    )
    try:
        jack_server.kill()
        time.sleep(0.02)
        assert sink.send(ramp()) == 0 and sink.stats.dropped == 1  # never raises
        for _ in range(3):
            time.sleep(0.03)
            sink.maintain()  # server down: reopen attempts fail quietly
        jack_server.start()
        deadline = time.monotonic() + 3
        while "sm-crash:cc" not in jack_server.ports() and time.monotonic() < deadline:
            time.sleep(0.02)
            sink.maintain()
        assert sink.stats.reopens == 1
        with MidiReceiver(jack_server, "after") as rx:
            jack_server.connect("sm-crash:cc", rx.port)
            jack_server.settle()
            assert sink.send(ramp(0.5)) == N
            assert parse_cc(rx.wait_for(N)) == [(1, cc, int(v * 127 + 0.5)) for cc, v in zip(CCS, ramp(0.5))]
        # a restart between two checks is noticed too (the server's identity changed)
        jack_server.restart(crash=True)
        time.sleep(0.02)
        sink.maintain()
        deadline = time.monotonic() + 3
        while sink.stats.reopens < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
            sink.maintain()
        assert sink.stats.reopens == 2 and "sm-crash:cc" in jack_server.ports()
    finally:
        sink.close()


# ------------------------------------------------------------------------------------------------
# OSC


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def osc_string(s: str) -> bytes:
    b = s.encode() + b"\0"
    return b + b"\0" * (-len(b) % 4)


def test_osc_golden_datagram_generic():
    """One generic update = one bundle: '#bundle', timetag 1 (immediately), 16 size-prefixed messages."""
    values = [i / 16 for i in range(N)]
    sink = OscSink(OscSinkConfig(port=9), C)
    try:
        dgram = sink.bundle(values).dgram
    finally:
        sink.close()
    first = bytes.fromhex(
        "2f73796e74686d617463682f706172616d2f6f7363315f706974636800000000"  # address
        "2c660000"  # ",f" type tags
        "00000000"
    )  # 0.0f
    assert dgram[:16] == b"#bundle\0" + bytes.fromhex("0000000000000001")
    assert dgram[16:20] == struct.pack(">i", len(first)) and dgram[20 : 20 + len(first)] == first
    expected = b"#bundle\0" + struct.pack(">Q", 1)
    for name, v in zip(C.names, values):
        msg = osc_string(f"/synthmatch/param/{name}") + osc_string(",f") + struct.pack(">f", v)
        expected += struct.pack(">i", len(msg)) + msg
    assert dgram == expected


def test_osc_into_python_osc_server_one_bundle_per_update():
    from pythonosc import dispatcher, osc_server

    got: list[tuple[str, tuple]] = []
    d = dispatcher.Dispatcher()
    d.set_default_handler(lambda addr, *args: got.append((addr, args)))
    # one packet at a time, in arrival order (a threading server dispatches two bundles concurrently,
    # which interleaved their messages once in CI)
    server = osc_server.BlockingOSCUDPServer(("127.0.0.1", 0), d)
    packets: list[bytes] = []
    orig = server.finish_request
    server.finish_request = lambda req, addr: (packets.append(req[0]), orig(req, addr))
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    sink = OscSink(OscSinkConfig(preset="reaper", port=server.server_address[1], track=2, fx=3), C)
    try:
        assert sink.send(np.float32(ramp())) == N
        assert sink.send(Update(ramp(0.5))) == N
        deadline = time.monotonic() + 3
        while len(got) < 2 * N and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        sink.close()
        server.shutdown()
        server.server_close()
    assert len(packets) == 2 and all(p.startswith(b"#bundle\0") for p in packets)
    assert sorted(a for a, _ in got[:N]) == sorted(f"/track/2/fx/3/fxparam/{i + 1}/value" for i in range(N))
    byaddr = dict(got[:N])
    for i, v in enumerate(ramp()):
        (x,) = byaddr[f"/track/2/fx/3/fxparam/{i + 1}/value"]
        assert type(x) is float and x == pytest.approx(v, abs=1e-6)
    for p in packets:  # every message inside carries exactly one f tag
        assert p.count(b",f\0\0") == N


def test_osc_presets_ableton_and_bitwig_messages():
    from pythonosc.osc_bundle import OscBundle

    sink = OscSink(OscSinkConfig(preset="ableton", track=1, device=2, port=9), C)
    msgs = list(OscBundle(sink.bundle(ramp()).dgram))
    sink.close()
    assert msgs[0].address == "/live/device/set/parameter/value"
    assert msgs[0].params == [1, 2, 1, 0.0] and msgs[-1].params[:3] == [1, 2, 16]
    assert b",iiif" in msgs[0].dgram
    sink = OscSink(OscSinkConfig(preset="bitwig", port=9), C)
    msgs = list(OscBundle(sink.bundle([1.0] * N).dgram))
    sink.close()
    addrs = [m.address for m in msgs]
    assert addrs[0] == "/device/page/1/selected" and addrs[9] == "/device/page/2/selected"
    assert addrs[1:9] == [f"/device/param/{k}/value" for k in range(1, 9)]
    assert msgs[1].params == [127.0]


def _osc_values(sink: OscSink, values) -> list[float]:
    from pythonosc.osc_bundle import OscBundle

    return [m.params[-1] for m in OscBundle(sink.bundle(values).dgram) if m.params]


@pytest.mark.parametrize(
    "kw, lo, hi",
    [({}, 0.0, 1.0), ({"value_min": -1.0, "value_max": 1.0}, -1.0, 1.0), ({"preset": "bitwig"}, 0.0, 127.0)],
)
def test_osc_values_never_leave_value_min_max(kw, lo, hi):
    """Issue 22: value v goes out as value_min + v * (value_max - value_min), clamped after the mapping
    (and its rounding to steps), whatever the values handed in."""
    sink = OscSink(OscSinkConfig(port=9, **kw), C)
    try:
        ends = _osc_values(sink, [0.0, 1.0, -5.0, 7.0, 0.5] + [0.25] * (N - 5))
        grid = [x for v in np.linspace(0, 1, 101) for x in _osc_values(sink, [float(v)] * N)]
    finally:
        sink.close()
    assert ends[:4] == [lo, hi, lo, hi] and ends[4] == pytest.approx((lo + hi) / 2, abs=0.5)
    assert all(lo <= x <= hi for x in grid)


@pytest.mark.parametrize(
    "kw, says",
    [
        ({"value_max": -1.0}, "output.osc.value_max = -1, value_min = 0: need finite value_min < value_max"),
        ({"value_min": 0.5, "value_max": 0.5}, "value_min < value_max"),
        ({"value_max": float("nan")}, "value_min < value_max"),
        ({"preset": "ableton", "track": 2**31}, "output.osc.track = 2147483648: must lie in [-1, 2147483647]"),
        ({"preset": "ableton", "device": -7}, "output.osc.device = -7"),
        ({"preset": "ableton", "indices": [2**31 - 1] * N}, "output.osc.indices: each in [0, 2147483646]"),
    ],
)
def test_osc_sink_refuses_settings_it_cannot_send(kw, says):
    """A config built in code (no loader) is refused when the sink opens, never at the first update."""
    with pytest.raises(SinkConfigError) as e:
        OscSink(OscSinkConfig(port=9, **kw), C).close()
    assert says in str(e.value), str(e.value)


def test_quantise_never_leaves_the_midi_range():
    assert quantise([1.2, -0.3, 1.0, 0.0], 7) == [127, 0, 127, 0]
    assert quantise([1.2, -0.3, 1.0, 0.0], 14) == [16383, 0, 16383, 0]


@pytest.mark.skipif(shutil.which("oscdump") is None, reason="liblo-tools (oscdump) not installed")
def test_osc_into_oscdump():
    port = free_udp_port()
    proc = subprocess.Popen(["oscdump", "-L", str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    sink = OscSink(OscSinkConfig(port=port, address="/synth/{index1}/{name}"), C)
    try:
        deadline = time.monotonic() + 5
        while len(lines) < N and time.monotonic() < deadline:  # oscdump may not be bound yet: resend
            sink.send(ramp())
            time.sleep(0.1)
    finally:
        sink.close()
        proc.terminate()
        proc.wait(5)
        reader.join(2)
    rows = [ln.split() for ln in lines if ln.strip()]
    assert len(rows) >= N
    first = rows[:N]
    assert len({r[0] for r in first}) == 1  # one timestamp: one bundle
    assert [r[1] for r in first] == [f"/synth/{i + 1}/{n}" for i, n in enumerate(C.names)]
    assert all(r[2] == "f" for r in first)
    assert [float(r[3]) for r in first] == pytest.approx(ramp(), abs=1e-6)


def test_osc_absent_receiver_does_not_crash():
    port = free_udp_port()  # nobody listens: the kernel answers with ICMP port unreachable
    sink = OscSink(OscSinkConfig(port=port), C)
    try:
        for k in range(20):
            sink.send(ramp(k / 20))
    finally:
        sink.close()
    assert sink.stats.updates == 20
    assert sink.stats.errors >= 5  # ICMP refusals seen and counted (about every other send)
    assert sink.stats.sent + sink.stats.dropped * N == 20 * N


# ------------------------------------------------------------------------------------------------
# print


def test_print_sink_json_lines():
    buf = io.StringIO()
    sink = PrintSink(C, stream=buf, physical=True)
    now = time.monotonic()
    # a printed line is not a message on the wire (the daemon's `messages` counter counts MIDI/OSC only)
    assert sink.send(Update(ramp(), t_audio=now - 0.2, t_infer_done=now - 0.1, mode="trigger")) == 0
    assert sink.send(np.float32(ramp())) == 0 and sink.stats.sent == 2
    lines = buf.getvalue().splitlines()
    rec = json.loads(lines[0])
    assert rec["mode"] == "trigger" and list(rec["values"]) == list(C.names)
    assert rec["values"]["osc1_position"] == 0.0667 and rec["physical"]["osc1_pitch"] == -24.0
    assert 200 <= rec["latency_ms"] < 1000 and rec["infer_ms"] == pytest.approx(100, abs=1)
    rec2 = json.loads(lines[1])
    assert rec2["latency_ms"] is None and rec2["mode"] == ""
    with pytest.raises(ValueError, match="15 values, expected 16"):
        sink.send(ramp()[:15])


def test_daw_guide_cc_table_matches_contract():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "docs" / "daw-guide.md").read_text()
    rows = [ln.split("|")[1:-1] for ln in text.splitlines() if ln.startswith("| ") and ln[2:4].strip().isdigit()]
    table = [(int(r[0]), r[1].strip(), r[2].strip(), int(r[3]), int(r[4])) for r in rows]
    assert table == [(i, p.name, p.massive, p.cc, p.cc + 32) for i, p in enumerate(C.params)]
