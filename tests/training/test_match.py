"""`synthmatch match` with the shipped model: alignment, recovery of the well-determined parameters,
its three output files, and clear errors for files it cannot use."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from synthmatch.bridge.cli import main as cli
from synthmatch.bridge.core import audiofile
from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.modelfile import read_meta
from synthmatch.training.match import DEFAULT_MODEL, aligned_window, predict
from synthmatch.training.model.metrics import multiscale_spectral_distance
from synthmatch.training.synths.reference import ReferenceSynth
from synthmatch.training.synths.sampling import sample_params

C = contract_mod.default()
SR = C.audio.sample_rate
# Mean absolute error (normalised units) allowed on patches louder than -30 dBFS, for the parameters
# the shipped model determines well; measured 0.045 / 0.073 / 0.127 on 45 such patches.
TOLERANCE = {"filter1_cutoff": 0.08, "env_attack": 0.12, "reverb_mix": 0.2}


@pytest.fixture(scope="module")
def patches():
    """Audible random patches and their audio."""
    values = sample_params(C, 77, range(64))
    audio = ReferenceSynth(C).render(torch.from_numpy(values)).numpy()
    loud = 20 * np.log10(np.abs(audio).max(1) + 1e-12) > -30
    return values[loud], audio[loud]


def test_shipped_model_carries_this_contract():
    meta = read_meta(DEFAULT_MODEL)
    assert meta.contract_hash == C.hash and meta.names == C.names
    assert (meta.sample_rate, meta.num_samples) == (SR, C.audio.num_samples)
    assert meta.summary["test_metrics"]["param_mse"] < 0.083  # better than predicting the mean patch
    assert DEFAULT_MODEL.with_suffix(".pt2").exists()  # the program the cuda backend runs
    assert DEFAULT_MODEL.with_suffix(".pt").exists()  # weights to fine-tune from (init_from)


def test_window_starts_at_the_onset_and_short_files_are_padded(patches):
    _, audio = patches
    delayed = np.concatenate([np.zeros(3210, np.float32), audio[0][:20000]])
    window, onset = aligned_window(delayed, C)
    assert 0 <= onset - 3210 <= 80  # within 5 ms: the first samples of an attack ramp are below -70 dBFS
    assert window.shape == (C.audio.num_samples,)
    tail = len(delayed) - onset
    assert np.array_equal(window[:tail], delayed[onset:])
    assert not window[tail:].any()


def test_match_recovers_the_well_determined_parameters(patches):
    values, audio = patches
    pre_roll = np.zeros(4800, np.float32)
    windows = np.stack([aligned_window(np.concatenate([pre_roll, a]), C)[0] for a in audio])
    error = np.abs(predict(DEFAULT_MODEL, windows, C) - values).mean(0)
    for name, tol in TOLERANCE.items():
        assert error[C.names.index(name)] < tol, name


def test_match_writes_params_wav_and_png(patches, tmp_path, capsys):
    _, audio = patches
    # 44.1 kHz stereo with a quiet pre-roll: resampled, mixed down and aligned like any user file
    import soxr

    stereo = soxr.resample(np.concatenate([np.zeros(8000, np.float32), audio[0]]), SR, 44100)
    path = tmp_path / "take.flac"
    sf.write(path, np.stack([stereo, 0.5 * stereo], 1), 44100)
    assert cli(["match", str(path), "--out-dir", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "params.json").read_text())
    assert abs(report["onset_s"] - 0.5) < 0.01
    assert [p["name"] for p in report["params"]] == list(C.names)
    first = report["params"][0]
    assert first["massive"] == "OSC1 PITCH" and first["cc"] == C.params[0].cc and first["unit"] == "semitones"
    wav, rate = sf.read(tmp_path / "out" / "match.wav")
    assert rate == SR and wav.shape == (C.audio.num_samples,) and np.abs(wav).max() > 0
    # the live daemon's matcher: closer to the input than the network alone, and match.wav is that sound
    refinement = report["refinement"]
    assert refinement["method"] == "matcher" and refinement["seconds"] < 5
    assert refinement["distance_refined"] < refinement["distance_model"]
    window, _ = aligned_window(audiofile.read_mono(path, SR), C)
    direct = multiscale_spectral_distance(
        torch.from_numpy(window[None]), torch.from_numpy(wav[None].astype(np.float32))
    )
    assert float(direct[0]) == pytest.approx(refinement["distance_refined"], abs=2e-3)
    assert (tmp_path / "out" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def bad_files(tmp_path: Path) -> dict:
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SR, np.float32), SR)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(range(256)))
    return {
        "missing": (tmp_path / "nope.wav", "no such file"),
        "empty": (empty, "no audio"),
        "silent": (silent, "silent"),
        "corrupt": (corrupt, "cannot read audio"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "silent", "corrupt"])
def test_unusable_files_exit_2_naming_the_file(tmp_path, capsys, case):
    path, needle = bad_files(tmp_path)[case]
    assert cli(["match", str(path), "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and needle in err
    assert not (tmp_path / "out" / "params.json").exists()


def test_the_readme_library_example_runs(tmp_path):
    """The README's "As a library" snippet, as written, on a real sound (a decaying G3 square)."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    import soundfile as sf

    root = Path(__file__).resolve().parents[2]
    code = re.search(r"### As a library.*?```python\n(.*?)```", (root / "README.md").read_text(), re.S).group(1)
    t = np.arange(32000) / 16000
    sf.write(tmp_path / "take.wav", (0.3 * np.sign(np.sin(2 * np.pi * 196 * t)) * np.exp(-t)).astype(np.float32), 16000)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    note, cutoff = r.stdout.split()
    assert int(note) == 55 and 0.0 <= float(cutoff) <= 1.0


def test_the_older_search_is_an_explicit_option(patches, tmp_path):
    """--refine-passes N runs the coordinate search over full renders instead of the matcher."""
    _, audio = patches
    path = tmp_path / "take.wav"
    sf.write(path, audio[1], SR)
    assert cli(["match", str(path), "--out-dir", str(tmp_path / "out"), "--refine-passes", "1"]) == 0
    refinement = json.loads((tmp_path / "out" / "params.json").read_text())["refinement"]
    assert refinement["method"] == "coordinate search" and refinement["passes"] == 1
    assert refinement["distance_refined"] <= refinement["distance_model"]
    assert cli(["match", str(path), "--out-dir", str(tmp_path / "net"), "--budget", "0"]) == 0
    assert json.loads((tmp_path / "net" / "params.json").read_text())["refinement"] is None


def test_the_matcher_starts_from_the_pitch_heads_runner_ups_and_works_without_them(patches, tiny_onnx, tmp_path):
    """match_file hands the matcher the pitch head's runner-up classes (bridge/match/candidates.py) when
    the model exports them; a model without the extra outputs (an mse head) still matches, with fewer
    candidates: none from the network beyond its answer."""
    from unittest import mock

    from synthmatch.bridge.match.search import Matcher
    from synthmatch.training.match import match_file

    _, audio = patches
    path = tmp_path / "take.wav"
    sf.write(path, audio[0], SR)
    seen = []
    real = Matcher.match

    def spy(self, *args, **kw):
        seen.append(list(kw.get("extra", ())))
        return real(self, *args, **kw)

    with mock.patch.object(Matcher, "match", spy):
        without = match_file(path, model=tiny_onnx, budget_ms=30)
        shipped = match_file(path, budget_ms=30)
    assert read_meta(tiny_onnx).extra_outputs == {} and seen[0] == []
    assert without.report["refinement"]["method"] == "matcher" and np.all(np.isfinite(list(without.values.values())))
    assert seen[1] and all(c.shape == (16,) and c.dtype == np.float32 for c in seen[1])
    assert shipped.report["refinement"]["distance_refined"] <= shipped.report["refinement"]["distance_model"]
