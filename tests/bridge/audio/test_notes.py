"""Notes: pitch detection on real rendered sounds, note normalisation, the held-note tracker, and the
daemon sending notes (note-on/note-off and 14-bit pitch bend) into a real JACK MIDI port."""

from __future__ import annotations

import io
import json
import math
import time

import numpy as np
import pytest

from synthmatch.bridge.audio import notenorm
from synthmatch.bridge.audio.notes import NoteSettings, NoteStage, NoteTracker
from synthmatch.bridge.audio.pitch import PitchSettings, detect, hz_to_midi, midi_to_hz
from synthmatch.bridge.core import audiofile
from synthmatch.bridge.core import contract as contract_mod
from tests.bridge.daemon_util import SR, make_config

N = 64000


@pytest.fixture(scope="module")
def c():
    return contract_mod.default()


def clear_patches(contract, count: int) -> np.ndarray:
    """Patches whose played note is plain: osc 1 at unison and loudest, osc 2 an octave up, osc 3 at
    unison, filters open, a quick attack; positions and resonances as sampled."""
    from synthmatch.training.synths.sampling import sample_params

    v = np.array(sample_params(contract, 11, range(count)), dtype=np.float32)
    for name, value in (
        ("osc1_pitch", 0.5),
        ("osc1_gain", 0.9),
        ("osc2_pitch", 0.75),
        ("osc2_gain", 0.3),
        ("osc3_pitch", 0.5),
        ("osc3_gain", 0.3),
        ("filter1_cutoff", 0.9),
        ("filter2_cutoff", 0.05),
        ("env_attack", 0.1),
        ("reverb_mix", 0.2),
    ):
        v[:, contract.names.index(name)] = value
    return v


def at_notes(contract, notes) -> np.ndarray:
    pytest.importorskip("torch")  # the reference synth renders them: skips in a runtime-only venv
    from synthmatch.training.notesets import render_at

    return render_at(contract, clear_patches(contract, len(notes)), notes)


def named_patch(contract, **physical) -> np.ndarray:
    """(16,) normalised patch: every value 0.5 but those named (in physical units; positions and
    resonances as they are), with filters open and a quick attack unless named."""
    values = dict(
        osc1_position=0.67,
        osc2_position=0.0,
        filter1_cutoff=6000.0,
        filter1_resonance=0.2,
        filter2_cutoff=20.0,
        filter2_resonance=0.0,
        env_attack=0.01,
        env_decay=1.0,
        reverb_mix=0.2,
    )
    values.update(physical)
    v = np.full(len(contract.params), 0.5, np.float32)
    for name, x in values.items():
        p = contract.params[contract.names.index(name)]
        v[contract.names.index(name)] = p.to_normalised(x) if p.unit else x
    return v


def vibrato_tone(note: float, seconds: float, depth: float = 0.5, rate: float = 5.5, level: float = 0.3):
    """A sung-like tone: 6 harmonics at MIDI `note` with +-depth semitones of vibrato at rate Hz."""
    t = np.arange(int(seconds * SR)) / SR
    f = midi_to_hz(note) * 2 ** (depth * np.sin(2 * np.pi * rate * t) / 12)
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 7))
    return (level * x / np.max(np.abs(x)) * np.minimum(1, t / 0.02)).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# detection


def test_rendered_patches_are_detected_at_their_note(c):
    notes = [36, 41, 47, 53, 60, 66, 71, 78, 84]
    for note, x in zip(notes, at_notes(c, notes)):
        e = detect(x, SR)
        assert e.voiced and e.note == note, (note, e)
        assert abs(e.f0_hz - midi_to_hz(note)) / midi_to_hz(note) < 0.01  # within 17 cents
        assert e.confidence > 0.8


def test_a_lead_beside_quieter_oscillators_is_heard_at_the_lead(c):
    """A saw lead with a square 17 semitones below (7-9 dB down) and a vowel 10.3 above (10-13 dB down):
    the sum repeats only every 8 lead periods, and YIN alone read it one to three octaves low."""
    pytest.importorskip("torch")  # the reference synth renders the sound
    from synthmatch.training.notesets import render_at

    v = named_patch(c, osc1_pitch=0.0, osc1_gain=0.8, osc2_pitch=-17.0, osc2_gain=0.25, osc3_pitch=10.3, osc3_gain=0.3)
    notes = [41, 53, 65, 77]
    for note, x in zip(notes, render_at(c, np.repeat(v[None], len(notes), axis=0), notes)):
        e = detect(x, SR)
        assert e.voiced and e.note == note, (note, e)
        assert abs(e.f0_hz - midi_to_hz(note)) / midi_to_hz(note) < 0.01


def test_a_bright_low_note_is_heard_at_its_note_not_at_its_resonance(c):
    """A square at MIDI 36-43 through a resonant lowpass at 1.2 kHz and a highpass at 500 Hz: most of
    the energy sits on one harmonic near the resonance (the 17th at MIDI 37), yet the note is the key's."""
    pytest.importorskip("torch")  # the reference synth renders the sound
    from synthmatch.training.notesets import render_at

    v = named_patch(
        c,
        osc1_pitch=0.0,
        osc1_position=1.0,
        osc1_gain=0.9,
        osc2_gain=0.0,
        osc3_gain=0.0,
        filter1_cutoff=1200.0,
        filter1_resonance=0.95,
        filter2_cutoff=500.0,
        filter2_resonance=0.5,
    )
    notes = [36, 37, 38, 43]
    for note, x in zip(notes, render_at(c, np.repeat(v[None], len(notes), axis=0), notes)):
        e = detect(x, SR)
        assert e.voiced and e.note == note, (note, e)


def test_sine_f0_is_accurate_and_silence_and_noise_fall_back():
    t = np.arange(N) / SR
    e = detect(0.3 * np.sin(2 * np.pi * 440 * t), SR)
    assert e.note == 69 and abs(e.f0_hz - 440) < 0.5 and abs(e.midi - 69) < 0.02
    settings = PitchSettings(fallback_note=57)
    silent = detect(np.zeros(N, np.float32), SR, settings)
    assert not silent.voiced and silent.note == 57 and silent.f0_hz is None and silent.reason == "silent"
    noise = np.random.default_rng(0).standard_normal(N).astype(np.float32) * 0.2
    e = detect(noise, SR, settings)
    assert not e.voiced and e.note == 57 and e.f0_hz is None and e.reason.startswith("unpitched")
    assert detect(np.full(N, np.nan, np.float32), SR, settings).reason == "silent"  # NaN reads as silence
    assert detect(np.full(N, 0.3, np.float32), SR, settings).reason == "silent"  # so does a DC offset


def test_pitch_settings_reject_nonsense():
    for bad in (
        PitchSettings(fallback_note=128),
        PitchSettings(f_min=500, f_max=400),
        PitchSettings(min_confidence=1.5),
        PitchSettings(max_aperiodicity=0),
    ):
        with pytest.raises(ValueError, match="pitch\\."):
            bad.check()
    with pytest.raises(ValueError, match="notes.normalise"):
        NoteSettings(normalise="always").check()


# ------------------------------------------------------------------------------------------------
# note normalisation


def test_normalised_window_plays_the_reference_note_and_lasts_the_stretch(c):
    x72, x48 = at_notes(c, [72, 48])
    y, s = notenorm.to_reference(x72, 72, c)
    assert y.shape == (N,) and s == pytest.approx(2.0)
    assert detect(y, SR).note == 60
    z, s = notenorm.to_reference(x48, 48, c)
    assert s == pytest.approx(0.5) and detect(z, SR).note == 60
    assert np.all(z[N // 2 + 100 :] == 0)  # a lower note only fills num_samples * s: the rest is padding
    same, s = notenorm.to_reference(x72, 60, c)
    assert s == 1.0 and np.array_equal(same, x72)


def test_from_reference_scales_times_and_cutoffs_and_reports_clipping(c):
    idx = c.names.index
    v = np.full(16, 0.5, np.float32)
    back, clipped = notenorm.from_reference(v, 2.0, c)
    cut, att = c.params[idx("filter1_cutoff")], c.params[idx("env_attack")]
    assert cut.to_physical(float(back[idx("filter1_cutoff")])) == pytest.approx(2 * cut.to_physical(0.5), rel=1e-4)
    assert att.to_physical(float(back[idx("env_attack")])) == pytest.approx(att.to_physical(0.5) / 2, rel=1e-4)
    keep = [i for i, p in enumerate(c.params) if p.unit not in ("s", "Hz")]
    assert np.array_equal(back[keep], v[keep]) and clipped == []  # offsets, gains, positions stay
    v[idx("filter1_cutoff")] = 0.95
    back, clipped = notenorm.from_reference(v, 4.0, c)
    assert "filter1_cutoff" in clipped and back[idx("filter1_cutoff")] == pytest.approx(1.0)
    mixed = notenorm.combine(np.zeros(16), np.ones(16), c, "pitch")
    assert (
        [i for i in range(16) if mixed[i] == 1]
        == notenorm.relative_params(c)
        == [idx("osc1_pitch"), idx("osc2_pitch"), idx("osc3_pitch")]
    )


# ------------------------------------------------------------------------------------------------
# continuous note tracking


def test_tracker_holds_a_vibrato_note_and_follows_a_real_change():
    stage = NoteStage(NoteSettings(), contract_mod.default())
    x = np.concatenate([vibrato_tone(57, 3.0), vibrato_tone(59, 2.0)])
    hop, w = 4000, int(0.3 * SR)
    changes = []
    for end in range(w, x.size + 1, hop):
        est, held, changed = stage.track(x[:end][-N:])
        if changed:
            changes.append((end, held))
    assert [h for _, h in changes] == [57, 59]
    assert changes[1][0] - 3 * SR <= hop + w  # heard within one hop of the window reaching the change
    t = NoteTracker(0.6)
    from synthmatch.bridge.audio.pitch import NoteEstimate

    assert t.update(NoteEstimate(60, 261.6, 60.0, 1, True)) == (60, True)
    assert t.update(NoteEstimate(60, None, 60.0, 0, False)) == (60, False)  # unpitched keeps the note
    assert t.update(NoteEstimate(61, 272, 61.05, 1, True)) == (60, False)  # inside 0.5 + hysteresis
    assert t.update(NoteEstimate(61, 275, 61.2, 1, True)) == (61, True)
    assert t.end() and t.held is None and not t.end()


# ------------------------------------------------------------------------------------------------
# the daemon with notes, into a real JACK MIDI port


def note_events(raw: list[bytes]) -> list[tuple[str, int, int]]:
    """(kind, data1, data2) of the note-on/off and pitch-bend messages among raw MIDI messages."""
    out = []
    for b in raw:
        kind = {0x90: "on", 0x80: "off", 0xE0: "bend"}.get(b[0] & 0xF0)
        if kind:
            out.append((kind, b[1], b[2]))
    return out


def run_with_midi(jack, c, engine, cfg, name: str):
    """Run the daemon on cfg's file input with a JACK MIDI sink (notes on) and a print sink; returns
    (printed updates, note/bend events the receiver got)."""
    from synthmatch.bridge.audio.input import open_source
    from synthmatch.bridge.live.daemon import Daemon
    from synthmatch.bridge.outputs.midi import MidiCCSink
    from synthmatch.bridge.outputs.printer import PrintSink
    from tests.jack import MidiReceiver

    out = io.StringIO()
    with MidiReceiver(jack, f"rx-{name}") as rx:
        midi = MidiCCSink(cfg.output.midi, c)
        jack.connect(midi.port_name, rx.port)
        jack.settle()
        source = open_source(cfg.input)
        d = Daemon(cfg, c, engine, [midi, PrintSink(c, stream=out)], source)
        d.start()
        try:
            assert d.done.wait(120), "daemon did not finish its file input in time"
        finally:
            d.stop()
            source.stop()
            midi.close()
        assert d.error is None, d.error
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        expect = sum(1 for ln in lines if ln.get("note", {}).get("new")) * 2  # one on + one off per note
        deadline = time.monotonic() + 5
        while len([e for e in note_events(rx.messages) if e[0] != "bend"]) < expect and time.monotonic() < deadline:
            time.sleep(0.02)
        return lines, note_events(rx.messages)


@pytest.fixture(scope="module")
def engine(tiny_onnx, c):
    from synthmatch.bridge.engines import load_engine

    e = load_engine(tiny_onnx, backend="onnxruntime", contract=c, threads=1)
    yield e
    e.close()


@pytest.mark.jack
def test_three_notes_three_snapshots_three_note_pairs_on_jack(jack, c, engine, tmp_path):
    notes = [45, 64, 52]
    x = np.zeros(15 * SR, np.float32)
    for k, a in enumerate(at_notes(c, notes)):
        x[SR // 2 + 5 * SR * k :][: 4 * SR] += a[: 4 * SR]
    path = tmp_path / "three.wav"
    audiofile.write(path, x, SR)
    cfg = make_config(
        c,
        mode="trigger",
        input={"source": f"file:{path}", "fast": True},
        output={
            "midi": {
                "enabled": True,
                "virtual": "notes",
                "api": "jack",
                "notes": True,
                "client_name": "sm-notes",
                "velocity": 90,
            }
        },
    )
    lines, events = run_with_midi(jack, c, engine, cfg, "trig")
    assert [ln["note"]["midi"] for ln in lines] == notes
    assert all(ln["note"]["new"] and abs(hz_to_midi(ln["note"]["f0_hz"]) - n) < 0.2 for ln, n in zip(lines, notes))
    assert events == [("on", 45, 90), ("off", 45, 0), ("on", 64, 90), ("off", 64, 0), ("on", 52, 90), ("off", 52, 0)]


def test_a_model_told_the_note_gets_the_detected_note_in_every_snapshot(c, tiny_notes_onnx, tmp_path):
    from synthmatch.bridge.audio.input import open_source
    from synthmatch.bridge.engines import load_engine
    from synthmatch.bridge.live.daemon import Daemon
    from synthmatch.bridge.outputs.printer import PrintSink

    notes = [45, 64, 52]
    x = np.zeros(15 * SR, np.float32)
    windows = []
    for k, a in enumerate(at_notes(c, notes)):
        x[SR // 2 + 5 * SR * k :][: 4 * SR] += a[: 4 * SR]
        windows.append(a[: 4 * SR].astype(np.float32))
    path = tmp_path / "three.wav"
    audiofile.write(path, x, SR)
    # normalise = "pitch" is for C4-only models: a model told the note hears the raw window
    cfg = make_config(c, mode="trigger", input={"source": f"file:{path}", "fast": True}, notes={"normalise": "pitch"})
    out = io.StringIO()
    with load_engine(tiny_notes_onnx, backend="onnxruntime", contract=c, threads=1) as engine:
        assert engine.meta.takes_note
        source = open_source(cfg.input)
        d = Daemon(cfg, c, engine, [PrintSink(c, stream=out)], source)
        d.start()
        try:
            assert d.done.wait(120)
        finally:
            d.stop()
            source.stop()
        assert d.error is None, d.error
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [ln["note"]["midi"] for ln in lines] == notes
        for line, w, n in zip(lines, windows, notes):
            told, c4 = engine.infer(w[None], [n])[0], engine.infer(w[None], [60])[0]
            sent = np.array([line["values"][name] for name in c.names])
            assert np.abs(sent - told).max() < 0.02 < np.abs(told - c4).max()


@pytest.mark.jack
def test_continuous_vibrato_one_note_on_and_pitch_bend_in_range(jack, c, engine, tmp_path):
    x = np.concatenate(
        [
            np.zeros(SR // 2, np.float32),
            vibrato_tone(57, 4.0),
            np.zeros(SR, np.float32),
            vibrato_tone(62, 2.5, depth=0.0),
            np.zeros(SR, np.float32),
        ]
    )
    path = tmp_path / "held.wav"
    audiofile.write(path, x, SR)
    cfg = make_config(
        c,
        mode="continuous",
        input={"source": f"file:{path}", "fast": True},
        continuous={"hop_s": 0.1, "max_rate_hz": 0.0},
        output={
            "midi": {
                "enabled": True,
                "virtual": "bend",
                "api": "jack",
                "notes": True,
                "pitch_bend": True,
                "bend_range": 2.0,
                "client_name": "sm-bend",
            }
        },
    )
    lines, events = run_with_midi(jack, c, engine, cfg, "cont")
    ons = [e for e in events if e[0] == "on"]
    offs = [e for e in events if e[0] == "off"]
    assert [n for _, n, _ in ons] == [57, 62] and [n for _, n, _ in offs] == [57, 62]  # no chatter on vibrato
    bends = [(b[2] << 7) | b[1] for b in events if b[0] == "bend"]
    assert len(bends) > 5 and all(0 <= v <= 16383 for v in bends)
    semis = [(v - 8192) / 8192 * 2.0 for v in bends]
    assert max(abs(s) for s in semis) <= 0.6  # vibrato of +-0.5 semitone, over a +-2 semitone range
    assert max(semis) > 0.05 and min(semis) < -0.05  # and it does move with the vibrato
    assert all(ln["note"]["midi"] in (57, 62) for ln in lines if "note" in ln)


def test_osc_and_print_carry_the_note(c):
    from synthmatch.bridge.outputs.base import Update
    from synthmatch.bridge.outputs.config import OscSinkConfig
    from synthmatch.bridge.outputs.osc import OscSink
    from synthmatch.bridge.outputs.printer import PrintSink

    sink = OscSink(OscSinkConfig(enabled=True, port=9), c)
    try:
        b = sink.bundle([0.5] * 16, (57, 220.5, 0.9))
        assert b.num_contents == 17
        last = list(b)[-1]
        assert last.address == "/synthmatch/note" and last.params[0] == 57
        assert last.params[1] == pytest.approx(220.5) and last.params[2] == pytest.approx(0.9)
    finally:
        sink.close()
    out = io.StringIO()
    p = PrintSink(c, stream=out)
    p.send(Update([0.5] * 16, mode="trigger", note=57, f0_hz=220.5, midi=57.02, confidence=0.9, new_note=True))
    p.send(Update((), mode="continuous", note=57, note_off=True))
    first, second = [json.loads(x) for x in out.getvalue().splitlines()]
    assert first["note"] == {"midi": 57, "f0_hz": 220.5, "confidence": 0.9, "new": True}
    assert second["note_off"] == 57 and "values" not in second
    assert math.isfinite(first["t"])
