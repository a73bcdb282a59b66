"""Trigger/manual capture (bridge/live/capture.py) alone: which onsets open a window, when a window is
due, manual arming, the window copied out of a real ring, the silence refusal of manual "now"."""

from __future__ import annotations

import numpy as np

from synthmatch.bridge.audio.ring import Ring
from synthmatch.bridge.live.capture import TriggerCapture, cut_window, silent
from synthmatch.bridge.live.config import ManualSettings, TriggerSettings

N = 64000  # 4 s at 16 kHz


def capture(cut_at_next_onset=True, max_wait_s=6.0, start="onset", timeout_s=30.0) -> TriggerCapture:
    return TriggerCapture(TriggerSettings(max_wait_s, cut_at_next_onset), ManualSettings(start, timeout_s), N)


def test_which_onsets_open_a_window():
    t = capture()
    assert t.onset_opens("trigger") and not t.onset_opens("continuous")
    assert not t.onset_opens("manual")  # not armed
    t.arm(10.0)
    assert t.armed and t.onset_opens("manual") and not t.armed  # the arming is used up
    assert not t.onset_opens("manual")
    now = capture(start="now")
    now.arm(10.0)
    assert not now.onset_opens("manual")  # "now" captures on the trigger itself, never at an onset


def test_a_window_is_due_when_complete_or_after_max_wait():
    t = capture(max_wait_s=6.0)
    assert t.due(10**6, 0.0) is None  # nothing pending
    t.open(1000, now=5.0)
    assert t.due(1000 + N - 1, 5.1) is None
    assert t.due(1000 + N, 5.1) == (1000, None) and t.pending is None  # complete
    t.open(2000, now=5.0)
    assert t.due(30000, 11.0) is None  # 6.0 s waited: not more than max_wait_s
    assert t.due(30000, 11.01) == (2000, 30000) and t.pending is None  # cut at what arrived


def test_the_next_onset_cuts_a_filling_window_unless_configured_not_to():
    t = capture(cut_at_next_onset=True)
    assert t.cut() is None
    t.open(1000, 0.0)
    assert t.cut() == 1000 and t.pending is None
    keep = capture(cut_at_next_onset=False)
    keep.open(1000, 0.0)
    assert keep.cut() is None and keep.pending == (1000, 0.0)
    keep.open(9000, 1.0)  # the new onset's window replaces it
    assert keep.pending == (9000, 1.0)


def test_an_unused_arming_expires_and_reset_clears_everything():
    t = capture(timeout_s=30.0)
    t.arm(100.0)
    assert not t.arm_expired(130.0) and t.armed
    assert t.arm_expired(130.5) and not t.armed
    t.arm(1.0)
    t.open(5, 1.0)
    t.reset()
    assert t.pending is None and not t.armed


def ramp_ring(n: int, capacity: int = 3 * N) -> Ring:
    r = Ring(capacity, 1)
    r.write((np.arange(n, dtype=np.float32) + 1) / 10**6)  # sample k holds (k + 1) * 1e-6: positions show
    return r


def test_cut_window_copies_the_exact_samples_and_zero_pads_the_rest():
    r = ramp_ring(2 * N)
    window, m = cut_window(r, 100, None, N)
    assert m == N and window.dtype == np.float32 and window.shape == (N,)
    assert np.array_equal(window, (np.arange(100, 100 + N, dtype=np.float32) + 1) / 10**6)
    window, m = cut_window(r, 100, 100 + 1600, N)  # cut at the next onset, 0.1 s in
    assert m == 1600 and np.array_equal(window[:m], (np.arange(100, 1700, dtype=np.float32) + 1) / 10**6)
    assert not window[m:].any()
    window, m = cut_window(r, 2 * N - 500, None, N)  # the ring ends 500 samples in
    assert m == 500 and not window[500:].any()


def test_cut_window_of_a_start_no_longer_in_the_ring_is_dropped():
    r = ramp_ring(4 * N, capacity=3 * N)
    assert cut_window(r, 0, None, N) is None
    assert cut_window(r, N, None, N) is not None


def test_silent_refuses_digital_silence_and_peaks_below_minus_70_dbfs():
    r = Ring(N, 1)
    r.write(np.zeros(N, np.float32))
    assert silent(r, 0)
    assert silent(Ring(N, 1), 0)  # nothing heard yet
    quiet = Ring(N, 1)
    quiet.write(np.full(N, 10 ** (-75 / 20), np.float32))
    assert silent(quiet, 0)
    audible = Ring(N, 1)
    audible.write(np.full(N, 10 ** (-65 / 20), np.float32))
    assert not silent(audible, 0)
    assert silent(audible, N)  # nothing from there on
