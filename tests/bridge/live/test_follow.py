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
    span = max(HELD_N, int(0.3 * SR))  # the held window, the gate's and the tracker's spans: the longest
    assert recent is not None and recent.shape == (span,) and recent.dtype == np.float32  # mono
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


# ---- the performance model's seeds (issue 19) ----


@pytest.fixture(scope="module")
def perf():
    """The shipped performance model on ONNX Runtime, one thread, behind the daemon's Inference seam."""
    from synthmatch.bridge.audio.notes import NoteSettings, NoteStage
    from synthmatch.bridge.engines import load_engine
    from synthmatch.bridge.live.config import DEFAULT_PERF_MODEL, resolve_path
    from synthmatch.bridge.live.inference import Inference

    engine = load_engine(resolve_path(DEFAULT_PERF_MODEL), "onnxruntime", C, threads=1, performance=True)
    yield lambda c: Inference(engine, NoteStage(NoteSettings(), C), c, counted=("perf_inferences", "perf_ms"))
    engine.close()


def perf_follower(perf) -> HeldFollower:
    c = Counters()
    limited = LimitedLog(log, burst=5, per_s=1 / 30)
    return HeldFollower(ContinuousSettings(), C, c, limited, matcher=Recording(), perf=perf(c))


def synth_ring(seconds: float, values: np.ndarray, note: int = 60) -> Ring:
    from synthmatch.bridge.match.synth import Synth

    ring = Ring(12 * SR, 1)
    ring.write(Synth(C).render(values[None], note)[0, : int(seconds * SR), None])
    return ring


def test_the_performance_model_seeds_what_it_carries_and_keeps_the_rest_from_the_answer_playing(perf):
    f = perf_follower(perf)
    mask = f.perf.engine.meta.carried_mask
    assert f.perf_n == int(0.4 * SR) and mask.sum() == 13
    values = np.random.default_rng(4).uniform(0.2, 0.8, 16).astype(np.float32)
    ring = synth_ring(3.0, values)
    base = np.full(16, 0.123, np.float32)
    end = int(2.5 * SR)
    [seed] = f.perf_seeds(ring, end, base, 60)
    assert seed.shape == (16,) and seed.dtype == np.float32
    assert np.all(seed[~mask] == np.float32(0.123))  # envelope and reverb: the answer playing
    assert np.all(seed[mask] != np.float32(0.123)) and np.all((seed >= 0) & (seed <= 1))
    assert f.c.perf_inferences == 1 and f.c.inferences == 0 and len(f.c.perf_ms) == 1
    # it read exactly the newest 0.4 s: the engine on that window alone gives the same carried values
    direct = f.perf.engine.infer(ring.window(end - f.perf_n, f.perf_n)[:, 0][None], np.array([60.0], np.float32))[0]
    np.testing.assert_allclose(seed[mask], np.clip(direct, 0, 1)[mask], atol=1e-6)


def test_no_performance_seed_before_the_note_fills_its_window_or_without_an_answer_playing(perf):
    f = perf_follower(perf)
    ring = synth_ring(3.0, np.full(16, 0.5, np.float32))
    f.note_start = 2 * SR
    assert f.perf_seeds(ring, 2 * SR + f.perf_n - 1, np.full(16, 0.5, np.float32), 60) == []
    assert f.perf_seeds(ring, 2 * SR + f.perf_n, None, 60) == []
    assert len(f.perf_seeds(ring, 2 * SR + f.perf_n, np.full(16, 0.5, np.float32), 60)) == 1


def test_a_performance_model_failing_in_a_row_is_switched_off_not_the_show(perf, caplog):
    from synthmatch.bridge.live.inference import ENGINE_FAILURES_MAX

    class Broken:
        def __init__(self, meta):
            self.meta, self.name = meta, "broken"

        def infer_full(self, *a, **k):
            raise RuntimeError("device lost")

    f = perf_follower(perf)
    f.perf.engine = Broken(f.perf.engine.meta)
    ring = synth_ring(3.0, np.full(16, 0.5, np.float32))
    base = np.full(16, 0.5, np.float32)
    with caplog.at_level(logging.WARNING, logger="synthmatch.bridge"):
        for i in range(ENGINE_FAILURES_MAX):
            assert f.perf_seeds(ring, 2 * SR + i, base, 60) == []
    assert f.perf is None and f.c.engine_errors == ENGINE_FAILURES_MAX
    assert "performance model off for this run" in caplog.text
    assert f.perf_seeds(ring, 2 * SR + 99, base, 60) == []  # off: no more calls


def test_no_performance_seed_for_an_unpitched_sound_or_a_window_that_starts_before_the_onset(perf):
    f = perf_follower(perf)
    note_on = 2 * SR
    ring = Ring(12 * SR, 1)
    ring.write(np.zeros((note_on, 1), np.float32))  # silence, then a held patch
    from synthmatch.bridge.match.synth import Synth

    ring.write(Synth(C).render(np.full((1, 16), 0.5, np.float32), 60)[0, : 2 * SR, None])
    base = np.full(16, 0.5, np.float32)
    f.note_start = note_on - HELD_N  # as seeds() sets it: up to a held window before the onset
    inside = note_on + f.perf_n + int(0.06 * SR)  # the window starts 60 ms into the note
    assert f.perf_seeds(ring, note_on + f.perf_n - SR // 20, base, 60) == []  # its head is silence
    assert f.perf_seeds(ring, inside, base, None) == []  # no note heard: nothing to tell the model
    assert len(f.perf_seeds(ring, inside, base, 60)) == 1 and f.c.perf_inferences == 1


def test_with_a_performance_model_the_4_s_network_seeds_new_notes_only(perf):
    f, infer = perf_follower(perf), Infer()
    ring = ring_of((6.0, 0.5))
    assert f.seeds(ring, SR, False, infer)  # a new note: the network's answer (envelope and reverb)
    assert f.seeds(ring, SR + EVERY, False, infer) == []  # not again 0.5 s on: the performance model seeds
    assert f.seeds(ring, SR + EVERY + SR // 20, True, infer)  # a changed note: at once
    assert len(infer.calls) == 2
