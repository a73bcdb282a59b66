"""The daemon's answers are the matcher's (refine.budget_ms): on rendered patches played through the daemon
from a file, the values it sends are closer to each note than the network's alone, and the counters say
what the matcher did. Torch-free: the notes come from bridge/match/synth.py, the model is the shipped one."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from synthmatch.bridge.core import audiofile
from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.match.distance import Target
from synthmatch.bridge.match.synth import Synth
from tests.bridge.daemon_util import SR, bridge_cmd, exit_counters

C = contract_mod.default()
GAP = 6 * SR  # samples between note starts: each 4 s window holds one note and its release


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    """Three patches (oscillators on whole semitones, audible) rendered at C4 into one file."""
    rng = np.random.default_rng(8)
    v = rng.random((3, 16)).astype(np.float32)
    names = list(C.names)
    for name, lo, hi in (("env_attack", 0.0, 0.3), ("filter1_cutoff", 0.6, 1.0), ("osc1_gain", 0.6, 1.0)):
        v[:, names.index(name)] = lo + (hi - lo) * v[:, names.index(name)]
    for j in (1, 2, 3):
        p = C.param(f"osc{j}_pitch")
        v[:, names.index(p.name)] = [p.to_normalised(round(p.to_physical(x))) for x in v[:, names.index(p.name)]]
    synth = Synth(C)
    audio = synth.render(v)
    x = np.zeros(GAP * 3 + SR, np.float32)
    for i, a in enumerate(audio):
        x[SR // 2 + i * GAP : SR // 2 + i * GAP + a.size] += a
    path = tmp_path_factory.mktemp("match") / "three.wav"
    audiofile.write(path, x, SR)
    return path, audio, synth


def _sent(path, budget_ms: float) -> tuple[list[tuple[np.ndarray, int]], dict]:
    """(values, the note they are played at) per update, and the exit counters."""
    r = subprocess.run(
        bridge_cmd(
            "--input",
            f"file:{path}",
            "--fast",
            "--mode",
            "trigger",
            "--print",
            "--no-control",
            "--refine-budget",
            str(budget_ms),
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    lines = [json.loads(ln) for ln in r.stdout.splitlines() if '"values"' in ln]
    sent = [(np.array(list(ln["values"].values()), np.float32), ln["note"]["midi"]) for ln in lines]
    return sent, exit_counters(r.stderr)


def test_the_values_sent_are_closer_than_the_networks(notes):
    path, audio, synth = notes
    network, c0 = _sent(path, 0)
    refined, c1 = _sent(path, 1000)
    assert len(network) == len(refined) == 3 and c0["refined"] == 0 and c1["refined"] == 3
    # each answer as the synth plays it: at the note the daemon sends with it
    d_net = [Target(a).distance(synth.render(v[None], n))[0] for a, (v, n) in zip(audio, network)]
    d_ref = [Target(a).distance(synth.render(v[None], n))[0] for a, (v, n) in zip(audio, refined)]
    assert all(r <= n * 1.02 for r, n in zip(d_ref, d_net)), (d_ref, d_net)  # the window may differ a little
    assert np.mean(d_ref) < 0.8 * np.mean(d_net), (d_ref, d_net)
    assert c1["refine_distance_after_p50"] < c1["refine_distance_before_p50"]
    assert c1["refine_ms_p50"] is not None and c1["refine_errors"] == 0
