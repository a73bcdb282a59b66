"""Level-based onset detection and a silence gate on the 16 kHz mono stream.

Level is measured per frame of `frame` samples, frames aligned to absolute stream positions
(multiples of `frame`), so the result never depends on how the stream was cut into blocks.
An onset fires when the detector is armed and a frame's RMS reaches `threshold_db` (dBFS), or when a
frame jumps `rise_db` above the quietest of the previous few frames (a new note over a ringing tail).
After an onset the detector disarms until the level falls `hysteresis_db` below the threshold
(re-arm), and no onset fires within `holdoff_s` of the previous one.

The level is a follower of the frame RMS that rises at once and falls at most `release_db_s`, so
the flicker of a decaying tail neither re-arms nor re-triggers. The reported position is the exact
sample where the sound starts: from the first sample at threshold
the detector walks back (at most `lookback_ms`) to the end of the last run of `quiet_run` samples below
`floor_db`. A note rendered after digital silence is thus found at its first audible sample, which is
where the training sounds start (sample 0 = note-on); the analysis window starts there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from synthmatch.bridge.core.loader import within


def db_to_amp(db: float) -> float:
    return 10.0 ** (db / 20.0)


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level of a block in dBFS (full scale = 1.0); -inf... floored at -200 dB for empty/silent input."""
    if x.size == 0:
        return -200.0
    ms = float(np.mean(np.square(x, dtype=np.float64)))
    return 10.0 * math.log10(ms) if ms > 1e-20 else -200.0


@dataclass
class OnsetSettings:
    # The ranges (checked by core.loader): levels are dBFS; times stay well inside the 4 s window.
    # frame RMS (dBFS) that starts a note
    threshold_db: float = field(default=-40.0, metadata=within(-200, 0, low_open=True, unit=" dBFS"))
    # re-arm once the level falls this far below the threshold
    hysteresis_db: float = field(default=6.0, metadata=within(0, 200, unit=" dB"))
    # no second onset within this time of the previous one
    holdoff_s: float = field(default=0.3, metadata=within(0, 60, unit=" s"))
    # a jump this far above the quietest recent frame also triggers; 0 = off
    rise_db: float = field(default=18.0, metadata=within(0, 200, unit=" dB", note="0 = off"))
    # the level follower falls at most this fast (dB/s): tails do not flicker
    release_db_s: float = field(default=60.0, metadata=within(0, 100000, low_open=True, unit=" dB/s"))
    # below this a sample counts as quiet when locating the exact start
    floor_db: float = field(default=-70.0, metadata=within(-200, 0, unit=" dBFS"))
    # how far back from the threshold crossing the start may lie (slow attacks)
    lookback_ms: float = field(default=300.0, metadata=within(0, 2000, unit=" ms"))
    # samples per level frame (4 ms at 16 kHz; 1024 = 64 ms, longer frames would smear every onset)
    frame: int = field(default=64, metadata=within(8, 1024, unit=" samples"))

    def validate(self, where: str = "onset") -> None:
        from synthmatch.bridge.core.errors import UsageError

        if self.floor_db >= self.threshold_db:
            raise UsageError(f"{where}.floor_db = {self.floor_db} must lie below threshold_db = {self.threshold_db}")


class OnsetDetector:
    """Feed contiguous blocks with `process(x, start)`; get exact onset sample positions back."""

    QUIET_RUN = 16  # consecutive quiet samples (1 ms) that mark "before the note"
    RISE_FRAMES = 6  # frames the rise detector compares against

    def __init__(self, settings: OnsetSettings, sample_rate: int):
        self.s = settings
        self.frame = int(settings.frame)
        self.thr = db_to_amp(settings.threshold_db)
        self.rearm_db = settings.threshold_db - settings.hysteresis_db
        self.floor = db_to_amp(settings.floor_db)
        self.holdoff = int(round(settings.holdoff_s * sample_rate))
        self.release_per_frame = settings.release_db_s * self.frame / sample_rate
        self.lookback = int(round(settings.lookback_ms * sample_rate / 1000))
        self.reset(0)

    def reset(self, pos: int) -> None:
        """Forget the past; the next block starts at absolute position pos."""
        self.armed = True
        self.last_onset = -(1 << 62)
        self.level_db = -200.0
        self._levels: list[float] = []
        self._hist = np.zeros(0, dtype=np.float32)  # samples [hist_start, next_pos)
        self._hist_start = pos
        self._frame_pos = pos - (pos % self.frame) if pos % self.frame == 0 else pos + (-pos % self.frame)
        self._next = pos

    def process(self, x: np.ndarray, start: int) -> list[int]:
        """x: mono float32 samples at absolute positions [start, start + len(x)). Returns onsets found."""
        if start != self._next:  # a gap or overlap: positions are the contract, so start over there
            self.reset(start)
        x = np.asarray(x, dtype=np.float32)
        self._next = start + x.size
        buf = np.concatenate([self._hist, x]) if self._hist.size else x
        base = self._hist_start
        onsets: list[int] = []
        f = self.frame
        while self._frame_pos + f <= self._next:
            i0 = self._frame_pos - base
            if i0 < 0:  # frame began before the stream (first partial frame): skip it
                self._frame_pos += f
                continue
            fr = buf[i0 : i0 + f]
            # level follower: rises at once, falls at most release_db_s
            level = max(rms_dbfs(fr), self.level_db - self.release_per_frame)
            onset = self._decide(level, fr, buf, base, i0)
            if onset is not None:
                onsets.append(onset)
            self._levels.append(level)
            del self._levels[: -self.RISE_FRAMES]
            self.level_db = level
            self._frame_pos += f
        keep = self.lookback + self.QUIET_RUN + f
        cut = max(0, buf.size - keep)
        self._hist = buf[cut:].copy()
        self._hist_start = base + cut
        return onsets

    def _decide(self, level: float, fr: np.ndarray, buf: np.ndarray, base: int, i0: int) -> int | None:
        if not self.armed and level < self.rearm_db:
            self.armed = True
        trig = level >= self.s.threshold_db and (
            self.armed
            or (
                self.s.rise_db > 0
                and len(self._levels) == self.RISE_FRAMES
                and level - min(self._levels) >= self.s.rise_db
            )
        )
        if not trig:
            return None
        above = np.flatnonzero(np.abs(fr) >= self.thr)
        k = i0 + (int(above[0]) if above.size else 0)  # index in buf of the first sample at threshold
        pos = base + self._exact_start(buf, k)
        if pos - self.last_onset < self.holdoff:
            return None
        self.armed = False
        self.last_onset = pos
        return pos

    def _exact_start(self, buf: np.ndarray, k: int) -> int:
        """Walk back from index k to the end of the last quiet run (within lookback); k if there is none."""
        lo = max(0, k - self.lookback - self.QUIET_RUN)
        quiet = np.abs(buf[lo:k]) < self.floor
        if quiet.size < self.QUIET_RUN:
            return k
        # run length of quiet samples ending at each index; find the last index ending a long enough run
        run = np.convolve(quiet.astype(np.int32), np.ones(self.QUIET_RUN, dtype=np.int32), mode="valid")
        full = np.flatnonzero(run == self.QUIET_RUN)  # run ending at lo + j + QUIET_RUN - 1
        if full.size == 0:
            return k
        end = lo + int(full[-1]) + self.QUIET_RUN  # first sample after the quiet run
        # the run may continue towards k: skip further quiet samples up to the first loud one
        while end < k and abs(buf[end]) < self.floor:
            end += 1
        return end


def offline_onsets(audio: np.ndarray, settings: OnsetSettings, sample_rate: int) -> list[int]:
    """Onsets of a whole signal at once (the reference the streaming result must equal)."""
    return OnsetDetector(settings, sample_rate).process(audio, 0)
