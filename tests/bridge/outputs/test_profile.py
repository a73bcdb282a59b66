"""Output profiles (bridge/outputs/profile.py, configs/synths/*.toml [live]): the one converter from a
normalised value to what a synth's target needs, tested by round trip for every shipped profile; the
MIDI and OSC sinks driven by a profile into real peers (jack_midi_dump, a UDP OSC server)."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.outputs import profile
from synthmatch.bridge.outputs.base import Update
from synthmatch.bridge.outputs.config import MidiSinkConfig, OscSinkConfig, OutputSettings, validate_outputs
from synthmatch.bridge.outputs.midi import MidiCCSink, quantise
from synthmatch.bridge.outputs.osc import OscSink
from synthmatch.bridge.outputs.profile import ProfileError
from tests.jack import MidiDump

C = contract_mod.default()
N = len(C.names)
SHIPPED = ("amsynth", "massive", "surge-xt", "synthmatch-synth", "zynaddsubfx")
GRID = [i / 64 for i in range(65)]


def test_every_shipped_profile_loads_and_says_what_it_cannot_express():
    assert set(SHIPPED) <= set(profile.names())
    for name in SHIPPED:
        p = profile.load(name, C)
        assert p.description and (p.has("midi") or p.has("osc"))
        if name != "synthmatch-synth":  # exact, so nothing to confess
            assert p.cannot, name


@pytest.mark.parametrize("name", SHIPPED)
def test_round_trip_lands_on_the_physical_value_within_one_step(name):
    """normalised -> physical -> the target's value -> wire -> back to physical: within half a step of the
    target's resolution where the target can reach the value, at the nearer end of its reach where not."""
    p = profile.load(name, C)
    for t in [t for t in p.midi + p.osc if t is not None]:
        for v in GRID:
            x = t.physical(v)
            w = t.wire(v)
            got = t.reached(w)
            lo_u, hi_u = 0.0, 1.0
            ends = sorted(t.from_target(t.value(u)) for u in (lo_u, hi_u))
            if not ends[0] <= x <= ends[1]:  # beyond reach: clamped to the nearer end
                assert got == pytest.approx(min(ends, key=lambda e: abs(e - x)), rel=1e-6, abs=1e-9), (t.param, v)
                continue
            if not t.steps:  # OSC floats: the value itself (float32 aside)
                assert got == pytest.approx(x, rel=1e-6, abs=1e-9), (name, t.param, v)
                continue
            # one step of the target around the value, in contract units
            u = t.position(t.to_target(x))
            step = [t.from_target(t.value(min(1.0, max(0.0, u + d / t.steps)))) for d in (-0.51, 0.51)]
            assert min(step) - 1e-9 <= got <= max(step) + 1e-9, (name, t.param, v, x, got, step)


@pytest.mark.parametrize("name", ["synthmatch-synth", "massive"])
def test_identity_profiles_send_exactly_the_default(name):
    """synthmatch-synth (and massive, today's defaults written out) equal no profile at all: the normalised
    value, 7-bit, on the contract's cc column."""
    p = profile.load(name, C)
    assert [t.number for t in p.midi] == [q.cc for q in C.params]
    rng = np.random.default_rng(3)
    for values in [GRID[:N], list(rng.random(N)), [0.0] * N, [1.0] * N, [0.5 / 127] * N]:
        assert p.wire(values, "midi") == quantise(values, 7)


def test_amsynth_attack_and_cutoff_land_where_the_issue_measured_them_wrong():
    """Issue 21: a predicted 44 ms attack (0.4475) became ~1.4 s on amsynth; a cutoff of 0.12 made its
    note 48 dB quieter. Through the profile they land within a few per cent."""
    p = profile.load("amsynth", C)
    att = p.midi[C.names.index("env_attack")]
    v = C.param("env_attack").to_normalised(0.044)
    assert att.number == 73 and att.reached(att.wire(v)) == pytest.approx(0.044, rel=0.05)
    cut = p.midi[C.names.index("filter1_cutoff")]
    x = C.param("filter1_cutoff").to_physical(0.12)  # 1 s, 101 Hz
    assert cut.number == 74 and cut.reached(cut.wire(0.12)) == pytest.approx(x, rel=0.03)
    # amsynth's own law, from its source: seconds = 0.0005 + (2.5 c / 127)^3
    c = att.wire(v)
    assert 0.0005 + (2.5 * c / 127) ** 3 == pytest.approx(0.044, rel=0.05)
    # parameters amsynth lacks are not sent
    assert p.midi[C.names.index("osc1_position")] is None and not p.has("osc")


def test_zynaddsubfx_osc_sends_its_own_units():
    p = profile.load("zynaddsubfx", C)
    v = [0.5] * N
    v[C.names.index("filter1_resonance")] = 0.71
    wire = dict(zip(C.names, p.wire(v, "osc")))
    assert wire["filter1_cutoff"] == pytest.approx(C.param("filter1_cutoff").to_physical(0.5))  # Hz
    assert wire["env_attack"] == pytest.approx(C.param("env_attack").to_physical(0.5))  # seconds
    k = 3.5 * 0.71
    assert wire["filter1_resonance"] == pytest.approx((1 + k) / (4 - k), rel=0.03)  # not Q 68
    assert wire["osc1_pitch"] is None and wire["reverb_mix"] is None


def row(**kw):
    return {"param": "env_attack", "target": "cc", "number": 73, "min": 0.001, "max": 10.0, "curve": "log", **kw}


@pytest.mark.parametrize(
    "live, says",
    [
        ({"midi": [row(curve="cubic")]}, "curve = 'cubic'; use one of linear, log, power, table, contract"),
        ({"midi": [row(param="attack")]}, "param = 'attack' is not a contract parameter"),
        ({"midi": [row(target="osc")]}, "target = 'osc'; use one of cc, cc14, nrpn"),
        ({"midi": [row(number=120)]}, "number = 120: a cc number is 0..119"),
        ({"midi": [row(min=0.0)]}, "a log curve needs min and max > 0"),
        ({"midi": [row(), row(param="env_decay")]}, "env_decay: CC 73 is used by env_attack already"),
        ({"midi": [row(target="cc14", number=10), row(param="env_decay", number=42)]}, "CC 42 is used by env_attack"),
        ({"midi": [row(curve="table", points=[[0, 1], [0.5, 0.5], [1, 2]])]}, "must rise or fall throughout"),
        ({"osc": [{"param": "env_attack", "address": "x"}]}, "an OSC address starts with /"),
        ({"osc": [{"param": "env_attack", "address": "/a", "type": "s"}]}, "type = 's'; use one of f, i"),
        ({"midi": [row(colour=1)]}, "unknown key 'live.midi[0].colour'"),
    ],
)
def test_profile_mistakes_are_one_line_naming_the_key(live, says):
    with pytest.raises(ProfileError) as e:
        profile.from_dict(live, C, source="x.toml")
    assert says in str(e.value) and "\n" not in str(e.value)


def test_unknown_profile_lists_the_ones_there_are():
    with pytest.raises(ProfileError) as e:
        validate_outputs(OutputSettings(profile="moog"), C)
    assert "output.profile = 'moog': no such output profile; profiles: amsynth" in str(e.value)
    with pytest.raises(ProfileError, match="has no \\[live\\] section"):
        profile.load("smtest", C)


def test_a_profile_without_the_transport_asked_for_is_refused():
    out = OutputSettings(profile="amsynth")
    out.osc.enabled = True
    with pytest.raises(Exception, match="'amsynth' has no OSC targets.*send MIDI"):
        validate_outputs(out, C)


def test_training_still_reads_its_profiles_and_refuses_live_only_files():
    pytest.importorskip("torch")
    from synthmatch.training.synths import profile as training_profile

    assert training_profile.load("massive", C).plugin == "Massive"
    assert training_profile.load("smtest", C).plugin == "SMTest"
    with pytest.raises(training_profile.ProfileError, match="holds only a live output profile"):
        training_profile.load("amsynth", C)


def test_power_table_and_nrpn_laws_invert():
    t = profile.from_dict(
        {
            "midi": [
                row(curve="power", exponent=3.0, min=0.0005, max=15.6255),
                row(param="env_decay", target="nrpn", number=300, curve="table", points=[[0, 0.02], [0.5, 1], [1, 4]]),
            ]
        },
        C,
    )
    a, d = t.midi[C.names.index("env_attack")], t.midi[C.names.index("env_decay")]
    for y in (0.001, 0.05, 1.0, 15.0):
        assert a.value(a.position(y)) == pytest.approx(y)
    for y in (0.02, 0.3, 1.0, 2.5, 4.0):
        assert d.value(d.position(y)) == pytest.approx(y)
    assert d.steps == 16383 and 0 <= d.wire(0.5) <= 16383
    assert math.isclose(a.position(100.0), 1.0) and a.position(0.0) == 0.0  # clamped to the reach


def parse(raw: list[bytes]) -> list[tuple[int, int, int]]:
    return [((b[0] & 0x0F) + 1, b[1], b[2]) for b in raw]


@pytest.mark.jack
def test_midi_sink_with_a_profile_sends_only_what_the_synth_has(jack):
    """amsynth's profile: five CCs on channel 3 (--channel), each the value amsynth's law needs; the 11
    parameters amsynth lacks are never sent; NRPN goes out as 99, 98, 6, 38."""
    prof = profile.load("amsynth", C)
    cfg = MidiSinkConfig(enabled=True, virtual="prof", channel=3, api="jack", client_name="sm-prof")
    sink = MidiCCSink(cfg, C, profile=prof)
    try:
        with MidiDump(jack, "dumpprof") as dump:
            jack.connect("sm-prof:prof", dump.port)
            jack.settle()
            values = [0.5] * N
            values[C.names.index("env_attack")] = C.param("env_attack").to_normalised(0.044)
            assert sink.send(Update(values)) == 5
            got = parse(dump.wait_for(5))
            want = {(3, t.number, t.wire(v)) for t, v in zip(prof.midi, values) if t is not None}
            assert set(got) == want and len(got) == 5
            attack = [v for ch, cc, v in got if cc == 73][0]
            assert 0.0005 + (2.5 * attack / 127) ** 3 == pytest.approx(0.044, rel=0.05)
    finally:
        sink.close()
    nrpn = profile.from_dict({"midi": [row(target="nrpn", number=300)]}, C)
    sink = MidiCCSink(MidiSinkConfig(enabled=True, virtual="nrpn", api="jack", client_name="sm-nrpn"), C, profile=nrpn)
    try:
        with MidiDump(jack, "dumpnrpn") as dump:
            jack.connect("sm-nrpn:nrpn", dump.port)
            jack.settle()
            assert sink.send([0.5] * N) == 4
            w = nrpn.midi[C.names.index("env_attack")].wire(0.5)
            assert parse(dump.wait_for(4)) == [
                (1, 99, 300 >> 7),
                (1, 98, 300 & 0x7F),
                (1, 6, w >> 7),
                (1, 38, w & 0x7F),
            ]
    finally:
        sink.close()


def test_osc_sink_with_the_zynaddsubfx_profile_into_a_udp_server():
    from pythonosc import dispatcher, osc_server

    got: list[tuple[str, tuple]] = []
    d = dispatcher.Dispatcher()
    d.set_default_handler(lambda addr, *args: got.append((addr, args)))
    server = osc_server.BlockingOSCUDPServer(("127.0.0.1", 0), d)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    prof = profile.load("zynaddsubfx", C)
    sink = OscSink(OscSinkConfig(enabled=True, port=server.server_address[1]), C, profile=prof)
    try:
        values = [0.3] * N
        n = sink.send(Update(values, note=60, f0_hz=261.6, confidence=0.9))
        deadline = time.monotonic() + 3
        while len(got) < n and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        sink.close()
        server.shutdown()
        server.server_close()
    # the three fixed settings, then the four parameters zyn has; no /synthmatch/note (zyn has no such address)
    assert n == 7 and len(got) == 7
    by = dict(got)
    base = "/part0/kit0/adpars/GlobalPar/"
    assert by[base + "AmpEnvelope/Penvstretch"] == (0,) and by[base + "AmpEnvelope/PS_val"] == (98,)
    (hz,) = by[base + "GlobalFilter/basefreq"]
    assert type(hz) is float and hz == pytest.approx(C.param("filter1_cutoff").to_physical(0.3), rel=1e-6)
    (att,) = by[base + "AmpEnvelope/A_dt"]
    assert att == pytest.approx(C.param("env_attack").to_physical(0.3), rel=1e-6)
    assert not any(a.startswith("/synthmatch") for a, _ in got)


def test_profile_port_is_the_osc_default():
    prof = profile.load("zynaddsubfx", C)
    sink = OscSink(OscSinkConfig(enabled=True), C, profile=prof)
    try:
        assert sink.settings["port"] == 7777
    finally:
        sink.close()
