"""The live matcher (bridge/match/search.py): never worse than the network by the full distance, finds a
rendered patch from a wrong guess, keeps a budget counted on its own clock, keeps what is playing unless
another is clearly closer. Torch-free: sounds come from bridge/match/synth.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.match.distance import Target
from synthmatch.bridge.match.search import MatchConfig, Matcher

C = contract_mod.default()
NAMES = list(C.names)


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(C)


def _audible(seed: int, n: int) -> np.ndarray:
    """n random patches that sound: quick attack, an open lowpass, oscillator 1 up, every oscillator on a
    whole semitone (where instruments sit, and what the pitch sweep tries first)."""
    v = np.random.default_rng(seed).random((n, 16)).astype(np.float32)
    for name, lo, hi in (("env_attack", 0.0, 0.3), ("filter1_cutoff", 0.6, 1.0), ("osc1_gain", 0.6, 1.0)):
        v[:, NAMES.index(name)] = lo + (hi - lo) * v[:, NAMES.index(name)]
    for j in (1, 2, 3):
        p = C.param(f"osc{j}_pitch")
        k = NAMES.index(p.name)
        v[:, k] = [p.to_normalised(round(p.to_physical(x))) for x in v[:, k]]
    return v


def _semitones(v: float, name: str) -> float:
    return float(C.param(name).to_physical(v))


def _wrong_guess(truth: np.ndarray) -> np.ndarray:
    """What a network unsure of pitch does: oscillator 1 an octave off, the filter and gains averaged."""
    guess = truth.copy()
    p = C.param("osc1_pitch")
    guess[NAMES.index("osc1_pitch")] = p.to_normalised(np.clip(p.to_physical(truth[0]) + 12, p.min, p.max - 12))
    for name in ("filter1_cutoff", "osc2_gain", "osc3_gain"):
        guess[NAMES.index(name)] = 0.5
    return guess


def test_finds_a_rendered_patch_from_a_wrong_guess(matcher):
    truths = _audible(seed=11, n=4)
    audio = matcher.synth.render(truths)
    for truth, x in zip(truths, audio):
        guess = _wrong_guess(truth)
        r = matcher.match(x, 60.0, guess, budget_ms=2000)
        assert r.distance < 0.6 * r.network_distance, (r.distance, r.network_distance)
        assert r.source in ("search", "network") and r.judged > 100
        heard = _semitones(r.values[0], "osc1_pitch") - _semitones(truth[0], "osc1_pitch")
        assert abs(heard) % 12 < 0.6 or abs(heard) % 12 > 11.4  # the octave error is gone (or octave-equivalent)


def test_never_farther_than_the_network_by_the_full_distance(matcher):
    rng = np.random.default_rng(5)
    targets = matcher.synth.render(_audible(seed=12, n=6))
    for x in targets:
        guess = rng.random(16).astype(np.float32)
        for budget in (5, 40, 300):
            r = matcher.match(x, 60.0, guess, budget_ms=budget)
            full = Target(x).distance(matcher.synth.render(r.values[None]))[0]
            assert r.distance == pytest.approx(full, rel=1e-9)
            assert r.distance <= r.network_distance + 1e-12


def test_the_budget_is_kept_on_the_matchers_own_clock():
    """Counted, not timed: a clock that moves 1 ms per reading (a fresh matcher: its cost estimates are
    learnt from that clock alone). A smaller budget judges fewer candidates and says it stopped early; a
    budget of 0 sends the network's answer unjudged."""
    matcher = Matcher(C)
    x = matcher.synth.render(_audible(seed=13, n=1))[0]
    guess = np.full(16, 0.5, np.float32)
    judged = []
    for budget in (30, 120, 4000):  # the whole search reads the clock ~200 times
        ticks = itertools.count()
        r = matcher.match(x, 60.0, guess, budget_ms=budget, clock=lambda: next(ticks) * 1e-3)
        assert r.seconds <= budget / 1000 + 1e-9  # the call's own reading of its clock
        judged.append((r.judged, r.stopped_early))
    assert judged[0][0] < judged[1][0] < judged[2][0] and judged[0][1] and judged[1][1] and not judged[2][1]
    r = matcher.match(x, 60.0, guess, budget_ms=0)
    assert r.source == "network" and r.judged == 0 and r.renders == 0 and np.array_equal(r.values, guess)


def test_the_answer_playing_is_kept_unless_another_is_clearly_closer():
    """The previous answer and the network's, both a little off; no search (the candidates are the starts)."""
    truth = _audible(seed=14, n=1)[0]
    x = Matcher(C).synth.render(truth[None])[0]
    k = NAMES.index("filter1_cutoff")
    playing, network = truth.copy(), truth.copy()
    playing[k] += 0.06
    network[k] += 0.05
    judge = Target(x).distance(Matcher(C).synth.render(np.stack([playing, network])))
    assert 0.5 * judge[0] < judge[1] < judge[0]  # the network's is closer, but not by half
    for margin, kept in ((0.5, True), (0.0, False)):
        matcher = Matcher(C, MatchConfig(keep_margin=margin, passes=0, generations=0))
        r = matcher.match(x, 60.0, network, previous=playing, budget_ms=1000)
        assert (r.source == "previous" and np.array_equal(r.values, playing)) == kept, (margin, r.source)


def test_matches_at_other_notes(matcher):
    truth = _audible(seed=15, n=1)[0]
    for note in (40, 72):
        x = matcher.synth.render(truth[None], note)[0]
        r = matcher.match(x, float(note), _wrong_guess(truth), budget_ms=2000)
        assert r.distance < 0.6 * r.network_distance


def test_config_refuses_nonsense():
    with pytest.raises(ValueError, match="budget_ms"):
        MatchConfig(budget_ms=-1)
    with pytest.raises(ValueError, match="finalists"):
        MatchConfig(finalists=0)
