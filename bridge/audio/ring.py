"""Single-producer / single-consumer ring buffer of float32 frames, addressed by absolute sample position.

The producer (an audio callback) only copies a block in and then advances `written`, a monotonically
growing sample counter (Python int: never wraps). The consumer reads by absolute position: everything
since a position, the latest n frames, or an exact window [start, start + n). A reader that fell more
than `capacity` frames behind has lost data: that is detected from the counters alone and counted in
`overflows` (the lost frames in `lost_frames`), and the read resumes at the oldest frame still held.

Thread safety relies on the GIL making the single `written` store atomic, and on the order of work:
the writer copies before it publishes; the reader copies, then re-reads `written` to verify that the
writer did not lap the region it copied meanwhile.
"""

from __future__ import annotations

import time

import numpy as np


class Ring:
    """Preallocated (capacity, channels) float32 buffer; one writer thread, one reader thread."""

    STAMPS = 1024  # arrival times remembered (blocks)

    def __init__(self, capacity: int, channels: int = 1):
        if capacity <= 0 or channels <= 0:
            raise ValueError(f"capacity and channels must be > 0 (got {capacity}, {channels})")
        self.capacity = int(capacity)
        self.channels = int(channels)
        self._buf = np.zeros((self.capacity, self.channels), dtype=np.float32)
        self.written = 0  # absolute count of frames ever written (producer-owned)
        self.read_pos = 0  # where the consumer has read up to (consumer-owned, producer may look)
        self.last_write_time = 0.0  # time.monotonic() of the newest block, s (for latency figures)
        # arrival stamps of the last STAMPS writes: (end position, monotonic time), preallocated
        self._stamp_end = np.zeros(self.STAMPS, dtype=np.int64)
        self._stamp_t = np.zeros(self.STAMPS, dtype=np.float64)
        self._writes = 0
        self.overflows = 0  # times the reader found data overwritten before it read it
        self.lost_frames = 0

    # ---- producer side (called from the audio callback: copies only, no allocation) ----
    def write(self, block: np.ndarray) -> None:
        """Copy a (frames, channels) or (frames,) block in and publish it. Keeps the newest capacity."""
        n = block.shape[0]
        if n == 0:
            return
        if block.ndim == 1:
            block = block.reshape(n, 1)  # a view, no copy
        base = self.written
        if n > self.capacity:  # only the newest capacity frames can survive anyway
            base += n - self.capacity
            block = block[n - self.capacity :]
            n = self.capacity
        start = base % self.capacity
        first = min(n, self.capacity - start)
        self._buf[start : start + first] = block[:first]
        if first < n:
            self._buf[: n - first] = block[first:]
        t = time.monotonic()
        i = self._writes % self.STAMPS
        self._stamp_end[i] = base + n
        self._stamp_t[i] = t
        self._writes += 1
        self.last_write_time = t
        self.written = base + n  # publish after the copy

    def arrival_time(self, pos: int) -> float:
        """time.monotonic() when the block holding frame pos - 1 was written (the newest stamp if that
        block is too old to be remembered or not yet written)."""
        k = min(self._writes, self.STAMPS)
        last = self._writes - 1
        best = self.last_write_time
        for j in range(k):  # newest first; stops at the first block ending before pos
            i = (last - j) % self.STAMPS
            if self._stamp_end[i] < pos:
                break
            best = float(self._stamp_t[i])
        return best

    def space(self) -> int:
        """Frames the producer may write without overwriting what the reader has not consumed."""
        return self.capacity - (self.written - self.read_pos)

    # ---- consumer side ----
    def _copy(self, start: int, n: int, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty((n, self.channels), dtype=np.float32)
        s = start % self.capacity
        first = min(n, self.capacity - s)
        out[:first] = self._buf[s : s + first]
        if first < n:
            out[first:n] = self._buf[: n - first]
        return out

    def read_since(self, pos: int, max_frames: int | None = None) -> tuple[np.ndarray, int]:
        """Frames from absolute position pos up to the newest (at most max_frames).

        Returns (data (n, channels) copy, start position). start > pos means frames were lost
        (reader too slow): counted once in overflows. Advances read_pos to the end of what was returned.
        """
        end = self.written
        start = pos
        if end - start > self.capacity:
            self.overflows += 1
            self.lost_frames += end - self.capacity - start
            start = end - self.capacity
        if max_frames is not None:
            end = min(end, start + max_frames)
        n = max(0, end - start)
        data = self._copy(start, n)
        # the writer may have lapped the region while we copied: drop the overwritten head
        lapped = self.written - self.capacity - start
        if lapped > 0:
            self.overflows += 1
            self.lost_frames += lapped
            data = data[lapped:]
            start += lapped
        self.read_pos = start + data.shape[0]
        return data, start

    def window(self, start: int, n: int) -> np.ndarray | None:
        """The exact frames [start, start + n), or None if not all written yet or already overwritten."""
        if start < 0 or start + n > self.written or self.written - start > self.capacity:
            return None
        data = self._copy(start, n)
        if self.written - start > self.capacity:  # lapped during the copy
            return None
        return data

    def latest(self, n: int) -> tuple[np.ndarray, int]:
        """The newest min(n, available) frames and their start position."""
        end = self.written
        n = min(n, end, self.capacity)
        start = end - n
        return self._copy(start, n), start
