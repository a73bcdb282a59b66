"""Performance mode end to end (issue 19): `synthmatch bridge --mode continuous` on file input with the
shipped model. Every update says where in the input its window ends (stream_s): monotonic, on the hop grid,
the file position; the first update comes within the goal of the onset; a switch of timbre is followed on
the stream's own clock (within 1 s here: the budgets are wall-clock time on a shared machine); the trigger
path's stream_s is the onset plus the 4 s window."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import numpy as np
import pytest

from synthmatch.bridge.audio.onset import OnsetSettings, offline_onsets
from synthmatch.bridge.core import audiofile
from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.match.held import HELD_S
from synthmatch.bridge.match.synth import Synth
from tests.bridge.daemon_util import SR, bridge_cmd
from tests.bridge.match.test_match_held import NOTE, patches

C = contract_mod.default()
LEAD = SR // 2  # silence before the note
SWITCH_S = 3.5  # the timbre switches here (file position)
FIRST_UPDATE_S = 0.3  # issue 19's goal after a voiced onset


@pytest.fixture(scope="module")
def switching(tmp_path_factory):
    audio = dataclasses.replace(C.audio, duration_s=6.0)
    long = Synth(dataclasses.replace(C, audio=audio, synth=dataclasses.replace(C.synth, note_off_s=5.95)))
    a, b = np.pad(long.render(patches(), NOTE), ((0, 0), (LEAD, 0)))
    at = int(SWITCH_S * SR)
    fade = np.clip((np.arange(a.size) - at + 160) / 320, 0, 1).astype(np.float32)
    x = (a * (1 - fade) + b * fade).astype(np.float32)
    path = tmp_path_factory.mktemp("perf") / "switch.wav"
    audiofile.write(path, x, SR)
    return path, x


def run(path, *args: str) -> tuple[list[dict], dict]:
    """The bridge on the file: (its printed lines, its exit counters)."""
    r = subprocess.run(
        bridge_cmd("--input", f"file:{path}", "--fast", "--print", "--no-control", *args),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    [counters] = [ln.split("counters ", 1)[1] for ln in r.stderr.splitlines() if "synthmatch bridge: counters " in ln]
    return [json.loads(ln) for ln in r.stdout.splitlines()], json.loads(counters)


def updates(path, *args: str) -> list[dict]:
    return run(path, *args)[0]


def test_continuous_updates_carry_the_file_position_and_follow_a_switch(switching):
    path, x = switching
    lines, counters = run(path, "--mode", "continuous")
    # the shipped performance model seeded the held matcher every hop once the note filled its 0.4 s
    hops_after_fill = (x.size - LEAD - int(0.4 * SR)) // int(0.05 * SR)
    assert counters["perf_inferences"] >= 0.9 * hops_after_fill, counters
    sent = [ln for ln in lines if "values" in ln]
    s = np.array([ln["stream_s"] for ln in sent])
    assert len(sent) >= 5 and np.all(np.diff(s) > 0)  # monotonic
    ends = np.rint(s * SR).astype(int)  # each a window end on the hop grid (first end: the held window)
    np.testing.assert_allclose(s * SR, ends, atol=0.1)
    assert np.all((ends - int(HELD_S * SR)) % int(0.05 * SR) == 0) and ends[-1] <= x.size
    assert s[0] - LEAD / SR <= FIRST_UPDATE_S
    names = list(C.names)
    v = np.array([[ln["values"][n] for n in names] for ln in sent])
    old = v[s <= SWITCH_S][-1]  # the answers settled on each sound, as played
    new = v[-1]
    assert np.abs(old - new).max() > 0.2
    # the daemon's budgets are wall-clock ms on a shared machine (measured 0.3-0.55 s): 1 s here; the
    # 150 ms goal is tested on a counting clock in tests/bridge/match/test_match_held.py
    after = s >= SWITCH_S + 1.0
    near = np.linalg.norm(v - new, axis=1) < np.linalg.norm(v - old, axis=1)
    assert near[after].all(), s[after][~near[after]]
    offs = [ln for ln in lines if "note_off" in ln]
    assert all(o["stream_s"] >= s[-1] for o in offs)


def test_trigger_snapshots_carry_the_end_of_their_window(switching, tmp_path):
    path, x = switching
    y = np.concatenate([x[: 5 * SR], np.zeros(SR, np.float32)])  # one note, cut before the file's end
    one = tmp_path / "one.wav"
    audiofile.write(one, y, SR)
    (onset,) = offline_onsets(y, OnsetSettings(), SR)
    (snap,) = [ln for ln in updates(one, "--mode", "trigger") if "values" in ln]
    assert snap["stream_s"] == pytest.approx((onset + C.audio.num_samples) / SR, abs=1e-4)
