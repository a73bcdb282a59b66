"""Onset detector on real signals: exact start sample, hysteresis, hold-off, block-size independence."""

from __future__ import annotations

import numpy as np
import pytest

from synthmatch.bridge.audio.onset import OnsetDetector, OnsetSettings, offline_onsets, rms_dbfs

SR = 16000


def burst(n: int, freq: float = 440.0, amp: float = 0.5, attack: int = 16) -> np.ndarray:
    t = np.arange(n) / SR
    env = np.minimum(1.0, (np.arange(n) + 1) / attack) * np.exp(-t * 2.0)
    return (amp * env * np.sin(2 * np.pi * freq * t + 0.3)).astype(np.float32)


def signal_with_notes(starts, total, **kw) -> np.ndarray:
    x = np.zeros(total, np.float32)
    for s in starts:
        b = burst(min(SR, total - s), **kw)
        x[s : s + b.size] += b
    return x


def test_finds_the_exact_first_sample_after_silence():
    starts = [1234, 20011, 40000]
    x = signal_with_notes(starts, 60000)
    assert offline_onsets(x, OnsetSettings(), SR) == starts


def test_slow_attack_is_traced_back_to_its_start():
    x = signal_with_notes([5003], 30000, attack=1600)  # 100 ms linear attack
    (o,) = offline_onsets(x, OnsetSettings(), SR)
    assert 5003 <= o <= 5003 + 40  # within 2.5 ms of the true start


def test_holdoff_and_hysteresis_block_retriggers():
    x = signal_with_notes([1000, 1000 + 800], 20000)  # second note 50 ms later: inside the hold-off
    assert offline_onsets(x, OnsetSettings(holdoff_s=0.3, rise_db=0), SR) == [1000]
    # a note that never falls below threshold - hysteresis does not re-arm (rise detection off)
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(3 * SR) / SR + 0.3)).astype(np.float32)
    tone[SR : SR + 400] *= 0.7  # a 3 dB dip is not a new note
    x = np.concatenate([np.zeros(500, np.float32), tone])
    assert offline_onsets(x, OnsetSettings(rise_db=0), SR) == [500]


def test_silence_and_noise_below_threshold_give_nothing():
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(3 * SR) * 10 ** (-60 / 20)).astype(np.float32)
    assert offline_onsets(noise, OnsetSettings(), SR) == []
    assert offline_onsets(np.zeros(SR, np.float32), OnsetSettings(), SR) == []
    assert rms_dbfs(np.zeros(100, np.float32)) == -200.0
    assert rms_dbfs(np.full(100, 0.5, np.float32)) == pytest.approx(-6.0206, abs=1e-3)


@pytest.mark.parametrize("block", [1, 63, 64, 65, 4097])
def test_streaming_equals_offline_for_any_block_size(block):
    rng = np.random.default_rng(block)
    x = signal_with_notes([777, 25001, 49333], 75000, attack=400)
    x += (rng.standard_normal(x.size) * 1e-5).astype(np.float32)  # a noise floor below floor_db
    s = OnsetSettings()
    expected = offline_onsets(x, s, SR)
    assert len(expected) == 3
    d = OnsetDetector(s, SR)
    found = []
    for i in range(0, x.size, block):
        found += d.process(x[i : i + block], i)
    assert found == expected
