"""Continuous mode's pure functions (bridge/live/shaping.py) on real float32 values: hop plan, smoothing,
deadband, rate limit, pitch resend."""

from __future__ import annotations

import math

import numpy as np
import pytest

from synthmatch.bridge.live.config import ContinuousSettings
from synthmatch.bridge.live.shaping import PITCH_STEP, Hop, next_hop, pitch_resend, shape

HOP_S = 0.25  # the default hop: 4000 samples at 16 kHz


def v(*xs) -> np.ndarray:
    """16 values: xs then the last one repeated (float32, like the model's output)."""
    out = np.full(16, xs[-1], np.float32)
    out[: len(xs)] = xs
    return out


def settings(**kw) -> ContinuousSettings:
    return ContinuousSettings(**{"smoothing_s": 0.0, "deadband": 0.0, "max_rate_hz": 0.0, **kw})


# ---- next_hop ----


def test_on_time_the_next_hop_is_the_planned_one():
    assert next_hop(written=64000, next_end=64000, hop=4000, catch_up=False) == Hop(64000, 68000, 0)
    assert next_hop(written=67999, next_end=64000, hop=4000, catch_up=False) == Hop(64000, 68000, 0)


def test_a_late_worker_jumps_to_the_newest_complete_hop():
    # 2.5 hops behind: the two oldest are skipped, the newest complete one (end 72000) is analysed
    assert next_hop(written=74000, next_end=64000, hop=4000, catch_up=False) == Hop(72000, 76000, 2)


def test_catch_up_analyses_every_hop():
    assert next_hop(written=74000, next_end=64000, hop=4000, catch_up=True) == Hop(64000, 68000, 0)


# ---- shape ----


def test_first_hop_sends_the_values_as_they_are():
    x = v(0.1, 0.9, 0.5)
    out, smooth = shape(x, None, None, math.inf, settings(smoothing_s=0.3, deadband=0.005), HOP_S)
    assert out.dtype == np.float32 and np.array_equal(out, x) and np.array_equal(smooth, x)
    assert out is not smooth and smooth is not x  # the state is not the array sent nor the input


def test_one_pole_smoothing_moves_a_step_of_one_minus_exp_minus_hop_over_tau():
    a = 1.0 - math.exp(-HOP_S / 0.3)  # 0.565 per hop
    prev, x = v(0.0), v(1.0)
    out, smooth = shape(x, prev, None, math.inf, settings(smoothing_s=0.3), HOP_S)
    np.testing.assert_allclose(smooth, np.full(16, a), rtol=1e-6)
    assert np.array_equal(out, smooth) and smooth.dtype == np.float32
    assert np.array_equal(prev, v(0.0)) and np.array_equal(x, v(1.0))  # inputs untouched
    out2, smooth2 = shape(x, smooth, out, math.inf, settings(smoothing_s=0.3), HOP_S)
    np.testing.assert_allclose(smooth2, np.full(16, 1 - (1 - a) ** 2), rtol=1e-6)  # the second step


def test_smoothing_is_bit_identical_to_the_in_place_update():
    rng = np.random.default_rng(0)
    prev, x = rng.random(16, dtype=np.float32), rng.random(16, dtype=np.float32)
    a = 1.0 - math.exp(-HOP_S / 0.3)
    ref = prev.copy()
    ref += a * (x - ref)  # the daemon's former in-place form
    _, smooth = shape(x, prev, None, math.inf, settings(smoothing_s=0.3), HOP_S)
    assert np.array_equal(smooth, ref)


def test_no_smoothing_follows_the_values():
    _, smooth = shape(v(0.7), v(0.1), None, math.inf, settings(smoothing_s=0.0), HOP_S)
    assert np.array_equal(smooth, v(0.7))


def test_deadband_holds_small_moves_and_lets_single_parameters_through():
    sent = v(0.5)
    s = settings(deadband=0.01)
    out, _ = shape(v(0.505), None, sent, math.inf, s, HOP_S)
    assert out is None  # every parameter within 0.01
    out, _ = shape(v(0.505, 0.52, 0.48, 0.505), None, sent, math.inf, s, HOP_S)
    assert out.dtype == np.float32
    assert out[1] == np.float32(0.52) and out[2] == np.float32(0.48)  # moved more than the deadband
    assert out[0] == 0.5 and np.all(out[3:] == 0.5)  # the rest keep what was sent


def test_rate_limit_holds_updates_closer_than_one_over_max_rate():
    s = settings(max_rate_hz=20.0)  # 50 ms apart at least
    assert shape(v(0.9), None, v(0.1), 0.049, s, HOP_S).out is None
    assert np.array_equal(shape(v(0.9), None, v(0.1), 0.051, s, HOP_S).out, v(0.9))
    assert shape(v(0.9), None, None, math.inf, s, HOP_S).out is not None  # never sent: never limited


def test_held_values_go_out_again_for_a_new_note_or_a_glide():
    sent = v(0.5)
    out, _ = shape(v(0.5), None, sent, math.inf, settings(deadband=0.01), HOP_S, resend=True)
    assert out is sent  # the values last sent, with the new note's fields
    out, _ = shape(v(0.5), None, sent, 0.0, settings(max_rate_hz=20.0), HOP_S, resend=True)
    assert out is sent  # held by the rate limit: the same
    out, _ = shape(v(0.5), None, None, math.inf, settings(), HOP_S, resend=True)
    assert np.array_equal(out, v(0.5))  # nothing held: the values themselves


def test_the_state_advances_even_when_nothing_is_sent():
    _, smooth = shape(v(0.6), v(0.5), v(0.5), math.inf, settings(smoothing_s=0.3, deadband=0.5), HOP_S)
    assert smooth[0] > 0.5


# ---- pitch_resend ----


@pytest.mark.parametrize(
    "voiced, midi, sent_midi, held, changed, expected",
    [
        (True, 60.0, 60.0, 60, True, True),  # a new note always goes out
        (False, 0.0, None, None, True, True),
        (True, 60.0 + 2 * PITCH_STEP, 60.0, 60, False, True),  # a glide on the held note
        (True, 60.0 + PITCH_STEP / 2, 60.0, 60, False, False),  # too small a move
        (True, 60.0, None, 60, False, True),  # the last update had no pitch
        (True, 62.0, 60.0, None, False, False),  # no note held: nothing to bend
        (False, 62.0, 60.0, 60, False, False),  # unvoiced: no pitch to send
    ],
)
def test_pitch_resend(voiced, midi, sent_midi, held, changed, expected):
    assert pitch_resend(voiced, midi, sent_midi, held, changed) is expected
