"""Training across notes: notes as a pure function of (seed, i), datasets and splits played at a note
range, the model told the note (pitch-relative constant-Q view), its export with a second input, and
evaluation at other notes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synthmatch.bridge.cli import main as cli
from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.engines import load_engine
from synthmatch.training.data.onthefly import OnTheFly, Renderer, cached_split, split_cache_path, split_notes
from synthmatch.training.data.shardrender import render_dataset
from synthmatch.training.data.shards import ShardDataset, ShardError
from synthmatch.training.export import PARITY_TOL, export_model
from synthmatch.training.model.models import build_model, resolve_config
from synthmatch.training.synths.sampling import check_notes, sample_notes

C = contract_mod.default()
SMALL_NOTES = {"base": "ast-tiny-notes", "depth": 1, "dim": 32, "heads": 2, "head_hidden": 32}


def test_notes_are_a_pure_function_of_seed_and_index():
    whole = sample_notes(3, range(40), (36, 84))
    assert np.array_equal(whole[17:29], sample_notes(3, range(17, 29), (36, 84)))
    assert whole.min() >= 36 and whole.max() <= 84 and len(set(whole.tolist())) > 10
    assert not np.array_equal(whole, sample_notes(4, range(40), (36, 84)))
    assert np.array_equal(sample_notes(3, range(5), (60, 60)), np.full(5, 60))
    with pytest.raises(ValueError, match="notes"):
        check_notes((84, 36))
    with pytest.raises(ValueError, match="notes"):
        check_notes((36.5, 84))


def test_a_note_range_changes_the_note_not_the_patch():
    at_c4 = Renderer(C, 5)
    spread = Renderer(C, 5, notes=(36, 84))
    a4, p4 = at_c4.render(0, 8)
    a, p = spread.render(0, 8)
    assert torch.equal(p, p4) and not torch.allclose(a, a4)
    # the default, (60, 60) and no range at all are the same bits
    assert torch.equal(Renderer(C, 5, notes=(60, 60)).render(0, 8)[0], a4)
    # example i is the same at any batch size: batch iterators carry each example's note
    audio, params, notes = next(iter(OnTheFly(C, 5, 8, notes=(36, 84))))
    assert torch.equal(audio, a) and torch.equal(notes, spread.notes(0, 8))
    one = Renderer(C, 5, notes=(36, 84)).render(3, 4)[0]
    assert torch.equal(one[0], a[3])


def test_splits_at_a_note_range_are_cached_apart(tmp_path):
    c4 = split_cache_path(C, "val", 8, cache_dir=tmp_path)
    spread = split_cache_path(C, "val", 8, cache_dir=tmp_path, notes=(36, 84))
    assert c4 != spread and split_cache_path(C, "val", 8, cache_dir=tmp_path, notes=(60, 60)) == c4
    audio, params = cached_split(C, "val", 8, cache_dir=tmp_path, notes=(36, 84))
    again, _ = cached_split(C, "val", 8, cache_dir=tmp_path, notes=(36, 84))  # read back from the cache
    assert spread.exists() and torch.equal(audio, again)
    notes = split_notes(C, "val", 8, notes=(36, 84))
    direct = Renderer(C, 1_000_003, notes=(36, 84)).render(0, 8)[0]
    assert torch.equal(direct, audio) and notes.shape == (8,)


def test_a_sharded_dataset_records_its_notes_and_gives_them_back(tmp_path):
    render_dataset(C, tmp_path / "d", 6, seed=2, workers=1, shard_size=3, store="audio", progress=False, notes=(40, 80))
    ds = ShardDataset(tmp_path / "d", C)
    assert ds.plan.notes == (40, 80)
    want = Renderer(C, 2, notes=(40, 80))
    assert torch.equal(ds.notes(np.arange(6)), want.notes(0, 6))
    x, _ = ds.batch(np.arange(6))
    assert torch.allclose(x, want.render(0, 6)[0], atol=1.0 / 32767)
    with pytest.raises(ShardError, match="another dataset"):  # a resume must name the same range
        render_dataset(
            C, tmp_path / "d", 6, seed=2, workers=1, shard_size=3, store="audio", progress=False, notes=(36, 84)
        )


def test_the_relative_view_puts_the_played_note_where_c4_is():
    model = build_model(resolve_config(SMALL_NOTES), C).eval()
    t = np.arange(C.audio.num_samples) / C.audio.sample_rate
    tone = lambda midi: torch.from_numpy(  # noqa: E731
        (0.3 * np.sin(2 * np.pi * 440 * 2 ** ((midi - 69) / 12) * t)).astype(np.float32)
    )[None]
    with torch.no_grad():
        c4 = model.frontend(tone(60))[1].mean(-1)[0]
        for note in (48, 67):
            moved = model.relative(model.frontend(tone(note)), torch.tensor([float(note)]))[1].mean(-1)[0]
            assert int(moved.argmax()) == int(c4.argmax())  # the fundamental lands on C4's bin
        low = model.relative(model.frontend(tone(48)), torch.tensor([84.0]))[1]  # shifted 72 bins down
    floor = model.cqt_floor
    assert torch.allclose(low[0, -72:], torch.full_like(low[0, -72:], floor))  # silence shifted in


def test_the_note_changes_the_answer_and_trains():
    torch.manual_seed(0)
    model = build_model(resolve_config(SMALL_NOTES), C)
    audio, params, notes = next(iter(OnTheFly(C, 1, 4, notes=(36, 84))))
    views = model.frontend(audio)
    loss = model.loss(views, params, notes)
    loss.backward()
    assert torch.isfinite(loss) and model.note_embed.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert not torch.allclose(model(audio, notes), model(audio, notes + 12))
        assert torch.equal(model(audio), model(audio, torch.full((4,), 60.0)))  # untold: the contract's note


def test_export_takes_the_note_as_a_second_input(tmp_path):
    cfg = resolve_config(SMALL_NOTES)
    torch.manual_seed(2)
    model = build_model(cfg, C).eval()
    result = export_model(model, C, tmp_path / "n.onnx", cfg.to_dict())
    assert result.meta.takes_note and result.max_abs_diff < PARITY_TOL
    audio, _, notes = next(iter(OnTheFly(C, 3, 5, notes=(36, 84))))
    with torch.no_grad():
        ref = model(audio, notes).numpy()
    with load_engine(tmp_path / "n.onnx", "onnxruntime") as engine:
        got = engine.infer(audio.numpy(), notes.numpy())
        assert np.abs(got - ref).max() < PARITY_TOL
        np.testing.assert_allclose(engine.infer(audio.numpy()), engine.infer(audio.numpy(), [60] * 5), atol=1e-6)
        with pytest.raises(ValueError, match="MIDI notes"):
            engine.infer(audio.numpy(), [200] * 5)


def test_init_from_a_c4_model_widens_it_to_take_the_note(tmp_path):
    from synthmatch.training.model.checkpoint import save_checkpoint
    from synthmatch.training.run.config import TrainConfig
    from synthmatch.training.run.train import run

    c4_cfg = resolve_config({**SMALL_NOTES, "note_input": False})
    torch.manual_seed(4)
    c4 = build_model(c4_cfg, C)
    save_checkpoint(tmp_path / "c4.pt", model=c4, model_config=c4_cfg, contract=C, step=0)
    cfg = TrainConfig.from_dict(
        {
            "model": SMALL_NOTES,
            "batch_size": 4,
            "steps": 1,
            "val_size": 4,
            "val_every": 0,
            "ckpt_every": 0,
            "log_every": 1,
            "warmup_steps": 0,
            "init_from": str(tmp_path / "c4.pt"),
            "notes": [48, 72],
            "plot": False,
            "cache_dir": str(tmp_path / "cache"),
        }
    )
    summary = run(cfg, tmp_path / "run", device="cpu", progress=False)
    assert np.isfinite(summary["last_val"])
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["model_config"]["note_input"] and "note_embed.weight" in ckpt["model_state"]
    assert not torch.equal(ckpt["model_state"]["cls_token"], c4.state_dict()["cls_token"])  # one step trained
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["type"] for r in records][:1] == ["val"]


def test_eval_at_other_notes_told_the_true_or_the_heard_note(tmp_path, capsys):
    cfg = resolve_config(SMALL_NOTES)
    torch.manual_seed(5)
    export_model(build_model(cfg, C), C, tmp_path / "n.onnx", cfg.to_dict())
    common = [
        "eval",
        "--model",
        str(tmp_path / "n.onnx"),
        "--split",
        "test",
        "--size",
        "8",
        "--notes",
        "36:84",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert cli(common + ["--out", str(tmp_path / "true")]) == 0
    assert cli(common + ["--told", "heard", "--out", str(tmp_path / "heard")]) == 0
    true = json.loads((tmp_path / "true" / "eval.json").read_text())
    heard = json.loads((tmp_path / "heard" / "eval.json").read_text())
    assert true["notes"]["told_is_true_note"] == 1.0 and true["told"] == "true"
    assert heard["told"] == "heard" and 0.0 <= heard["notes"]["told_is_true_note"] <= 1.0
    assert cli(common + ["--refine-passes", "1", "--out", str(tmp_path / "r")]) == 2
    assert "refinement" in capsys.readouterr().err
    assert cli(["eval", "--model", str(tmp_path / "n.onnx"), "--notes", "90:30", "--out", str(tmp_path / "x")]) == 2
