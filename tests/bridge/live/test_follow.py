"""Performance mode's follower (bridge/live/follow.py) alone, on a real ring and a recording held matcher:
the gate and what a silence forgets, the network seeds' schedule (a new note, a changed note, every
network_every_s) and their windows (from the note's start, zero-padded; the newest 4 s once the note is
longer), the held matcher's answer and its failures, the stream clock of the rate limit; and the real
HeldMatcher made once, on first use, from the continuous settings."""

from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import numpy as np
import pytest

from synthmatch.bridge.audio.ring import Ring
from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.ratelimit import LimitedLog
from synthmatch.bridge.live.config import ContinuousSettings
from synthmatch.bridge.live.follow import HeldFollower
from synthmatch.bridge.live.report import Counters
from synthmatch.bridge.match.held import HELD_S

C = contract_mod.default()
SR, N = C.audio.sample_rate, C.audio.num_samples
HELD_N = int(round(HELD_S * SR))  # 4800
EVERY = int(ContinuousSettings().network_every_s * SR)  # 8000: a seed every 0.5 s
log = logging.getLogger("synthmatch.bridge")


class Recording:
    """A held matcher answering 0.25 everywhere (or raising), noting its calls and resets."""

    def __init__(self, error: Exception | None = None):
        self.window_n, self.error, self.calls, self.resets = HELD_N, error, [], 0

    def reset(self):
        self.resets += 1

    def match(self, recent, heard, previous, seeds=(), budget_ms=0.0):
        self.calls.append(dict(n=len(recent), heard=heard, previous=previous, seeds=seeds, budget_ms=budget_ms))
        if self.error is not None:
            raise self.error
        return SimpleNamespace(values=np.full(16, 0.25, np.float32), seconds=0.003)


def follower(error=None, **cont) -> HeldFollower:
    settings = ContinuousSettings(**cont)
    return HeldFollower(settings, C, Counters(), LimitedLog(log, burst=5, per_s=1 / 30), matcher=Recording(error))


def ring_of(*parts: tuple[float, float]) -> Ring:
    """A 16 kHz ring holding (seconds, amplitude) sections of a 440 Hz tone, one after another."""
    ring = Ring(12 * SR, 1)
    for seconds, amp in parts:
        t = np.arange(int(seconds * SR)) / SR
        ring.write((amp * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[:, None])
    return ring


class Infer:
    """The network's seam: infer(start, window) -> 16 values (or None), noting each window."""

    def __init__(self, answer=0.5):
        self.answer, self.calls = answer, []

    def __call__(self, start, window):
        self.calls.append((start, window.copy()))
        return None if self.answer is None else np.full(16, self.answer, np.float32)


# ---- the gate ----


def test_listen_returns_the_newest_audio_the_hop_needs():
    f = follower()
    ring = ring_of((2.0, 0.5))
    recent = f.listen(ring, 2 * SR, track_s=0.3)
    assert recent is not None and recent.shape == (HELD_N,) and recent.dtype == np.float32  # mono
    assert len(f.listen(ring, 2 * SR, track_s=1.0)) == SR  # the note tracker's span is longer
    assert len(f.listen(ring, SR // 10, track_s=0.3)) == SR // 10  # the input's start: what there is


def test_silence_or_audio_the_ring_lacks_gates_and_ends_a_sounding_note():
    f = follower()
    ring = ring_of((1.0, 0.5), (1.0, 0.0))
    assert f.listen(ring, 2 * SR, 0.3) is None  # the newest 0.3 s are silent
    assert f.matcher.resets == 0  # no note was sounding: nothing to forget
    f.seeds(ring, SR, changed=False, infer=Infer())  # a note sounds
    assert f.net_end == SR and f.matcher.resets == 1
    assert f.listen(ring, 2 * SR, 0.3) is None
    assert f.net_end == -1 and f.matcher.resets == 2  # the next sound is a new note
    assert f.listen(ring, 3 * SR, 0.3) is None  # not in the ring yet
    quiet = follower(gate_db=-200.0)
    assert quiet.listen(ring, 2 * SR, 0.3) is not None  # a gate of -200 dBFS lets digital silence through


# ---- the network's seeds ----


def test_a_new_note_is_seeded_from_its_start_zero_padded():
    f, infer = follower(), Infer()
    ring = ring_of((3.0, 0.5))
    end = 2 * SR
    seeds = f.seeds(ring, end, changed=False, infer=infer)
    assert len(seeds) == 1 and seeds[0][0] == 0.5
    assert f.note_start == end - HELD_N and f.net_end == end and f.matcher.resets == 1
    start, window = infer.calls[0]
    assert start == end - HELD_N and window.shape == (N,) and window.dtype == np.float32
    assert np.abs(window[:HELD_N]).max() > 0.4 and not window[HELD_N:].any()  # the note so far, then zeros


def test_seeds_come_every_network_every_s_and_on_a_changed_note():
    f, infer = follower(), Infer()
    ring = ring_of((6.0, 0.5))
    end = SR
    assert f.seeds(ring, end, False, infer)
    hop = SR // 20
    assert f.seeds(ring, end + hop, False, infer) == []  # 50 ms later: none due
    assert f.seeds(ring, end + EVERY - 1, False, infer) == []
    assert f.seeds(ring, end + EVERY, False, infer)  # 0.5 s after the last: due
    assert infer.calls[-1][0] == end - HELD_N  # still from the note's start (the window grows)
    assert f.matcher.resets == 1  # the note goes on: the matcher keeps its search
    changed = end + EVERY + hop
    assert f.seeds(ring, changed, True, infer)  # a new note played: seeded at once, from its start
    assert f.note_start == changed - HELD_N and f.matcher.resets == 2 and f.net_end == changed


def test_a_note_longer_than_the_window_is_seeded_from_the_newest_4_s():
    f, infer = follower(), Infer()
    ring = ring_of((10.0, 0.5))
    f.seeds(ring, SR, False, infer)
    end = SR + 10 * EVERY  # 5 s into the note: its start is more than 4 s back
    f.seeds(ring, end, False, infer)
    start, window = infer.calls[-1]
    assert start == end - N and np.abs(window[-100:]).max() > 0.4  # the newest 4 s, no padding


def test_without_a_seed_schedule_only_new_notes_are_seeded():
    f, infer = follower(network_every_s=0.0), Infer()
    ring = ring_of((6.0, 0.5))
    assert f.seeds(ring, SR, False, infer)
    assert f.seeds(ring, 5 * SR, False, infer) == []
    assert f.seeds(ring, 5 * SR + 800, True, infer)


def test_a_lost_network_answer_is_no_seed_but_counts_as_asked():
    f = follower()
    ring = ring_of((3.0, 0.5))
    assert f.seeds(ring, 2 * SR, False, Infer(answer=None)) == []
    assert f.net_end == 2 * SR  # not asked again next hop
    assert f.seeds(ring, 2 * SR + 800, False, Infer()) == []


# ---- the answer ----


def test_the_held_matchers_answer_is_counted():
    f = follower()
    recent, previous, seed = np.zeros(HELD_N, np.float32), np.full(16, 0.4, np.float32), np.full(16, 0.6, np.float32)
    values = f.answer(recent, 60.5, previous, [seed], budget_ms=7.0)
    assert values is not None and values[0] == 0.25
    call = f.matcher.calls[0]
    assert call["heard"] == 60.5 and call["previous"] is previous and call["budget_ms"] == 7.0
    assert call["seeds"][0] is seed and call["n"] == HELD_N
    assert f.c.refined == 1 and list(f.c.refine_ms) == [3.0]


def test_a_failing_held_matcher_falls_back_to_the_seed_with_a_counted_warning(caplog):
    f = follower(error=RuntimeError("broken\nmore"))
    recent, previous, seed = np.zeros(HELD_N, np.float32), np.full(16, 0.4, np.float32), np.full(16, 0.6, np.float32)
    with caplog.at_level(logging.WARNING, "synthmatch.bridge"):
        assert f.answer(recent, 60.0, previous, [seed], 7.0) is seed
        assert f.answer(recent, 60.0, previous, [], 7.0) is None  # no seed this hop: nothing to send
    assert f.c.refine_errors == 2 and f.c.refined == 0
    assert caplog.records[0].getMessage() == "held matching failed (1 so far): RuntimeError: broken"


def test_the_rate_limits_clock_is_the_stream():
    f = follower()
    assert f.since_sent_s(SR) == math.inf  # nothing sent yet
    f.sent_end = SR
    assert f.since_sent_s(SR + 800) == pytest.approx(0.05)


# ---- the real held matcher ----


def test_the_held_matcher_is_made_once_on_first_use_from_the_settings():
    f = HeldFollower(ContinuousSettings(budget_ms=5.0, keep_margin=0.2), C, Counters(), LimitedLog(log))
    assert f._held is None  # nothing made at construction
    assert f.window_n == HELD_N
    made = f.matcher
    assert made is f.matcher and made.config.budget_ms == 5.0 and made.config.keep_margin == 0.2
