"""argparse types shared by the runtime's and training's commands: each refuses bad text with advice, and
argparse exits 2 naming the flag."""

from __future__ import annotations

import argparse
import math


def whole(lo: int, hi: int | None, advice: str):
    """An argparse type: a whole number in lo..hi (hi None: no upper bound); anything else is refused
    with `advice`, and argparse exits 2 naming the flag."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = lo - 1
        if n < lo or (hi is not None and n > hi):
            raise argparse.ArgumentTypeError(f"{text!r}: {advice}")
        return n

    return parse


passes = whole(0, None, "give a whole number of passes >= 0 (0 turns it off)")  # --refine-passes
seed = whole(0, None, "give a whole number >= 0")  # patches are f(seed); numpy refuses negative seeds
note = whole(0, 127, "give a MIDI note 0..127 (60 = C4)")  # render --note


def milliseconds(text: str) -> float:
    """argparse type of a time budget: a finite number of milliseconds, 0..5000."""
    try:
        x = float(text)
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and 0 <= x <= 5000):
        raise argparse.ArgumentTypeError(f"{text!r}: give milliseconds from 0 to 5000 (0 turns it off)")
    return x


def seconds(text: str) -> float:
    """argparse type of --seconds: a finite number > 0."""
    try:
        x = float(text)
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds > 0 (leave it out to run until stopped)")
    return x


def add_contract(p: argparse.ArgumentParser) -> None:
    p.add_argument("--contract", default=None, help="contract TOML (default: configs/contract.toml)")
