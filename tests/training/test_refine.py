"""training.refine: the search by re-rendering finds what the sound reveals and never makes a match worse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.training.model.metrics import multiscale_spectral_distance
from synthmatch.training.refine import RefineConfig, refine
from synthmatch.training.synths.reference import ReferenceSynth

C = contract_mod.default()
SEMITONE = 1 / 48  # osc pitch spans -24..+24 semitones over [0, 1]


@pytest.fixture(scope="module")
def synth():
    return ReferenceSynth(C)


def patch(**values) -> np.ndarray:
    v = np.full(len(C.params), 0.5, np.float32)
    v[[C.names.index(n) for n in ("osc2_gain", "osc3_gain")]] = 0.0  # one oscillator sounding
    for name, x in values.items():
        v[C.names.index(name)] = x
    return v


def test_a_wrong_pitch_is_found_by_ear(synth):
    truth = np.stack(
        [
            patch(osc1_pitch=0.5 + 7 * SEMITONE, osc1_gain=0.8, filter1_cutoff=0.8),
            patch(osc1_pitch=0.5 - 12 * SEMITONE, osc1_gain=0.6, filter1_cutoff=0.9),
        ]
    )
    audio = synth.render(torch.from_numpy(truth))
    guess = truth.copy()
    guess[:, 0] = [0.5 - 5 * SEMITONE, 0.5 + 3 * SEMITONE]  # the network's kind of mistake
    cfg = RefineConfig(passes=4, only=("osc1_pitch",), from_mean=False)
    found, before, after = refine(C, audio, guess, cfg, synth=synth)
    assert np.all(np.abs(found[:, 0] - truth[:, 0]) < 0.5 * SEMITONE), (found[:, 0] - truth[:, 0]) / SEMITONE
    assert np.all(after < 0.5 * before)
    # the distances it reports are the metric's own, on the patches it returns
    direct = multiscale_spectral_distance(audio, synth.render(torch.from_numpy(found)))
    np.testing.assert_allclose(after, direct.numpy(), rtol=1e-4)
    untouched = [i for i, n in enumerate(C.names) if n != "osc1_pitch"]
    assert np.array_equal(found[:, untouched], guess[:, untouched])


def test_never_worse_and_silent_oscillators_keep_the_networks_value(synth):
    truth = np.stack([patch(osc1_gain=0.7, filter1_cutoff=0.3), patch(osc1_gain=0.9, env_attack=0.6)])
    audio = synth.render(torch.from_numpy(truth))
    rng = np.random.default_rng(0)
    guess = np.clip(truth + rng.normal(0, 0.15, truth.shape), 0, 1).astype(np.float32)
    guess[:, C.names.index("osc2_gain")] = 0.0  # osc2 silent in the guess too: its pitch cannot be heard
    cfg = RefineConfig(passes=1, only=("filter1_cutoff", "env_attack", "osc2_pitch"), from_mean=False)
    found, before, after = refine(C, audio, guess, cfg, synth=synth)
    assert np.all(after <= before)
    k = C.names.index("osc2_pitch")
    assert np.array_equal(found[:, k], guess[:, k])


def test_zero_passes_and_bad_settings():
    audio = torch.zeros(1, C.audio.num_samples)
    guess = patch()[None]
    found, before, after = refine(C, audio, guess, RefineConfig(passes=0))
    assert np.array_equal(found, guess) and np.array_equal(before, after)
    with pytest.raises(ValueError, match="unknown parameters"):
        refine(C, audio, guess, RefineConfig(passes=1, only=("osc9_pitch",)))
    with pytest.raises(ValueError, match="coarse >= 2"):
        RefineConfig(coarse=1)
    assert RefineConfig().renders_per_sound(C) == 2 * (3 * 49 + 13 * 9 + 16 * 2 * 2 * 2)
    assert RefineConfig(from_mean=False).renders_per_sound(C) == 3 * 49 + 13 * 9 + 16 * 2 * 2 * 2


def test_the_search_from_the_mean_patch_wins_when_the_guess_is_lost(synth):
    """The closer of the two searches (from the guess, from the mean patch) comes back: here the truth
    is the mean patch with another cutoff, the guess is far off everywhere, and only the cutoff may
    move, so only the search from the mean patch can get there."""
    truth = np.full((1, len(C.params)), 0.5, np.float32)
    truth[0, C.names.index("filter1_cutoff")] = 0.625  # on the 9-value grid
    audio = synth.render(torch.from_numpy(truth))
    guess = np.clip(truth + np.random.default_rng(1).choice([-0.3, 0.3], truth.shape), 0, 1).astype(np.float32)
    cfg = dict(passes=1, only=("filter1_cutoff",))
    one = refine(C, audio, guess, RefineConfig(**cfg, from_mean=False), synth=synth)
    both = refine(C, audio, guess, RefineConfig(**cfg, from_mean=True), synth=synth)
    np.testing.assert_array_equal(both[0], truth)
    assert both[2][0] < 0.01 < 0.5 < one[2][0], (one[2], both[2])
    assert np.array_equal(both[1], one[1])  # "before" is the guess's distance either way
