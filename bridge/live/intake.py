"""Audio intake: the input's raw blocks -> 16 kHz mono in a ring, onsets, and when each sample arrived.

The audio callback only copies raw frames into the source's ring (bridge/audio/input.py). On the worker,
`Intake.pull` reads what came in since the last call, converts it (mono, sanitise, resample: Converter),
appends it to the 16 kHz ring the modes cut their windows from, runs the onset detector over it and
remembers when it arrived, so that `arrival_of` can date any 16 kHz position for the latency figures.
Positions are absolute 16 kHz sample counts; times are time.monotonic() s. Worker thread only, except
that the status thread reads `onset.level_db`, `converter`'s counts and `ring16.written`.
"""

from __future__ import annotations

import collections
import time
from typing import Sequence

import numpy as np

from synthmatch.bridge.audio.input import Converter
from synthmatch.bridge.audio.onset import OnsetDetector, OnsetSettings
from synthmatch.bridge.audio.ring import Ring

RING16_SECONDS = 12.0  # 16 kHz history: a 4 s window plus slack for a late trigger
ARRIVALS = 4096  # arrival stamps kept (16 kHz blocks)


class Intake:
    """The worker's side of an input source (bridge.audio.input: a device or a file, with `ring`,
    `sample_rate`, `channels`, `generation`, `eof`) at `sample_rate` Hz mono: 16 kHz ring + onsets.

    channel: 0 mixes all channels to mono, N takes channel N only (1-based; input.channel)."""

    def __init__(self, source, sample_rate: int, onset: OnsetSettings, channel: int = 0):
        self.source = source
        self.sr = sample_rate
        self.ring16 = Ring(int(RING16_SECONDS * sample_rate), 1)  # written here; the modes read windows
        self.converter = Converter(source.sample_rate, sample_rate, source.channels, channel)
        self.onset = OnsetDetector(onset, sample_rate)
        self.raw_pos = 0  # source ring position read up to
        self.block_s = 0.0  # longest input block seen, s: how far a sample's arrival lags its capture
        self._gen = source.generation
        self._arrivals: collections.deque = collections.deque(maxlen=ARRIVALS)  # (end16, monotonic time)

    def pull(self) -> Sequence[int] | None:
        """Take in what the source delivered since the last call -> the onsets in it (16 kHz positions, in
        order); None when nothing new arrived."""
        ring = self.source.ring
        raw, start = ring.read_since(self.raw_pos)
        if not raw.shape[0]:
            return None
        self.block_s = max(self.block_s, raw.shape[0] / self.source.sample_rate)
        self.raw_pos = start + raw.shape[0]
        # arrival of the block holding the newest frame read (stamped by the producer)
        return self.ingest(raw, ring.arrival_time(self.raw_pos))

    def drained(self) -> bool:
        """The source ended (end of file input) and everything it delivered has been taken in."""
        return bool(self.source.eof) and self.source.ring.written == self.raw_pos

    def ingest(self, raw: np.ndarray, t_arrival: float) -> Sequence[int]:
        """Raw (frames, channels) at the source's rate, arrived at t_arrival -> onsets found in it."""
        if self.source.generation != self._gen:  # the device was reopened: new resampler state
            self._gen = self.source.generation
            self.converter.reset()
        x = self.converter(raw)
        if x.size == 0:
            return ()
        pos = self.ring16.written
        self.ring16.write(x)
        self.ring16.read_pos = self.ring16.written  # nobody consumes ring16 sequentially
        self._arrivals.append((self.ring16.written, t_arrival))
        return self.onset.process(x, pos)

    def arrival_of(self, end: int) -> float:
        """Arrival time of the block holding 16 kHz sample end - 1 (the newest sample of a window): the
        oldest block remembered that ends at or after `end`; now if none does (not taken in yet)."""
        for e, t in self._arrivals:
            if e >= end:
                return t
        return time.monotonic()
