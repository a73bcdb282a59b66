"""synthmatch-synth's JACK standalone (build/plugins/synthmatch-synth) on a real JACK server (dummy
driver): a patch sent as the bridge's 7-bit CCs and a note through a real JACK MIDI port, the plugin's
audio recorded with jack_rec, compared with the training renderer's note of the same patch."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.match.synth import Synth
from tests.jack import JackServer, missing_tools

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "build" / "plugins" / "synthmatch-synth"

pytestmark = [
    pytest.mark.skipif(not APP.exists(), reason="synthmatch-synth not built: run scripts/build_synth_plugin.sh"),
    pytest.mark.skipif(bool(missing_tools()) or not Path("/usr/bin/jack_rec").exists(), reason="JACK tools missing"),
]


def _aligned(recorded: np.ndarray, ref: np.ndarray, max_lag: int) -> np.ndarray:
    """recorded shifted so that it best lines up with ref (cross-correlation over 0..max_lag samples)."""
    n = len(ref)
    lags = [float(np.dot(recorded[k : k + n], ref)) for k in range(max_lag)]
    k = int(np.argmax(lags))
    return recorded[k : k + n]


def test_jack_standalone_plays_the_patch_sent_by_cc(tmp_path, monkeypatch):
    import rtmidi
    import soundfile as sf
    import soxr

    from synthmatch.bridge.outputs.midi import quantise

    c = contract_mod.default()
    v = np.random.default_rng(11).random(16).astype(np.float32)
    v[13] = 0.05  # a short attack: the note is in its decay and sustain within the recording
    v[15] = 0.2
    q = quantise(v.tolist(), 7)
    patch = (np.array(q) / 127).astype(np.float32)
    server = JackServer(log=tmp_path / "jackd.log")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", server.name)  # this process's MIDI client (rtmidi) too
    with server:
        app = subprocess.Popen([str(APP)], env=server.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rec = None
        try:
            server.wait_for_port("synthmatch-synth:events-in")
            out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="smtest")
            out.open_virtual_port("out")
            server.wait_for_port("smtest:out")
            server.connect("smtest:out", "synthmatch-synth:events-in")
            wav = tmp_path / "take.wav"
            rec = subprocess.Popen(
                ["jack_rec", "-f", str(wav), "-d", "3", "-b", "24", "synthmatch-synth:audio_out_1"],
                env=server.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            server.wait_for_port("jackrec:input1")
            server.settle()
            for i, p in enumerate(c.params):
                out.send_message([0xB0, p.cc, q[i]])
            server.settle()
            out.send_message([0x90, 60, 100])
            time.sleep(1.8)
            out.send_message([0x80, 60, 0])
            rec.wait(timeout=10)
            out.close_port()
        finally:
            for proc in (rec, app):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=5)
        audio, sr = sf.read(str(wav), dtype="float32")
    recorded = soxr.resample(audio, sr, c.audio.sample_rate, quality="VHQ")
    ref = Synth(c).render(patch[None], 60)[0][: int(1.2 * c.audio.sample_rate)]  # held: before any note-off
    assert np.abs(recorded).max() > 0.5 * np.abs(ref).max(), "the standalone played nothing"
    got = _aligned(recorded, ref, int(1.0 * c.audio.sample_rate))
    corr = float(np.corrcoef(got, ref)[0, 1])
    neutral = Synth(c).render(np.full((1, 16), 0.5, np.float32), 60)[0][: len(ref)]
    assert corr >= 0.99, f"recorded vs the renderer: correlation {corr:.4f}"
    assert corr > abs(float(np.corrcoef(_aligned(recorded, neutral, 16000), neutral)[0, 1]))
