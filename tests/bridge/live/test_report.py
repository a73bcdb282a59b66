"""The daemon's reporting (bridge/live/report.py)
alone: counter dict, percentiles, status, status line, exit status."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from synthmatch.bridge.live import report
from synthmatch.bridge.live.report import Counters, percentile


def fake_source():
    ring = SimpleNamespace(overflows=1, lost_frames=256)
    counts = {"input_overflow": 2, "input_underflow": 3, "other": 4}
    return SimpleNamespace(status_counts=counts, ring=ring, device_lost=1, reconnects=1)


def test_percentile():
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(range(101), 99) == 99.0


def test_counters_is_flat_json_in_a_fixed_order():
    c = Counters(inferences=5, updates=4, refined=1)
    c.latency_ms.extend([10.0, 20.0, 30.0])
    stats = [SimpleNamespace(received=3, malformed=1, dropped=0, errors=0)] * 2
    converter = SimpleNamespace(nonfinite=7, clipped=8)
    d = report.counters(c, fake_source(), converter, note_fallbacks=2, samples_16k=64000, control_stats=stats)
    json.dumps(d)
    keys = list(d)
    assert keys[: len(report.COUNTS)] == list(report.COUNTS)
    assert keys[len(report.COUNTS) :] == [
        "note_fallbacks",
        "input_overflows",
        "input_status_other",
        "ring_overflows",
        "lost_frames",
        "device_lost",
        "reconnects",
        "nonfinite_samples",
        "clipped_samples",
        "latency_ms_p50",
        "latency_ms_p99",
        "infer_ms_p50",
        "infer_ms_p99",
        "perf_ms_p50",
        "overhead_ms_p50",
        "overhead_ms_p99",
        "refine_ms_p50",
        "refine_ms_p99",
        "refine_distance_before_p50",
        "refine_distance_after_p50",
        "samples_16k",
        "control_received",
        "control_malformed",
        "control_dropped",
        "control_errors",
    ]
    assert d["inferences"] == 5 and d["refined"] == 1 and d["note_fallbacks"] == 2
    assert d["input_overflows"] == 2 and d["input_status_other"] == 7 and d["lost_frames"] == 256
    assert d["latency_ms_p50"] == 20.0 and d["latency_ms_p99"] == 29.8 and d["infer_ms_p50"] is None
    assert d["control_received"] == 6 and d["control_malformed"] == 2 and d["samples_16k"] == 64000


def test_status_and_status_line():
    names = [f"p{i}" for i in range(16)]
    s = report.status(
        mode="trigger",
        frozen=False,
        armed=False,
        level_db=-23.456,
        names=names,
        values=None,
        note_fields={},
        counters={"updates": 0},
    )
    assert s == {
        "mode": "trigger",
        "frozen": False,
        "armed": False,
        "level_db": -23.5,
        "values": None,
        "note": None,
        "f0_hz": None,
        "counters": {"updates": 0},
    }
    s = report.status(
        mode="manual",
        frozen=False,
        armed=True,
        level_db=-40.0,
        names=names,
        values=[0.25] * 16,
        note_fields={"note": 60, "f0_hz": 261.6, "midi": 60.0},
        counters={},
    )
    assert s["values"] == dict.fromkeys(names, 0.25) and s["note"] == 60 and s["f0_hz"] == 261.6
    line = report.status_line(
        level_db=-12.34, mode="manual", frozen=False, armed=True, values=[0.5, 0.25], latency_ms=[9.0, 12.5], updates=3
    )
    assert line == " -12.3 dBFS | manual ARMED | 0.50 0.25 |  12.5 ms | n=3"
    line = report.status_line(
        level_db=-80.0, mode="continuous", frozen=True, armed=True, values=None, latency_ms=[], updates=0
    )
    assert line == " -80.0 dBFS | continuous FROZEN | - |   nan ms | n=0"


@pytest.mark.parametrize(
    "counts, error, code",
    [
        (dict(inferences=3, updates=3), None, 0),
        (dict(inferences=0, updates=0), None, 0),  # nothing heard: not a failure
        (dict(inferences=3, updates=0, bad_outputs=3), None, 2),
        (dict(inferences=3, updates=0, send_failures=3), None, 2),
        (dict(inferences=3, updates=0), None, 0),  # held / gated: nothing to send is no failure
        (dict(inferences=3, updates=3), RuntimeError("boom"), 1),
    ],
)
def test_exit_report(capsys, counts, error, code):
    c = Counters(**counts)
    assert report.exit_report({"updates": c.updates}, c, error) == code
    err = capsys.readouterr().err
    assert err.startswith('synthmatch bridge: counters {"updates": ')
    assert ("error:" in err) == (code != 0)


def test_an_exception_is_one_short_line():
    from synthmatch.bridge.live.report import one_line

    assert one_line(RuntimeError("first\nsecond")) == "RuntimeError: first"
    assert one_line(KeyError()) == "KeyError"  # no message: the type
    long = one_line(ValueError("x" * 1000), limit=50)
    assert len(long) == 50 and long.endswith("...")
