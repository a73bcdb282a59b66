"""The numpy renderer and distance against training's torch synth and metric (skipped without torch).

Thresholds, met with margin (figures on 2 cores: max |diff| 3.6e-7, correlation 1 - 1e-13, MSS 0.019):
per sample, |numpy - torch| <= 1e-5 and correlation >= 0.99999; by the multi-scale distance, <= 0.05
(distances between different patches are 1 to 10; what remains comes from the log term in near-silent
bins). The distance itself agrees to rtol 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from synthmatch.bridge.core import contract as contract_mod  # noqa: E402
from synthmatch.bridge.match import distance  # noqa: E402
from synthmatch.bridge.match.synth import Synth  # noqa: E402
from synthmatch.training.model import metrics  # noqa: E402
from synthmatch.training.synths.reference import ReferenceSynth  # noqa: E402
from synthmatch.training.synths.sampling import sample_params  # noqa: E402

C = contract_mod.default()
MAX_ABS, MIN_CORR, MAX_MSS = 1e-5, 0.99999, 0.05
NOTES = np.linspace(36, 84, 12)  # MIDI, fractional steps included


@pytest.fixture(scope="module")
def synths():
    return Synth(C), ReferenceSynth(C)


def check_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() <= MAX_ABS
    silent = ~theirs.any(1)  # e.g. every gain 0: both silent
    assert not ours[silent].any()
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(ours[~silent], theirs[~silent])]
    assert min(corr) >= MIN_CORR, corr
    d = metrics.multiscale_spectral_distance(torch.from_numpy(theirs), torch.from_numpy(ours))
    assert d.max().item() <= MAX_MSS, d


@pytest.mark.parametrize("note", [None, 48.0, "per-patch"])
def test_render_matches_the_torch_synth(synths, note):
    ours, theirs = synths
    v = sample_params(C, 7, range(12)).astype(np.float32)
    n = NOTES if note == "per-patch" else note
    y = theirs.render(torch.from_numpy(v), torch.from_numpy(n) if note == "per-patch" else n).numpy()
    check_close(ours.render(v, n), y)


def test_extreme_patches_match(synths):
    """The corners of the parameter space: every value 0, every value 1, NaN (-> 0.5), out of range."""
    ours, theirs = synths
    v = np.array([[0.0] * 16, [1.0] * 16, [np.nan] * 16, [-1.0, 2.0] * 8], dtype=np.float32)
    check_close(ours.render(v, 60.0), theirs.render(torch.from_numpy(v), 60.0).numpy())


def test_distance_matches_the_torch_metric():
    ours = Synth(C)
    a = ours.render(sample_params(C, 3, range(7)).astype(np.float32))
    target, candidates = a[0], a[1:]
    expected = metrics.multiscale_spectral_distance(
        torch.from_numpy(np.repeat(target[None], 6, 0)), torch.from_numpy(candidates)
    )
    np.testing.assert_allclose(distance.mss(target, candidates), expected.double().numpy(), rtol=1e-4)


def test_distance_constants_are_the_metrics():
    assert distance.MSS_N_FFTS == metrics.MSS_N_FFTS
    assert distance.MSS_LOG_EPS == metrics.MSS_LOG_EPS and distance.SC_EPS == metrics.SC_EPS
    x = np.random.default_rng(0).standard_normal((2, 4000)).astype(np.float32)
    for n_fft in distance.MSS_N_FFTS:
        expected = metrics.stft_magnitude(torch.from_numpy(x), n_fft, n_fft // 4).numpy().transpose(0, 2, 1)
        np.testing.assert_allclose(distance.stft_magnitude(x, n_fft), expected, rtol=1e-4, atol=1e-5)
