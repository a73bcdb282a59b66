"""Held-note windows for the performance model (training/data/held.py): example i is a pure function of
(seed, i) whatever the batch; its label is the one-shot stream's patch; a window without a switch is that
one-shot's audio, cut; a switch window is the partner's audio before it and the labelled patch's after it,
the new sound filling at least MIN_SHARE; the partner keeps the envelope and reverb."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.training.data import held
from synthmatch.training.data.onthefly import Renderer

C = contract_mod.default()
W = 6400  # 0.4 s
NOTES = (36, 84)


@pytest.fixture(scope="module")
def batch():
    r = held.HeldRenderer(C, 3, W, notes=NOTES)
    x, p = r.render(0, 16)
    return r, x, p


def test_example_i_is_the_same_in_any_batch(batch):
    r, x, p = batch
    x2, p2 = held.HeldRenderer(C, 3, W, notes=NOTES).render(5, 11)
    assert torch.equal(x2, x[5:11]) and torch.equal(p2, p[5:11])
    assert x.shape == (16, W) and x.dtype == torch.float32 and torch.isfinite(x).all()


def test_the_label_and_the_window_come_from_the_one_shot_stream(batch):
    r, x, p = batch
    one = Renderer(C, 3, notes=NOTES)
    audio, params = one.render(0, 16)
    assert torch.equal(p, params) and torch.equal(r.notes(0, 16), one.notes(0, 16))
    plans = [r.crop_plan(i) for i in range(16)]
    assert any(s < 0 for _, s in plans) and any(s >= 0 for _, s in plans)  # both kinds in 16
    for i, (end, switch) in enumerate(plans):
        assert r.first_end <= end <= r.last_end
        if switch < 0:
            assert torch.equal(x[i], audio[i, end - W : end])
        else:  # the new sound fills the window's end, at least MIN_SHARE of it
            assert end - switch >= held.MIN_SHARE * W - 1
            fade = int(held.CROSSFADE_S * C.audio.sample_rate)
            after = switch + fade - (end - W)  # first sample past the crossfade, in the window
            assert torch.allclose(x[i, after:], audio[i, end - W + after : end])


def test_a_switch_moves_the_timbre_only(batch):
    r, x, p = batch
    partner = r.partner_params(0, 16)
    kept = [C.names.index(n) for n in held.KEPT]
    moved = [i for i in range(16) if i not in kept]
    np.testing.assert_array_equal(partner[:, kept], p.numpy()[:, kept])
    assert (np.abs(partner[:, moved] - p.numpy()[:, moved]) > 1e-6).mean() > 0.9
    a_audio, _ = r.render_patches(0, 16, r.partner_params)
    i = next(i for i in range(16) if r.crop_plan(i)[1] >= 0)
    end, switch = r.crop_plan(i)
    fade = int(held.CROSSFADE_S * C.audio.sample_rate)
    before = switch - fade - (end - W)  # last sample before the crossfade, in the window
    if before > 0:
        assert torch.allclose(x[i, :before], a_audio[i, end - W : end - W + before])
