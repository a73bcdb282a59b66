"""Audio input: device lookup, the worker-side converter (mono, sanitise, resample), file playback pace."""

from __future__ import annotations

import time

import numpy as np
import pytest

from synthmatch.bridge.audio.input import Converter, FileSource, InputSettings, find_device
from synthmatch.bridge.core import audiofile
from synthmatch.bridge.core.errors import UsageError


def test_converter_is_the_identity_on_clean_16k_audio():
    rng = np.random.default_rng(0)
    x = (0.5 * rng.standard_normal((5000, 1))).clip(-1, 1).astype(np.float32)
    conv = Converter(16000, 16000, 1)
    out = np.concatenate([conv(x[i : i + 333]) for i in range(0, 5000, 333)])
    np.testing.assert_array_equal(out, x[:, 0])


def test_converter_mixes_and_resamples_48k_stereo():
    sr, n = 48000, 48000
    t = np.arange(n) / sr
    left = 0.4 * np.sin(2 * np.pi * 1000 * t)
    stereo = np.stack([left, left], axis=1).astype(np.float32)
    conv = Converter(sr, 16000, 2)
    out = np.concatenate([conv(stereo[i : i + 256]) for i in range(0, n, 256)])
    assert 0 <= 16000 - out.size < 400  # the streaming resampler (soxr HQ) holds back ~21 ms
    spec = np.abs(np.fft.rfft(out[2000:14000] * np.hanning(12000)))
    assert abs(np.argmax(spec) * 16000 / 12000 - 1000) < 2
    assert np.sqrt(np.mean(out[2000:14000] ** 2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.01)
    right_only = Converter(sr, 16000, 2, channel=2)
    silent = np.stack([left, np.zeros(n)], axis=1).astype(np.float32)
    assert np.abs(right_only(silent)).max() == 0.0


def test_converter_sanitises_nan_inf_clipping_and_dc():
    conv = Converter(16000, 16000, 1)
    x = np.array([[0.1], [np.nan], [np.inf], [-np.inf], [3.0], [-2.0]], np.float32)
    out = conv(x)
    assert np.all(np.isfinite(out)) and np.abs(out).max() <= 1.0
    assert conv.nonfinite == 3 and conv.clipped == 2
    dc = Converter(16000, 16000, 1)
    offset = np.full((16000 * 10, 1), 0.5, np.float32)
    outs = [dc(offset[i : i + 1600]) for i in range(0, offset.shape[0], 1600)]
    assert abs(float(outs[-1].mean())) < 0.01  # the offset is gone after a few time constants


def test_file_source_plays_at_the_files_pace(tmp_path):
    path = tmp_path / "half.wav"
    audiofile.write(path, np.zeros(8000, np.float32), 16000)
    for fast, lo, hi in ((False, 0.45, 2.0), (True, 0.0, 0.3)):
        src = FileSource(str(path), InputSettings(source=f"file:{path}", fast=fast, blocksize=256))
        t0 = time.monotonic()
        src.start()
        pos = 0
        while not (src.eof and pos == src.ring.written):
            data, start = src.ring.read_since(pos)
            pos = start + data.shape[0]
            time.sleep(0.001)
        elapsed = time.monotonic() - t0
        src.stop()
        assert pos == 8000 and lo <= elapsed <= hi, (fast, elapsed)


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="nope.wav"):
        FileSource(str(tmp_path / "nope.wav"), InputSettings())


class _Devices:
    """Stand-in for sounddevice's device list (two devices with similar names are not available here)."""

    default = type("D", (), {"device": [0, 0]})()

    def query_devices(self):
        return [
            {"name": "USB Audio CODEC", "max_input_channels": 2, "default_samplerate": 48000.0},
            {"name": "USB Audio Interface 2", "max_input_channels": 8, "default_samplerate": 44100.0},
            {"name": "HDMI out", "max_input_channels": 0, "default_samplerate": 48000.0},
        ]


def test_device_lookup_by_substring():
    sd = _Devices()
    assert find_device(sd, "codec")[1] == "USB Audio CODEC"
    assert find_device(sd, "USB Audio Interface 2")[2] == 8
    with pytest.raises(UsageError, match="ambiguous.*CODEC.*Interface"):
        find_device(sd, "usb")
    with pytest.raises(UsageError, match="no input device matches 'HDMI'"):
        find_device(sd, "HDMI")


@pytest.mark.jack
def test_jack_system_device_is_found_by_name(jack_server):
    """Real PortAudio on the JACK dummy server, in a subprocess (PortAudio must not outlive its server
    inside pytest's process)."""
    import subprocess
    import sys

    code = (
        "import sounddevice as sd\nfrom synthmatch.bridge.audio import portaudio\n"
        "from synthmatch.bridge.audio.input import find_device\n"
        "from synthmatch.bridge.core.errors import UsageError\n"
        "portaudio.rescan(sd)\nprint(find_device(sd, 'sys')[1:3])\n"
        "try:\n    find_device(sd, 'nosuchcard')\nexcept UsageError as e:\n    print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=jack_server.env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()[:2]
    assert first == "('system', 2)"
    assert "no input device matches 'nosuchcard'" in second and "'system'" in second
