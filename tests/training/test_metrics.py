"""training.model.metrics: hand-computed cases and real synth sounds."""

from __future__ import annotations

import math

import pytest
import torch

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.training.data.onthefly import OnTheFly
from synthmatch.training.model import metrics


def test_param_mse_hand_computed():
    pred = torch.tensor([[0.0, 0.5], [1.0, 0.5]])
    target = torch.tensor([[0.5, 0.5], [0.0, 0.0]])
    overall, per = metrics.param_mse(pred, target)
    # param 0: (0.25 + 1) / 2 = 0.625; param 1: (0 + 0.25) / 2 = 0.125; overall 0.375
    assert per.tolist() == pytest.approx([0.625, 0.125])
    assert float(overall) == pytest.approx(0.375)
    with pytest.raises(ValueError, match=r"\(N, P\)"):
        metrics.param_mse(pred, target[:, :1])


def test_spectral_convergence_hand_computed():
    S = torch.tensor([[[3.0, 0.0], [0.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]])  # ||S|| = 5 and 2
    S_hat = torch.tensor([[[3.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])  # diff 4 and 0
    assert metrics.spectral_convergence_spec(S, S_hat).tolist() == pytest.approx([0.8, 0.0])
    # silence against silence is a perfect match, not 0 / 0
    z = torch.zeros(1, 3, 3)
    assert metrics.spectral_convergence_spec(z, z).item() == 0.0


def test_sc_of_a_sine_and_its_scaled_copy():
    # S_hat = a S for any scale a gives SC = |1 - a| exactly, whatever the STFT
    t = torch.arange(16000) / 16000
    x = torch.sin(2 * math.pi * 440 * t)[None]
    assert metrics.spectral_convergence(x, x).item() == 0.0
    assert metrics.spectral_convergence(x, 0.5 * x).item() == pytest.approx(0.5, abs=1e-5)
    assert metrics.spectral_convergence(x, 1.5 * x).item() == pytest.approx(0.5, abs=1e-5)
    assert metrics.spectral_convergence(x, torch.zeros_like(x)).item() == pytest.approx(1.0, abs=1e-6)
    # a different pitch shares no bins: SC near sqrt(2)
    y = torch.sin(2 * math.pi * 880 * t)[None]
    assert metrics.spectral_convergence(x, y).item() == pytest.approx(math.sqrt(2), abs=0.05)


def test_metrics_on_synth_sounds_are_per_example_and_ordered():
    c = contract_mod.default()
    audio, params = OnTheFly(c, seed=0, batch_size=4).batch(0)
    sc = metrics.spectral_convergence(audio, audio)
    mss = metrics.multiscale_spectral_distance(audio, audio)
    assert sc.shape == (4,) and mss.shape == (4,)
    assert sc.abs().max() == 0 and mss.abs().max() == 0
    # a slightly louder copy is closer than a different patch, on both spectral metrics
    other = audio.roll(1, dims=0)
    near_sc, far_sc = metrics.spectral_convergence(audio, 1.1 * audio), metrics.spectral_convergence(audio, other)
    assert torch.allclose(near_sc, torch.full((4,), 0.1), atol=1e-4)
    assert (far_sc > 0.3).all()
    near, far = (
        metrics.multiscale_spectral_distance(audio, 1.1 * audio),
        metrics.multiscale_spectral_distance(audio, other),
    )
    assert (near < far).all() and (near > 0).all()
    assert metrics.SC_STFT["n_fft"] == 1024 and metrics.SC_STFT["hop_length"] == 256
