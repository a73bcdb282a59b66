"""`synthmatch render`'s WAV: the standard float header (bridge.core.audiofile), which sox reads silently."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from synthmatch.bridge.core import audiofile
from synthmatch.training import render


def test_render_writes_the_core_wav():
    assert render.wav_bytes is audiofile.wav_bytes


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed (apt-get install sox)")
def test_render_wav_reads_in_sox_without_warning(tmp_path):
    x = (0.5 * np.sin(np.arange(8000) / 7.0)).astype(np.float32)
    path = tmp_path / "r.wav"
    path.write_bytes(render.wav_bytes(x, 16000))
    run = subprocess.run(["sox", str(path), "-n", "stat"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and "WARN" not in run.stderr, run.stderr
    assert np.allclose(audiofile.read_mono(path, 16000), x)
