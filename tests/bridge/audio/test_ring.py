"""Ring buffer: absolute positions, wrap-around, overflow detection, one real producer thread."""

from __future__ import annotations

import threading

import numpy as np

from synthmatch.bridge.audio.ring import Ring


def ramp(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.float32)


def test_wraps_and_addresses_windows_by_absolute_position():
    r = Ring(100)
    pos = 0
    for n in (30, 45, 60, 7, 99):  # crosses the end of the buffer several times
        r.write(ramp(pos, n))
        pos += n
    assert r.written == pos == 241
    w = r.window(150, 80)
    np.testing.assert_array_equal(w[:, 0], ramp(150, 80))
    assert r.window(100, 10) is None  # overwritten (older than capacity)
    assert r.window(200, 50) is None  # not written yet
    latest, start = r.latest(64)
    assert start == 241 - 64
    np.testing.assert_array_equal(latest[:, 0], ramp(start, 64))


def test_read_since_counts_overflow_when_reader_falls_behind():
    r = Ring(100, channels=2)
    block = np.stack([ramp(0, 70), -ramp(0, 70)], axis=1)
    r.write(block)
    data, start = r.read_since(0)
    assert start == 0 and data.shape == (70, 2) and r.overflows == 0
    np.testing.assert_array_equal(data[:, 1], -ramp(0, 70))
    r.write(np.stack([ramp(70, 150), ramp(70, 150)], axis=1))  # 150 > capacity: reader lost 120 frames
    data, start = r.read_since(70)
    assert r.overflows == 1 and r.lost_frames == 50  # frames 70..119
    assert start == 220 - 100 and data.shape[0] == 100
    np.testing.assert_array_equal(data[:, 0], ramp(120, 100))
    assert r.read_pos == 220 and r.space() == 100


def test_concurrent_producer_consumer_lose_nothing_when_consumer_keeps_up():
    r = Ring(4096)
    total, block = 400_000, 97
    got: list[np.ndarray] = []
    done = threading.Event()

    def produce():
        src = ramp(0, total)
        pos = 0
        while pos < total:
            n = min(block, total - pos)
            while r.space() < n:  # a polite producer (the file source's fast mode)
                pass
            r.write(src[pos : pos + n])
            pos += n
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    pos = 0
    while not (done.is_set() and pos == r.written):
        data, start = r.read_since(pos)
        assert start == pos
        got.append(data[:, 0])
        pos += data.shape[0]
    t.join()
    out = np.concatenate(got)
    assert r.overflows == 0
    np.testing.assert_array_equal(out, ramp(0, total))


def test_arrival_time_of_the_block_holding_a_position():
    import time

    r = Ring(1000)
    times = []
    for k in range(5):
        r.write(ramp(100 * k, 100))
        times.append(r.last_write_time)
        time.sleep(0.002)
    assert r.arrival_time(100) == times[0]  # frame 99: the first block
    assert r.arrival_time(101) == times[1]  # frame 100: the second
    assert r.arrival_time(500) == times[4]
    assert times[0] < times[1] < times[4]
