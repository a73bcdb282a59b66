"""The reference synth: each parameter does what its name says, measured on the rendered audio."""

import numpy as np
import pytest
import torch

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.training.synths.reference import ReferenceSynth
from synthmatch.training.synths.sampling import sample_params

C = contract_mod.default()
SR = C.audio.sample_rate
C4 = 440.0 * 2 ** ((C.audio.note - 69) / 12)
BANKS = C.synth.wavetables
POSITION = {name: i / (len(BANKS[0]) - 1) for i, name in enumerate(BANKS[0])}  # oscillator 1's bank


@pytest.fixture(scope="module")
def synth():
    return ReferenceSynth(C)


def patch(**physical_or_normalised) -> dict:
    """A quiet, dry, sustained single-sine patch; keyword values are normalised unless given as
    ('phys', x). Oscillators 2 and 3 are muted unless set."""
    v = {
        "osc1_pitch": 0.5,
        "osc1_position": 0.0,
        "osc1_gain": 1.0,
        "osc2_pitch": 0.5,
        "osc2_position": 0.0,
        "osc2_gain": 0.0,
        "osc3_pitch": 0.5,
        "osc3_position": 0.0,
        "osc3_gain": 0.0,
        "filter1_cutoff": 1.0,
        "filter1_resonance": 0.0,
        "filter2_cutoff": 0.0,
        "filter2_resonance": 0.0,
        "env_attack": 0.0,
        "env_decay": 0.0,
        "reverb_mix": 0.0,
    }
    for name, value in physical_or_normalised.items():
        v[name] = C.param(name).to_normalised(value[1]) if isinstance(value, tuple) else value
    return v


def render(synth, *patches) -> np.ndarray:
    v = torch.tensor([C.values_from_dict(p) for p in patches], dtype=torch.float32)
    return synth.render(v).numpy().astype(np.float64)


def spectrum(x: np.ndarray, start_s=1.0, stop_s=2.9, pad=8):
    seg = x[int(start_s * SR) : int(stop_s * SR)]
    mag = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), n=pad * len(seg)))
    return np.fft.rfftfreq(pad * len(seg), 1 / SR), mag


def centroid(x):
    f, m = spectrum(x)
    return float((f * m**2).sum() / (m**2).sum())


def frame_energy(x, hop=160):
    return (x[: len(x) // hop * hop].reshape(-1, hop) ** 2).mean(1)


def test_output_shape_range_and_dtype(synth):
    v = torch.from_numpy(sample_params(C, 0, range(8)))
    y = synth.render(v)
    assert y.shape == (8, C.audio.num_samples) and y.dtype == torch.float32
    assert torch.isfinite(y).all() and y.abs().max() <= 1.0


@pytest.mark.parametrize("semitones", [-24, -12, 0, 7, 24])
def test_pitch_moves_the_fundamental_by_the_expected_semitones(synth, semitones):
    f, m = spectrum(render(synth, patch(osc1_pitch=("phys", semitones)))[0])
    expected = C4 * 2 ** (semitones / 12)
    assert abs(f[np.argmax(m)] / expected - 1) < 0.002


def test_higher_cutoff_raises_the_spectral_centroid(synth):
    saw = dict(osc1_position=POSITION["saw"])
    low, mid, high = render(synth, *(patch(**saw, filter1_cutoff=("phys", hz)) for hz in (300, 1200, 5000)))
    assert centroid(low) < centroid(mid) < centroid(high)
    assert centroid(high) > 1.5 * centroid(low)


def test_resonance_raises_a_peak_near_the_cutoff(synth):
    cutoff = C4 * 6  # the 6th harmonic sits on the cutoff
    base = dict(osc1_position=POSITION["saw"], filter1_cutoff=("phys", cutoff))
    flat, resonant = render(synth, patch(**base, filter1_resonance=0.0), patch(**base, filter1_resonance=1.0))

    def share_near_cutoff(x):
        f, m = spectrum(x)
        near = (f > cutoff / 2 ** (1 / 6)) & (f < cutoff * 2 ** (1 / 6))
        return (m[near] ** 2).sum() / (m**2).sum()

    assert share_near_cutoff(resonant) > 10 * share_near_cutoff(flat)


def test_highpass_cutoff_removes_low_harmonics(synth):
    saw = dict(osc1_position=POSITION["saw"])
    open_, closed = render(
        synth, patch(**saw, filter2_cutoff=("phys", 20)), patch(**saw, filter2_cutoff=("phys", 1500))
    )
    f, m_open = spectrum(open_)
    _, m_closed = spectrum(closed)
    fundamental = np.abs(f - C4) < 5
    assert m_closed[fundamental].max() < 0.05 * m_open[fundamental].max()
    assert centroid(closed) > centroid(open_)


def test_longer_attack_delays_the_peak(synth):
    short, long_ = render(synth, patch(env_attack=("phys", 0.01)), patch(env_attack=("phys", 1.5)))
    t_short, t_long = np.argmax(frame_energy(short)), np.argmax(frame_energy(long_))
    assert t_short * 160 / SR < 0.05
    assert abs(t_long * 160 / SR - 1.5) < 0.05


def test_longer_decay_keeps_energy_longer(synth):
    fast, slow = render(synth, patch(env_decay=("phys", 0.05)), patch(env_decay=("phys", 2.0)))
    window = slice(int(0.3 * SR), int(1.0 * SR))
    assert (slow[window] ** 2).sum() > 1.5 * (fast[window] ** 2).sum()


def test_reverb_mix_lengthens_the_tail_after_note_off(synth):
    dry, wet = render(synth, patch(reverb_mix=0.0), patch(reverb_mix=0.8))
    off = C.synth.note_off_s

    def seconds_to_minus_20_db(x):
        energy = frame_energy(x)
        held = energy[int((off - 0.5) * SR / 160) : int(off * SR / 160)].mean()
        after = energy[int(off * SR / 160) :] < 1e-2 * held
        return (np.argmax(after) if after.any() else len(after)) * 160 / SR

    dry_s, wet_s = seconds_to_minus_20_db(dry), seconds_to_minus_20_db(wet)
    assert 0.6 < dry_s < 0.8  # the release alone: 0.3 s time constant -> ln(10) * 0.3 s
    assert wet_s > dry_s + 0.25


def test_gain_sets_each_oscillators_contribution(synth):
    def level_at(x, hz):
        f, m = spectrum(x)
        return m[np.abs(f - hz) < 3].max()

    octave = dict(osc2_pitch=("phys", 12))
    quiet, loud = render(synth, patch(**octave, osc2_gain=0.25), patch(**octave, osc2_gain=1.0))
    assert np.isclose(level_at(loud, 2 * C4) / level_at(quiet, 2 * C4), 4.0, rtol=0.02)
    assert np.isclose(level_at(loud, C4), level_at(quiet, C4), rtol=0.02)  # oscillator 1 untouched
    # all gains scaled together: levels follow (no normalisation hides them)
    soft, full = render(synth, patch(osc1_gain=0.2), patch(osc1_gain=0.8))
    assert np.isclose(np.abs(full).max() / np.abs(soft).max(), 4.0, rtol=0.01)


def test_position_changes_the_harmonic_spectrum(synth):
    def harmonic_levels(x):
        f, m = spectrum(x)
        return np.array([m[np.abs(f - k * C4) < 3].max() for k in range(1, 9)])

    sine, saw, square = (
        harmonic_levels(render(synth, patch(osc1_position=POSITION[s]))[0]) for s in ("sine", "saw", "square")
    )
    assert sine[1:].max() < 1e-3 * sine[0]
    assert saw[1] / saw[0] == pytest.approx(0.5, rel=0.05)  # saw: 1/k
    assert square[1] < 1e-3 * square[0] and square[2] / square[0] == pytest.approx(1 / 3, rel=0.05)
    between = harmonic_levels(render(synth, patch(osc1_position=(POSITION["saw"] + POSITION["square"]) / 2))[0])
    assert square[1] < between[1] < saw[1]  # the morph is smooth


def test_no_aliasing_at_plus_24_semitones(synth):
    narrowest_pulse = dict(osc1_gain=0.0, osc2_gain=1.0, osc2_position=1.0)  # pulse5: the richest shape
    assert BANKS[1][-1] == "pulse5"
    x = render(synth, patch(**narrowest_pulse, osc2_pitch=("phys", 24)))[0]
    f, m = spectrum(x)
    f0 = C4 * 4
    on_harmonic = np.abs(f / f0 - np.round(f / f0)) * f0 < 20
    leak = (m[~on_harmonic] ** 2).sum() / (m**2).sum()
    assert leak < 1e-6  # below -60 dB: nothing folded back from above Nyquist


def test_each_oscillator_has_its_own_bank(synth):
    """Same pitch, position and gain on oscillators 1, 2 and 3 sound different: the banks tell them apart."""

    def alone(j):
        return patch(**{"osc1_gain": 0.0, f"osc{j}_gain": 1.0, f"osc{j}_position": 0.6})

    spectra = [spectrum(x)[1] for x in render(synth, *(alone(j) for j in (1, 2, 3)))]
    for a in range(3):
        for b in range(a + 1, 3):
            diff = np.abs(spectra[a] - spectra[b]).sum() / np.abs(spectra[a]).sum()
            assert diff > 0.3


def test_sample_i_is_identical_for_batch_sizes_1_7_and_64(synth):
    v = torch.from_numpy(sample_params(C, 123, range(64)))
    whole = synth.render(v)
    sevens = torch.cat([synth.render(chunk) for chunk in v.split(7)])
    ones = torch.cat([synth.render(v[i : i + 1]) for i in (0, 31, 63)])
    assert torch.allclose(whole, sevens, atol=1e-6, rtol=0)
    assert torch.allclose(whole[[0, 31, 63]], ones, atol=1e-6, rtol=0)
    # and the patch itself is f(seed, i)
    assert np.array_equal(sample_params(C, 123, [31])[0], v[31].numpy())
    assert not np.array_equal(sample_params(C, 124, [31])[0], v[31].numpy())


def test_extreme_patches_are_finite_and_within_range(synth):
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 2, size=(62, 16)).astype(np.float32)
    v = torch.from_numpy(np.vstack([np.zeros(16), np.ones(16), corners]).astype(np.float32))
    y = synth.render(v)
    assert torch.isfinite(y).all() and y.abs().max() <= 1.0
    assert y[0].abs().max() == 0  # all gains zero: silence, not noise
    y_bad = synth.render(torch.tensor([[float("nan")] * 16, [2.0] * 16, [-1.0] * 16]))
    assert torch.isfinite(y_bad).all() and y_bad.abs().max() <= 1.0
