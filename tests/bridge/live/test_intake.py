"""The daemon's audio intake (bridge/live/intake.py) alone, on real numpy audio: raw blocks of any size give
the 16 kHz ring and the onsets one block gives (and offline_onsets), arrival times date every position,
a reopened device restarts the resampler, the end of file input is noticed once everything is taken in."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from synthmatch.bridge.audio.input import Converter
from synthmatch.bridge.audio.onset import OnsetSettings, offline_onsets
from synthmatch.bridge.audio.ring import Ring
from synthmatch.bridge.live import intake as intake_mod
from synthmatch.bridge.live.intake import Intake

SR = 16000
BLOCKS = [1, 7, 63, 64, 65, 1001, 4097]


def source(rate: int = SR, channels: int = 1, seconds: float = 12.0):
    """What Intake reads of an input (bridge.audio.input's sources): a raw ring the callback fills."""
    return SimpleNamespace(
        ring=Ring(int(rate * seconds), channels), sample_rate=rate, channels=channels, generation=1, eof=False
    )


def notes(rate: int, starts_s, total_s: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Decaying harmonic notes after digital silence, a little noise under the second half: (frames, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(total_s * rate)) / rate
    x = np.zeros(t.size)
    for k, s in enumerate(starts_s):
        a = t >= s
        u = t[a] - s
        f = 110.0 * 2 ** (k / 4)
        x[a] += 0.5 * np.exp(-3 * u) * (np.sin(2 * np.pi * f * u) + 0.3 * np.sin(2 * np.pi * 3 * f * u))
    x[t.size // 2 :] += 1e-3 * rng.standard_normal(t.size - t.size // 2)
    out = np.stack([x * (1 - 0.2 * c) for c in range(channels)], axis=1)
    return out.astype(np.float32)


def feed(it: Intake, raw: np.ndarray, block: int, pull_every: int = 1) -> list[int]:
    """Write raw in blocks of `block` frames as the callback does, pulling after every `pull_every` writes
    (and at the end) -> all onsets reported."""
    found: list[int] = []
    for k, i in enumerate(range(0, raw.shape[0], block)):
        it.source.ring.write(raw[i : i + block])
        if (k + 1) % pull_every == 0:
            found += it.pull() or []
    found += it.pull() or []
    return found


def ring_content(it: Intake) -> np.ndarray:
    got = it.ring16.window(0, it.ring16.written)
    assert got is not None
    return got[:, 0]


@pytest.mark.parametrize("block", BLOCKS)
def test_16k_mono_blocks_of_any_size_reach_the_ring_sample_identical(block):
    x = notes(SR, [0.25, 1.5, 2.2], 3.0)
    it = Intake(source(), SR, OnsetSettings())
    onsets = feed(it, x, block, pull_every=3)
    np.testing.assert_array_equal(ring_content(it), x[:, 0])  # clean 16 kHz audio: the identity
    assert onsets == offline_onsets(x[:, 0], OnsetSettings(), SR) and len(onsets) == 3
    assert it.raw_pos == it.source.ring.written == x.shape[0]
    assert it.block_s == min(3 * block, x.shape[0]) / SR  # the longest read


@pytest.mark.parametrize("block", BLOCKS)
def test_48k_stereo_streaming_equals_one_block(block):
    """Mixing, resampling (soxr keeps its state across blocks) and onset detection do not depend on how
    the input was cut into blocks: the ring and the onsets equal those of the whole signal at once."""
    raw = notes(48000, [0.3, 1.1, 2.05], 2.6, channels=2, seed=block)
    whole = Intake(source(48000, 2), SR, OnsetSettings())
    whole_onsets = whole.ingest(raw, 1.0)
    it = Intake(source(48000, 2), SR, OnsetSettings())
    onsets = feed(it, raw, block)
    np.testing.assert_array_equal(ring_content(it), ring_content(whole))
    assert list(onsets) == list(whole_onsets)
    y = Converter(48000, SR, 2)(raw)  # the offline conversion; the onsets offline_onsets finds in it
    np.testing.assert_array_equal(ring_content(it), y)
    assert onsets == offline_onsets(y, OnsetSettings(), SR) and len(onsets) == 3


def test_the_selected_channel_alone_is_taken_in():
    raw = notes(SR, [0.1], 0.5, channels=2)
    it = Intake(source(SR, 2), SR, OnsetSettings(), channel=2)
    feed(it, raw, 1000)
    np.testing.assert_array_equal(ring_content(it), raw[:, 1])


def test_arrival_of_is_the_arrival_of_the_block_holding_the_last_sample():
    it = Intake(source(), SR, OnsetSettings())
    x = notes(SR, [0.1], 0.2)[:, 0]
    ends, t = [0], 100.0
    for size in (100, 1, 250, 37):
        it.ingest(x[ends[-1] : ends[-1] + size, None], t + len(ends))
        ends.append(ends[-1] + size)
    # block k covers (ends[k-1], ends[k]]: a window ending anywhere in it is dated by that block
    for k in range(1, len(ends)):
        for end in (ends[k - 1] + 1, ends[k]):
            assert it.arrival_of(end) == t + k, (k, end)
    assert it.arrival_of(0) == t + 1  # nothing before the first block: the oldest stamp
    before = time.monotonic()
    assert it.arrival_of(ends[-1] + 1) >= before  # not taken in yet: now


def test_arrival_times_come_from_the_producers_stamps_and_forget_the_oldest():
    it = Intake(source(48000, 1), SR, OnsetSettings())
    raw = notes(48000, [0.1], 1.0)
    t0 = time.monotonic()
    it.source.ring.write(raw[:48000])
    t1 = time.monotonic()
    it.pull()
    assert t0 <= it.arrival_of(it.ring16.written) <= t1 and it.ring16.written > 15000
    # the last ARRIVALS blocks are remembered: an older position gets the oldest remembered stamp
    small = Intake(source(), SR, OnsetSettings())
    for k in range(intake_mod.ARRIVALS + 10):
        small.ingest(np.zeros((2, 1), np.float32), float(k))
    assert small.arrival_of(1) == 10.0 and small.arrival_of(2 * 20) == 19.0
    assert small.arrival_of(small.ring16.written) == float(intake_mod.ARRIVALS + 9)


def test_nothing_new_is_none_and_a_block_the_resampler_keeps_is_no_onsets():
    it = Intake(source(48000, 1), SR, OnsetSettings())
    assert it.pull() is None
    it.source.ring.write(np.zeros((1, 1), np.float32))  # one frame: soxr holds it back
    got = it.pull()
    assert got is not None and list(got) == [] and it.ring16.written == 0 and it.raw_pos == 1
    assert it.pull() is None


def test_a_reopened_device_restarts_the_resampler():
    raw = notes(48000, [0.05], 0.4)
    first = Intake(source(48000, 1), SR, OnsetSettings())
    first.ingest(raw, 0.0)
    fresh = Converter(48000, SR, 1)(raw)
    first.ingest(raw, 1.0)  # same device: the resampler continues from its state
    n = first.ring16.written
    assert not np.array_equal(ring_content(first)[n - fresh.size :], fresh)
    first.source.generation += 1  # reopened: what follows is converted from a clean state
    first.ingest(raw, 2.0)
    np.testing.assert_array_equal(ring_content(first)[first.ring16.written - fresh.size :], fresh)


def test_drained_once_the_ended_source_is_fully_taken_in():
    it = Intake(source(), SR, OnsetSettings())
    it.source.ring.write(np.zeros((500, 1), np.float32))
    assert not it.drained()  # still delivering
    it.source.eof = True
    assert not it.drained()  # ended, but 500 frames not taken in
    it.pull()
    assert it.drained() and it.pull() is None


def test_a_reader_that_fell_behind_resumes_at_the_oldest_frame_held():
    """The raw ring overflowed (the worker stalled): the intake counts it there and continues."""
    src = source(seconds=1.0)
    it = Intake(src, SR, OnsetSettings())
    x = notes(SR, [0.1], 1.5)
    src.ring.write(x)  # 1.5 s into a 1 s ring
    it.pull()
    assert src.ring.overflows == 1 and it.raw_pos == x.shape[0]
    np.testing.assert_array_equal(ring_content(it), x[-SR:, 0])
