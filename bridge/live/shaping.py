"""Continuous mode's arithmetic, as pure functions (state in, state out; no clock, no threads, no sinks):

    next_hop      which window end to analyse next, skipping hops the worker is too late for
    pitch_resend  whether the note moved enough to go out although the values are held
    shape         one-pole smoothing, deadband and rate limit of one hop's model output

The worker (bridge/live/daemon.py) keeps the state these take and return: the next window end, the
smoothed values, the newest update sent (values, time, pitch). Values are normalised parameters in [0, 1],
(16,) float32; positions are 16 kHz sample counts; times are seconds.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from synthmatch.bridge.live.config import ContinuousSettings

PITCH_STEP = 0.02  # semitones: a pitch moved this much is sent (pitch bend) even when the values are held
#                   by deadband or rate limit (about 80 steps of a +-2 semitone bend)


class Hop(NamedTuple):
    end: int  # end of the window to analyse now (exclusive sample position)
    next_end: int  # end of the window after it
    skipped: int  # hops dropped because the worker was late (counted in skipped_hops)


def next_hop(written: int, next_end: int, hop: int, catch_up: bool) -> Hop:
    """The hop due now, given `written` samples in the ring and the planned end `next_end` (<= written).

    A worker a whole hop or more behind jumps to the newest complete hop (the dropped ones are `skipped`)
    unless `catch_up` (files, benchmarks: every hop is analysed)."""
    skipped = 0
    if not catch_up and written - next_end >= hop:  # late: jump to the newest hop
        skipped = (written - next_end) // hop
        next_end += skipped * hop
    return Hop(next_end, next_end + hop, skipped)


def pitch_resend(voiced: bool, midi: float, sent_midi: float | None, held: int | None, changed: bool) -> bool:
    """Whether this hop goes out even when shaping holds its values: a new note (`changed`), or a held
    note whose heard pitch moved more than PITCH_STEP from the pitch last sent (a glide: pitch bend).

    voiced, midi: the hop's pitch estimate (fractional MIDI note); sent_midi: the newest update's pitch
    (None: none sent, or it was unvoiced); held: the note held (None: none); changed: the held note
    changed with this hop."""
    moved = voiced and (sent_midi is None or abs(midi - sent_midi) > PITCH_STEP)
    return changed or (moved and held is not None)


class Shaped(NamedTuple):
    out: np.ndarray | None  # the values to send, (16,) float32; None: nothing goes out this hop
    smooth: np.ndarray  # the smoothing state for the next hop (a new array; the input one is not touched)


def shape(
    values: np.ndarray,
    smooth: np.ndarray | None,
    last_sent: np.ndarray | None,
    since_sent_s: float,
    settings: ContinuousSettings,
    hop_s: float,
    resend: bool = False,
) -> Shaped:
    """One hop of continuous post-processing (settings: bridge.live.config.ContinuousSettings).

    values: the model's output (16,) float32; smooth: the previous hop's smoothed values (None: first
    hop); last_sent: the newest update's values, from any mode (None: none yet); since_sent_s: seconds since
    it went out (math.inf if never); hop_s: the hop, s; resend (pitch_resend): send even when held.

    1. one-pole smoothing with time constant settings.smoothing_s (0: none) at one step per hop;
    2. deadband: a parameter moves only if it is more than settings.deadband away from last_sent, the
       others keep last_sent's value; none moved -> nothing to send;
    3. rate limit: nothing within 1 / settings.max_rate_hz of the last update (0: unlimited);
    4. held by 2 or 3 but `resend`: last_sent goes out again (with the new note or pitch).
    """
    if smooth is None or settings.smoothing_s <= 0:
        smooth = values.copy()
    else:
        a = 1.0 - math.exp(-hop_s / settings.smoothing_s)
        step = values - smooth  # the one array this step allocates: it becomes the new state
        step *= a
        step += smooth
        smooth = step
    out = _deadband_and_rate(smooth, last_sent, since_sent_s, settings)
    if out is None and resend and last_sent is not None:
        out = last_sent  # a new note or a pitch glide goes out even when the values are held
    return Shaped(out, smooth)


def _deadband_and_rate(
    y: np.ndarray, last_sent: np.ndarray | None, since_sent_s: float, settings: ContinuousSettings
) -> np.ndarray | None:
    if last_sent is not None:
        moved = np.abs(y - last_sent) > settings.deadband
        if not moved.any():
            return None
        y = np.where(moved, y, last_sent)
    if settings.max_rate_hz > 0 and since_sent_s < 1.0 / settings.max_rate_hz:
        return None
    return y.astype(np.float32)
