"""The output profiles on the real synths (issue 21.3): amsynth and ZynAddSubFX headless on a JACK test
server, driven through their profile by the bridge's own sinks (amsynth: MIDI CC; zyn: OSC), their
audio recorded with jack_rec. A predicted attack, cutoff and resonance land within 20 % of the
prediction, measured from the recording (tests/bridge/real_synths.py: the 10-90 % rise for the attack;
for the filter, white noise through it and the contract ladder that fits its spectrum best); for zyn the
values it reports over OSC are checked too. Skipped when the synth or the JACK tools are absent
(scripts/setup.sh --dev installs them). Each test takes 10-20 s on 2 cores."""

from __future__ import annotations

import shutil

import pytest

from tests.bridge import real_synths as rs

pytestmark = pytest.mark.jack
TOL = 0.20  # the goal: within 20 % of the prediction, in physical units
BASE = "/part0/kit0/adpars/GlobalPar/"
# 20 % of zero is zero, so resonance 0 gets an absolute bound: the fit on ~1 s of noise scatters by
# 0.00-0.03 on an idle machine and reached 0.07 once under a loaded CI run; 0.1 (ladder feedback 0.35,
# +3.7 dB at the cutoff) still fails a profile that sends a clearly resonant filter for 0
RES_ZERO_MAX = 0.10


def need(synth: str) -> None:
    gone = rs.missing(synth)
    if gone:
        pytest.skip(f"not installed: {', '.join(gone)} (apt-get install {synth} jackd2)")


def near(got: float, want: float, what: str) -> None:
    assert abs(got - want) <= TOL * want, f"{what}: predicted {want:g}, landed {got:g} ({got / want - 1:+.0%})"


def attacks(synth, predicted: tuple[float, ...]) -> list[float]:
    out = []
    for a in predicted:
        take = synth.play(rs.values(env_attack=a, env_decay=2.0, filter1_cutoff=8000.0, filter1_resonance=0.0))
        out.append(rs.landed_attack_s(take.audio, take.rate))
    return out


FILTER_CASES = ((400.0, 0.0), (2000.0, 0.0), (1000.0, 0.6))


def filters(synth) -> list[tuple[float, float, float]]:
    """(landed cutoff, landed resonance, centroid) for each of FILTER_CASES, white noise in."""
    out = []
    for cutoff, res in FILTER_CASES:
        v = rs.values(env_attack=0.005, env_decay=2.0, filter1_cutoff=cutoff, filter1_resonance=res)
        take = synth.play(v, seconds=1.6, hold_s=1.4)
        x = rs.sustained(take.audio, take.rate, 0.1, 1.2)
        out.append((*rs.landed_filter(x, take.rate), rs.centroid_hz(x, take.rate)))
    return out


def check_filters(got: list[tuple[float, float, float]]) -> None:
    (c_lo, _, cen_lo), (c_hi, _, cen_hi), (c_res, r_res, _) = got
    assert cen_hi > 2 * cen_lo, f"cutoff 400 -> 2000 Hz moved the centroid {cen_lo:.0f} -> {cen_hi:.0f} Hz"
    for (cutoff, res), (c, r, _) in zip(FILTER_CASES, got):
        near(c, cutoff, f"cutoff (resonance {res})")
        if res:
            near(r, res, f"resonance at {cutoff:g} Hz")
        else:
            assert r <= RES_ZERO_MAX, f"resonance 0 landed as {r:.2f}"


def test_amsynth_attack_lands_through_its_profile(jack, tmp_path):
    need("amsynth")
    with rs.Amsynth(jack, tmp_path, waveform="saw") as am:
        short, long = attacks(am, (0.05, 0.4))
    near(short, 0.05, "attack")
    near(long, 0.4, "attack")


def test_amsynth_cutoff_and_resonance_land_through_its_profile(jack, tmp_path):
    need("amsynth")
    with rs.Amsynth(jack, tmp_path, waveform="noise", sustain=1.0) as am:
        check_filters(filters(am))


def test_zynaddsubfx_attack_lands_through_its_profile(jack, tmp_path):
    need("zynaddsubfx")
    with rs.Zyn(jack, tmp_path) as zyn:
        short, long = attacks(zyn, (0.05, 0.4))
        reported = zyn.query(BASE + "AmpEnvelope/A_dt")
        stretch = zyn.query(BASE + "AmpEnvelope/Penvstretch")
    assert reported == pytest.approx(0.4, rel=1e-6) and stretch == 0
    near(short, 0.05, "attack")
    near(long, 0.4, "attack")


def test_zynaddsubfx_cutoff_and_resonance_land_through_its_profile(jack, tmp_path):
    need("zynaddsubfx")
    with rs.Zyn(jack, tmp_path, noise=True) as zyn:
        got = filters(zyn)
        reported = {k: zyn.query(BASE + "GlobalFilter/" + k) for k in ("basefreq", "baseq", "Pstages")}
    assert reported["basefreq"] == pytest.approx(1000.0, rel=1e-5) and reported["Pstages"] == 1
    assert reported["baseq"] == pytest.approx(1.6729, rel=1e-4)  # the profile's table at 0.6
    check_filters(got)


def test_real_synth_tests_skip_cleanly_without_the_synth(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "amsynth" in rs.missing("amsynth") and "jack_rec" in rs.missing("amsynth")
