"""The numpy reference synth and the distance without torch: shapes, determinism, pitch, parts, distance."""

from __future__ import annotations

import numpy as np
import pytest

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.match.distance import Target, mss
from synthmatch.bridge.match.synth import N_HARMONICS, Synth

C = contract_mod.default()
SR, T = C.audio.sample_rate, C.audio.num_samples


@pytest.fixture(scope="module")
def synth():
    return Synth(C)


def patches(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, 16)).astype(np.float32)


def sine(**normalised) -> np.ndarray:
    """A dry, sustained single sine on oscillator 1 (the first shape of its bank), filters open."""
    v = dict.fromkeys(C.names, 0.0)
    v.update(osc1_pitch=0.5, osc1_gain=1.0, filter1_cutoff=1.0)
    v.update(normalised)
    return np.array([[v[n] for n in C.names]], dtype=np.float32)


def peak_hz(x: np.ndarray, start_s=1.0, stop_s=2.9, pad=8) -> float:
    seg = x[int(start_s * SR) : int(stop_s * SR)]
    mag = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), n=pad * len(seg)))
    return float(np.fft.rfftfreq(pad * len(seg), 1 / SR)[np.argmax(mag)])


def test_render_shape_dtype_range(synth):
    y = synth.render(patches(5))
    assert y.shape == (5, T) and y.dtype == np.float32
    assert np.isfinite(y).all() and np.abs(y).max() <= 1.0 and (np.abs(y).max(1) > 0).all()
    assert synth.render(np.zeros((0, 16))).shape == (0, T)


def test_render_is_deterministic_and_independent_of_batch(synth):
    v, notes = patches(11, seed=1), np.linspace(40, 80, 11)
    y = synth.render(v, notes)
    np.testing.assert_array_equal(y, synth.render(v, notes))
    for i in (0, 5, 10):  # alone, and in a chunk of another size
        np.testing.assert_array_equal(y[i], synth.render(v[i : i + 1], notes[i : i + 1])[0])
    np.testing.assert_array_equal(Synth(C, chunk=3).render(v, notes), y)


def test_notes_one_or_per_patch(synth):
    v = patches(3, seed=2)
    np.testing.assert_array_equal(synth.render(v, 60), synth.render(v))  # the contract's note is C4
    np.testing.assert_array_equal(synth.render(v, [60.0]), synth.render(v, np.full(3, 60.0)))
    with pytest.raises(ValueError, match="2 notes for 3 patches"):
        synth.render(v, [60, 61])
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        synth.render(v[:, :15])


@pytest.mark.parametrize("note, semitones", [(60, 0), (48, 0), (72, 7), (36, -12), (84, 12)])
def test_a_sine_sounds_at_its_pitch(synth, note, semitones):
    v = sine(osc1_pitch=C.param("osc1_pitch").to_normalised(semitones))
    expected = 440 * 2 ** ((note + semitones - 69) / 12)
    assert abs(peak_hz(synth.render(v, note)[0]) / expected - 1) < 0.002


def test_harmonics_of_a_sine_and_the_band_limit(synth):
    f0, amp = synth.harmonics(sine(), 60)
    assert f0.shape == (1, 3) and amp.shape == (1, 3, N_HARMONICS)
    assert f0[0, 0] == pytest.approx(440 * 2 ** (-9 / 12))
    mag = np.abs(amp[0, 0])
    assert mag[0] > 0.3 and mag[1:].max() < 1e-3 * mag[0]  # a sine: the fundamental alone
    assert not np.abs(amp[0, 1:]).any()  # oscillators 2 and 3 muted
    f0, amp = synth.harmonics(patches(4, seed=3), [84, 84, 36, 36])
    above = f0[..., None] * np.arange(1, N_HARMONICS + 1) >= SR / 2
    assert above[:2].any() and not amp[above].any()  # nothing at or above Nyquist


def test_envelope_shape_and_its_fast_path(synth):
    attack, decay = np.array([0.1, 0.5]), np.array([0.2, 1.0])
    env = synth.envelope(attack, decay)
    assert env.shape == (2, T) and env.dtype == np.float32
    np.testing.assert_array_equal(env, synth.envelope(attack, decay, synth.t_s.copy()))  # the general path
    s = C.synth
    assert env[:, 0].max() == 0 and env[0, int(0.1 * SR)] == pytest.approx(1, abs=1e-3)
    assert env[1, int(2.9 * SR)] == pytest.approx(s.sustain + (1 - s.sustain) * np.exp(-2.4), rel=1e-3)
    assert (np.diff(env[:, int(s.note_off_s * SR) :]) <= 0).all()  # released


def test_distance_is_zero_for_the_same_sound_and_grows_with_difference(synth):
    y = synth.render(patches(3, seed=4))
    target = Target(y[0])
    d = target.distance(y)
    assert d.shape == (3,) and d[0] == 0 and (d[1:] > 0.5).all()
    np.testing.assert_array_equal(mss(y[0], y), d)
    quieter = target.distance(y[:1] * 0.5)[0]
    assert 0 < quieter < d[1:].min()
    with pytest.raises(ValueError, match="one sound"):
        Target(y)
