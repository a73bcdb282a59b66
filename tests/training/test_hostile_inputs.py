"""`synthmatch match` and `render` against a hostile user (issue 14): bad output places found before any
work, broken models refused without writing NaN, unusable inputs named, doubtful inputs warned about."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from synthmatch.bridge.cli import main as cli
from synthmatch.bridge.core import contract as contract_mod
from tests.bridge.bad_models import write_model, write_raising_model

C = contract_mod.default()
SR = C.audio.sample_rate


def unwritable(tmp_path: Path) -> Path:
    """A directory nobody may create files in: a mode 555 folder, or for root (who ignores modes) sysfs."""
    d = tmp_path / "readonly"
    d.mkdir()
    d.chmod(0o555)
    return d if not os.access(d, os.W_OK) else Path("/sys")


@pytest.fixture(scope="module")
def note(tmp_path_factory) -> Path:
    """A loud 1 s decaying tone (what a user would drop in)."""
    t = np.arange(SR) / SR
    path = tmp_path_factory.mktemp("in") / "note.wav"
    sf.write(path, (0.5 * np.sin(2 * np.pi * 220 * t) * np.exp(-3 * t)).astype(np.float32), SR, subtype="FLOAT")
    return path


def one_error(err: str, command: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith(f"synthmatch {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---- match: output place checked before the model is even loaded ----------------------------------


@pytest.mark.parametrize("case", ["file", "readonly"])
def test_match_out_dir_is_checked_before_any_work(tmp_path, capsys, note, case):
    out = tmp_path / "taken"
    out.write_text("a file")
    if case == "readonly":
        out = unwritable(tmp_path) / "match"
    broken = tmp_path / "broken.onnx"  # loading it would fail: the out-dir error must come first
    broken.write_bytes(b"not a model")
    assert cli(["match", str(note), "--out-dir", str(out), "--model", str(broken)]) == 2
    line = one_error(capsys.readouterr().err, "match")
    assert f"--out-dir {out}" in line and ("is a file" if case == "file" else "cannot write there") in line


# ---- match: model outputs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, why",
    [
        ({"on_sound": "nan"}, "not finite"),
        ({"on_sound": "range"}, r"outside the normalised [0, 1]"),
        ({"outputs": 15}, "outputs shape (1, 15)"),
        ({"outputs": 17}, "outputs shape (1, 17)"),
    ],
)
def test_match_refuses_unusable_model_outputs_and_writes_nothing(tmp_path, capsys, note, kw, why):
    model = write_model(tmp_path / "bad.onnx", C, **kw)
    out = tmp_path / "out"
    assert cli(["match", str(note), "--out-dir", str(out), "--model", str(model), "--refine-passes", "0"]) == 2
    line = one_error(capsys.readouterr().err, "match")
    assert why in line and "bad.onnx" in line
    assert not (out / "params.json").exists()


def test_match_with_a_model_raising_on_sound_is_one_line(tmp_path, capsys, note):
    """ONNX Runtime raises inside the model on loud input (not at load): one line, exit 2, nothing written."""
    model = write_raising_model(tmp_path / "raising.onnx", C)
    out = tmp_path / "out"
    assert cli(["match", str(note), "--out-dir", str(out), "--model", str(model)]) == 2
    line = one_error(capsys.readouterr().err, "match")
    assert "inference failed on this input" in line and "raising.onnx" in line
    assert not (out / "params.json").exists()


def test_match_of_a_good_model_writes_strict_json(tmp_path, capsys, note):
    model = write_model(tmp_path / "half.onnx", C, value=0.5)  # 0.5 everywhere: a valid (if dull) model
    out = tmp_path / "out"
    assert cli(["match", str(note), "--out-dir", str(out), "--model", str(model), "--refine-passes", "0"]) == 0
    report = json.loads((out / "params.json").read_text(), parse_constant=lambda c: pytest.fail(f"JSON has {c}"))
    assert set(report["values"].values()) == {0.5}


# ---- match: inputs ------------------------------------------------------------------------------------


def test_match_names_a_directory_and_a_permission_problem(tmp_path, capsys, note):
    assert cli(["match", str(tmp_path), "--out-dir", str(tmp_path / "o")]) == 2
    assert "is a directory; give an audio file" in one_error(capsys.readouterr().err, "match")
    locked = tmp_path / "locked.wav"
    locked.write_bytes(note.read_bytes())
    locked.chmod(0)
    if os.access(locked, os.R_OK):
        return  # root reads anything: the permission case cannot happen here
    assert cli(["match", str(locked), "--out-dir", str(tmp_path / "o")]) == 2
    assert "permission denied" in one_error(capsys.readouterr().err, "match")


def _warnings(tmp_path, capsys, audio: np.ndarray) -> str:
    path = tmp_path / "in.wav"
    sf.write(path, audio.astype(np.float32), SR, subtype="FLOAT")
    model = write_model(tmp_path / "half.onnx", C, value=0.5)
    assert (
        cli(["match", str(path), "--out-dir", str(tmp_path / "out"), "--model", str(model), "--refine-passes", "0"])
        == 0
    )
    return capsys.readouterr().err


def test_match_warns_about_nan_dc_clipping_and_very_short_input(tmp_path, capsys):
    t = np.arange(SR) / SR
    tone = 0.5 * np.sin(2 * np.pi * 220 * t)
    with_nan = tone.copy()
    with_nan[100:200] = np.nan
    assert "100 samples are NaN or infinite" in _warnings(tmp_path, capsys, with_nan)
    assert "DC offset +0.300" in _warnings(tmp_path, capsys, tone + 0.3)
    assert "clipped" in _warnings(tmp_path, capsys, np.clip(4 * tone, -1, 1))
    assert "only 10 ms of audio" in _warnings(tmp_path, capsys, tone[:160])
    clean = _warnings(tmp_path, capsys, tone * np.exp(-3 * t))
    assert "warning" not in clean, clean


# ---- render ---------------------------------------------------------------------------------------------


def test_render_refuses_bad_output_paths_and_seeds(tmp_path, capsys):
    assert cli(["render", "--random", "--out", str(tmp_path)]) == 2
    assert "is a directory" in one_error(capsys.readouterr().err, "render")
    ro = unwritable(tmp_path)
    assert cli(["render", "--random", "--out", str(ro / "x.wav")]) == 2
    assert "cannot write there" in one_error(capsys.readouterr().err, "render")
    with pytest.raises(SystemExit) as e:  # argparse: usage line and exit 2
        cli(["render", "--random", "--seed", "-1", "--out", str(tmp_path / "x.wav")])
    assert e.value.code == 2 and "--seed: '-1': give a whole number >= 0" in capsys.readouterr().err


def test_render_reads_match_params_json_and_inline_json_but_not_true(tmp_path, capsys):
    values = {n: 0.25 for n in C.names}
    params = tmp_path / "params.json"  # the shape match writes: values plus the rest of the report
    params.write_text(json.dumps({"input": "x.wav", "values": values, "params": [], "refinement": None}))
    assert cli(["render", "--params", str(params), "--out", str(tmp_path / "a.wav")]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["values"] == values
    assert cli(["render", "--params", json.dumps(values), "--out", str(tmp_path / "b.wav")]) == 0
    a, _ = sf.read(tmp_path / "a.wav")
    b, _ = sf.read(tmp_path / "b.wav")
    assert np.array_equal(a, b) and np.abs(a).max() > 0
    capsys.readouterr()
    truthy = dict(values, osc1_gain=True)
    assert cli(["render", "--params", json.dumps(truthy), "--out", str(tmp_path / "c.wav")]) == 2
    assert "osc1_gain = true: give a number in [0, 1]" in one_error(capsys.readouterr().err, "render")


def test_demo_out_dir_that_is_a_file_is_refused_at_once(tmp_path, capsys):
    taken = tmp_path / "demo"
    taken.write_text("a file")
    assert cli(["demo", "--out-dir", str(taken)]) == 2
    assert f"--out-dir {taken}: is a file" in one_error(capsys.readouterr().err, "demo")
