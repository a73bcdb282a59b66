"""Issue 22, items 5 and 7: the training commands' outputs are whole or untouched (a real full disk, a
small tmpfs), and every case of the probe's traceback list is one line that says what to do, exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from synthmatch.bridge.cli import main as cli
from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.atomic import DiskFull
from synthmatch.training.match import MatchResult, write_match
from synthmatch.training.model.checkpoint import save_checkpoint
from synthmatch.training.model.models import build_model, resolve_config
from tests.fulldisk import fill, small_disk

C = contract_mod.default()
SR = C.audio.sample_rate
LONG = "n" * 300  # a path component over 255 bytes
TINY = {"base": "ast-tiny", "depth": 1, "dim": 32, "heads": 2, "head_hidden": 32}


def one_line_exit_2(capsys, argv: list[str], needle: str) -> str:
    assert cli(argv) == 2
    err = capsys.readouterr().err
    errors = [ln for ln in err.replace("\r", "\n").splitlines() if "error" in ln.lower()]  # progress aside
    assert len(errors) == 1 and "Traceback" not in err, err
    assert needle in errors[0], err
    return errors[0]


@pytest.fixture(scope="module")
def tone(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    t = np.arange(SR) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * 262 * t) * np.exp(-2 * t)).astype(np.float32), SR)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg = resolve_config(TINY)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    return save_checkpoint(path, model=build_model(cfg, C), model_config=cfg, contract=C, step=1)


def _result(value: float) -> MatchResult:
    rng = np.random.default_rng(int(value * 100))
    values = {n: value for n in C.names}
    report = {"input": "take.wav", "synth": "reference", "values": values}
    audio = (0.1 * rng.standard_normal(C.audio.num_samples)).astype(np.float32)
    return MatchResult(values, {"midi": 60}, 0.0, audio, audio, report)


# ---- item 5: match's three files as one unit --------------------------------------------------------


def test_match_on_a_full_disk_keeps_the_previous_result_whole(tmp_path):
    with small_disk(tmp_path / "disk", "1m") as disk:
        write_match(_result(0.25), disk, C)
        before = {p.name: p.read_bytes() for p in disk.iterdir()}
        assert sorted(before) == ["compare.png", "match.wav", "params.json"]
        fill(disk, leave=100_000)  # room for params.json, not for the 256 kB match.wav
        with pytest.raises(DiskFull, match=r"the disk is full \(needs "):
            write_match(_result(0.75), disk, C)
        assert {p.name: p.read_bytes() for p in disk.iterdir() if p.name != "filler"} == before


def test_match_cli_on_a_full_disk_is_one_line(tmp_path, tone, capsys):
    with small_disk(tmp_path / "disk", "1m") as disk:
        fill(disk)
        argv = ["match", str(tone), "--out-dir", str(disk / "m"), "--refine-passes", "0"]
        one_line_exit_2(capsys, argv, "the disk is full")


def test_match_clips_samples_near_1e30_as_the_bridge_does(tmp_path, capsys):
    path = tmp_path / "huge.wav"
    t = np.arange(SR) / SR
    sf.write(path, (1e30 * np.sin(2 * np.pi * 262 * t)).astype(np.float32), SR, subtype="FLOAT")
    assert cli(["match", str(path), "--out-dir", str(tmp_path / "m"), "--refine-passes", "0"]) == 0
    err = capsys.readouterr().err
    assert "clipped" in err and "broken" not in err
    assert json.loads((tmp_path / "m" / "params.json").read_text())["values"]


# ---- item 7: path components over 255 bytes ---------------------------------------------------------


@pytest.mark.parametrize("where", ["input", "--out-dir", "--model"])
def test_match_with_a_name_over_255_bytes(tmp_path, tone, capsys, where):
    argv = {
        "input": ["match", str(tmp_path / f"{LONG}.wav")],
        "--out-dir": ["match", str(tone), "--out-dir", str(tmp_path / LONG)],
        "--model": ["match", str(tone), "--model", str(tmp_path / f"{LONG}.onnx")],
    }[where]
    one_line_exit_2(capsys, [*argv, "--refine-passes", "0"], "too long")


def test_render_and_train_with_a_name_over_255_bytes(tmp_path, capsys):
    one_line_exit_2(capsys, ["render", "--random", "--out", str(tmp_path / f"{LONG}.wav")], "too long")
    one_line_exit_2(capsys, ["train", "--config", str(tmp_path / f"{LONG}.toml"), "--out", "r"], "too long")


def test_render_out_without_an_extension(tmp_path, capsys):
    one_line_exit_2(capsys, ["render", "--random", "--out", str(tmp_path / "take1")], "ending in .wav")


# ---- item 7: an existing file as the output --------------------------------------------------------


def test_dataset_render_train_and_eval_into_an_existing_file(tmp_path, ckpt, capsys):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    config = tmp_path / "c.toml"
    config.write_text('model = "ast-tiny"\nsteps = 1\n')
    one_line_exit_2(capsys, ["dataset", "render", "--count", "4", "--out", str(taken)], "is a file")
    one_line_exit_2(capsys, ["train", "--config", str(config), "--out", str(taken), "--device", "cpu"], "is a file")
    cache = tmp_path / "cache"
    argv = ["eval", "--checkpoint", str(ckpt), "--out", str(taken), "--size", "2", "--cache-dir", str(cache)]
    one_line_exit_2(capsys, [*argv, "--device", "cpu"], "is a file")
    assert not cache.exists()  # refused before the evaluation rendered its split
    assert taken.read_text() == "mine"


def test_export_where_a_file_is_in_the_way(tmp_path, ckpt, capsys):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    one_line_exit_2(capsys, ["export", "--checkpoint", str(ckpt), "--out", str(taken / "m.onnx")], "is a file")
    (tmp_path / "m.pt").mkdir()  # the weights file's place is a folder
    argv = ["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.onnx")]
    one_line_exit_2(capsys, argv, "is a directory")


# ---- item 7: full disks in export, train and dataset render ---------------------------------------------


def test_export_on_a_full_disk(tmp_path, ckpt, capsys):
    with small_disk(tmp_path / "disk", "1m") as disk:
        argv = ["export", "--checkpoint", str(ckpt), "--out", str(disk / "m.onnx"), "--no-weights"]
        fill(disk, leave=20_000)
        one_line_exit_2(capsys, argv, "the disk is full (needs ")
        assert not (disk / "m.onnx").exists()


def test_train_on_a_full_disk(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(
        'model = { base = "ast-tiny", depth = 1, dim = 32, heads = 2, head_hidden = 32 }\n'
        "batch_size = 2\nsteps = 2\nwarmup_steps = 1\nval_every = 2\nckpt_every = 2\nlog_every = 1\n"
        f'val_size = 2\nval_batch_size = 2\nworkers = 0\nplot = false\ncache_dir = "{tmp_path / "cache"}"\n'
    )
    with small_disk(tmp_path / "disk", "1m") as disk:
        fill(disk, leave=4_000)  # room for config.resolved.json, not for a checkpoint
        one_line_exit_2(
            capsys, ["train", "--config", str(config), "--out", str(disk / "run"), "--device", "cpu"], "full"
        )


def test_dataset_render_on_a_full_disk_blames_the_disk_not_the_synth(tmp_path, capsys):
    with small_disk(tmp_path / "disk", "1m") as disk:
        argv = ["dataset", "render", "--count", "16", "--shard-size", "4", "--store", "audio", "--out", str(disk / "d")]
        err = one_line_exit_2(capsys, argv, "the disk is full")
        assert "crashes" not in err


# ---- item 7: TOML nested 100,000 deep, a UTF-8 BOM, a 50 MB value ---------------------------------------


def test_deep_toml_in_a_train_config_and_a_contract(tmp_path, capsys):
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    one_line_exit_2(capsys, ["train", "--config", str(deep), "--out", str(tmp_path / "r")], "nested too deeply")
    one_line_exit_2(capsys, ["params", "--contract", str(deep)], "nested too deeply")
