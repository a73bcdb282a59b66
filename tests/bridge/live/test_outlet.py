"""The updates' way out (bridge/live/outlet.py) alone, on in-memory sinks: the Update every sink gets, the
counters (updates, messages, latency, overhead), the newest update remembered, note-offs, and sinks that
raise on send or on their port check: counted, logged rate-limited, never in the way of the others."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import numpy as np

from synthmatch.bridge.live.outlet import Outlet, note_fields
from synthmatch.bridge.live.report import Counters


class Collecting:
    """A sink keeping every Update; each costs `messages` messages."""

    def __init__(self, messages: int = 2):
        self.got, self.messages = [], messages

    def send(self, u) -> int:
        self.got.append(u)
        return self.messages

    def maintain(self) -> None:
        pass


class Raising:
    def __init__(self, on_maintain: bool = False):
        self.sends, self.on_maintain = 0, on_maintain

    def send(self, u) -> int:
        self.sends += 1
        raise OSError(28, "No space left on device")

    def maintain(self) -> None:
        if self.on_maintain:
            raise RuntimeError("port gone\ntraceback text")


def test_an_update_reaches_every_sink_and_is_counted():
    a, b = Collecting(2), Collecting(3)
    c = Counters()
    c.infer_ms.append(4.0)
    out = Outlet([a, b], c)
    values = np.linspace(0, 1, 16, dtype=np.float32)
    t_audio = time.monotonic() - 0.010
    fields = {"note": 60, "new_note": True, "stream_s": 4.0}
    out.send(values, t_audio, "trigger+refined", fields)
    u = a.got[0]
    assert b.got == [u] and u.values == [float(v) for v in values] and u.mode == "trigger+refined"
    assert u.t_audio == t_audio and u.t_infer_done >= t_audio and u.note == 60 and u.new_note and u.stream_s == 4.0
    assert c.updates == 1 and c.messages == 5 and c.send_failures == 0
    assert c.latency_ms[0] >= 10.0 and c.overhead_ms[0] == c.latency_ms[0] - 4.0
    assert out.last_values is values and out.last_sent is not values and np.array_equal(out.last_sent, values)
    assert out.note_fields == {**fields, "new_note": False}  # a follow-up of this update is no new note
    assert out.last_send_t >= u.t_infer_done


def test_without_sinks_an_update_still_counts_and_without_an_inference_no_overhead():
    c = Counters()
    out = Outlet([], c)
    out.send(np.zeros(16, np.float32), time.monotonic(), "continuous")
    assert c.updates == 1 and c.messages == 0 and len(c.latency_ms) == 1 and len(c.overhead_ms) == 0
    assert out.note_fields == {"new_note": False}


def test_a_sink_that_raises_is_counted_and_the_others_still_get_the_update(caplog):
    bad, good = Raising(), Collecting()
    c = Counters()
    out = Outlet([bad, good], c)
    with caplog.at_level(logging.WARNING, "synthmatch.bridge"):
        for _ in range(20):
            out.send(np.zeros(16, np.float32), time.monotonic(), "continuous")
    assert bad.sends == 20 and len(good.got) == 20 and c.updates == 20 and c.send_failures == 20
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 5  # a burst, then one every 30 s
    assert warned[0] == "Raising failed (1 sink failures so far): OSError: [Errno 28] No space left on device"


def test_an_update_no_sink_took_is_not_an_update():
    c = Counters()
    Outlet([Raising(), Raising()], c).send(np.zeros(16, np.float32), time.monotonic(), "trigger")
    assert c.updates == 0 and c.send_failures == 2 and len(c.latency_ms) == 1


def test_a_note_off_reaches_every_sink_and_is_not_an_update():
    a = Collecting()
    c = Counters()
    out = Outlet([a, Raising()], c)
    out.note_off(62, "continuous", 3.5)
    u = a.got[0]
    assert u.note_off and u.note == 62 and list(u.values) == [] and u.stream_s == 3.5 and u.mode == "continuous"
    assert c.updates == 0 and c.send_failures == 1 and out.last_sent is None


def test_port_checks_that_raise_are_counted_never_fatal(caplog):
    c = Counters()
    out = Outlet([Collecting(), Raising(on_maintain=True), Raising()], c)  # fine, raising, fine
    with caplog.at_level(logging.WARNING, "synthmatch.bridge"):
        out.maintain()
    assert c.send_failures == 1
    assert (
        caplog.records[0].getMessage() == "Raising port check failed (1 sink failures so far): RuntimeError: port gone"
    )


def test_note_fields_of_a_voiced_and_an_unvoiced_estimate():
    voiced = SimpleNamespace(f0_hz=440.0, midi=69.02, voiced=True, confidence=0.912345)
    assert note_fields(voiced, 69, True) == {
        "note": 69,
        "f0_hz": 440.0,
        "midi": 69.02,
        "confidence": 0.9123,
        "new_note": True,
    }
    unvoiced = SimpleNamespace(f0_hz=None, midi=0.0, voiced=False, confidence=0.1)
    assert note_fields(unvoiced, None, False)["midi"] is None
