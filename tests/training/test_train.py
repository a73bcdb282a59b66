"""The trainer: it learns, resumes exactly after kill -9, and DDP matches a single process."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from synthmatch.bridge import cli
from synthmatch.bridge.core.contract import default
from synthmatch.bridge.core.errors import UsageError
from synthmatch.training.data.onthefly import OnTheFly
from synthmatch.training.model.checkpoint import load_checkpoint, load_model
from synthmatch.training.model.models import build_model, resolve_config
from synthmatch.training.run.config import TrainConfig
from synthmatch.training.run.loop import (
    Checkpoints,
    MetricsLog,
    RunState,
    StepWindow,
    TrainStep,
    ValSet,
    batch_views,
    restore_run,
    validate,
)
from synthmatch.training.run.train import run

ROOT = Path(__file__).resolve().parents[2]
TINY = {"base": "ast-tiny", "depth": 1, "dim": 32, "heads": 2, "head_hidden": 32}


def _toml(d: dict) -> str:
    def val(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        if isinstance(v, bool):
            return "true" if v else "false"
        return json.dumps(v)

    return "".join(f"{k} = {val(v)}\n" for k, v in d.items())


def _config(tmp_path: Path, name: str, **kw) -> Path:
    base = dict(
        model=TINY,
        batch_size=4,
        steps=6,
        lr=1e-3,
        warmup_steps=2,
        val_every=3,
        ckpt_every=2,
        log_every=1,
        val_size=8,
        val_batch_size=8,
        workers=0,
        plot=False,
        cache_dir=str(tmp_path / "cache"),
    )
    path = tmp_path / f"{name}.toml"
    path.write_text(_toml({**base, **kw}))
    return path


def _env() -> dict:
    # one thread per process: the same kernels (and float sums) in every run, and no oversubscription
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _train_cli(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "synthmatch.bridge.cli",
        "train",
        "--config",
        str(config),
        "--out",
        str(out),
        "--device",
        "cpu",
        *extra,
    ]
    return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model_state"]


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def one_thread():
    """One torch thread: on a shared two-core machine, threads spinning against each other cost 5x."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_overfits_fixed_set(tmp_path, one_thread):
    """A short run on a fixed 16-example set; validating on that same set shows a real drop."""
    cfg = TrainConfig.from_dict(
        dict(
            model=TINY,
            batch_size=16,
            steps=80,
            lr=3e-3,
            warmup_steps=0,
            grad_clip=1.0,
            val_every=40,
            ckpt_every=40,
            log_every=10,
            train_seed=7,
            train_size=16,
            val_seed=7,
            val_size=16,
            val_batch_size=16,
            plot=True,
            cache_dir=str(tmp_path / "cache"),
        )
    )
    out = tmp_path / "run"
    result = run(cfg, out, device="cpu", progress=False)
    vals = [r for r in _records(out) if r["type"] == "val"]
    assert [r["step"] for r in vals] == [0, 40, 80]
    assert result["best_val"] <= 0.7 * vals[0]["val_loss"], vals
    # best.pt is the best validation; reloaded, it reproduces that loss on the same examples
    from synthmatch.training.data.onthefly import Renderer

    audio, params = Renderer(default(), 7, "cpu").render(0, 16)
    model, ckpt = load_model(out / "best.pt")
    with torch.no_grad():
        mse = float(((model(audio) - params) ** 2).mean())
    assert mse == pytest.approx(result["best_val"], rel=1e-4)
    assert (out / "loss.png").stat().st_size > 1000
    resolved = json.loads((out / "config.resolved.json").read_text())
    assert resolved["train"]["lr"] == 3e-3 and resolved["model_config"]["dim"] == 32


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from synthmatch.training.run.config import TrainConfig
    from synthmatch.training.run.train import run

    def on_step(step):
        if step == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no atexit: like kill -9

    run(TrainConfig.load(sys.argv[1]), sys.argv[2], device="cpu", on_step=on_step, progress=False)
""")


@pytest.mark.slow
def test_kill_and_resume_is_exact(tmp_path, capsys):
    # dropout on, so the restored torch RNG matters as well as data indices and optimizer state
    model = {**TINY, "dropout": 0.1}
    config = _config(tmp_path, "resume", model=model, steps=7)
    full, killed = tmp_path / "full", tmp_path / "killed"
    r = _train_cli(config, full)
    assert r.returncode == 0, r.stderr
    # killed after step 5: last.pt holds step 4, step 5's work is lost and redone
    k = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(config), str(killed), "5"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert k.returncode == -signal.SIGKILL, k.stderr
    assert load_checkpoint(killed / "last.pt")["step"] == 4
    with open(killed / "metrics.jsonl", "a") as f:  # as if killed in the middle of writing a record
        f.write('{"type": "train", "st')
    (killed / ".last.pt.x1y2.tmp").write_bytes(b"half a checkpoint")  # ... or of saving one
    # without --resume an existing run is refused
    assert cli.main(["train", "--config", str(config), "--out", str(killed), "--device", "cpu"]) == 2
    assert "pass --resume" in capsys.readouterr().err
    r = _train_cli(config, killed, "--resume")
    assert r.returncode == 0, r.stderr
    a, b = _weights(full / "last.pt"), _weights(killed / "last.pt")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert load_checkpoint(killed / "last.pt")["step"] == 7
    steps = [(r["type"], r["step"]) for r in _records(killed)]
    assert steps == [(r["type"], r["step"]) for r in _records(full)]  # no duplicated records
    assert not list(killed.glob("*.tmp")) and not list(killed.glob(".*.tmp"))
    # a resume that would change the result is refused, naming the key
    changed = _config(tmp_path, "changed", model=model, steps=9, lr=5e-4)
    assert cli.main(["train", "--config", str(changed), "--out", str(killed), "--resume", "--device", "cpu"]) == 2
    assert "changes lr" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path):
    config = _config(tmp_path, "ddp", steps=3, val_every=3, ckpt_every=3)
    one, two = tmp_path / "one", tmp_path / "two"
    r = _train_cli(config, one)
    assert r.returncode == 0, r.stderr
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "synthmatch.bridge.cli",
        "train",
        "--config",
        str(config),
        "--out",
        str(two),
        "--device",
        "cpu",
    ]
    r = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((two / "config.resolved.json").read_text())["world_size"] == 2
    a, b = _weights(one / "last.pt"), _weights(two / "last.pt")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)

    def vals(out):
        return [r["val_loss"] for r in _records(out) if r["type"] == "val"]

    assert vals(one) == pytest.approx(vals(two), rel=1e-5)
    torch.manual_seed(0)  # config seed 0: the initial weights; they moved far beyond the tolerance
    init = build_model(TINY, default()).state_dict()
    assert max(float((a[n] - init[n]).abs().max()) for n in a) > 1e-3


def test_config_errors_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(_toml({"model": "ast-tiny", "batch_sise": 8}))
    assert cli.main(["train", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown key" in err and "batch_sise" in err and "allowed keys" in err
    bad.write_text(_toml({"model": "ast-tiny", "steps": "many"}))
    assert cli.main(["train", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "steps" in capsys.readouterr().err
    bad.write_text(_toml({"model": {"base": "ast-tiny", "widht": 3}}))
    assert cli.main(["train", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "widht" in capsys.readouterr().err
    for path in sorted((ROOT / "configs" / "train").glob("*.toml")):
        TrainConfig.load(path)  # every shipped config is valid


def test_init_from_an_exported_models_weights(tiny_onnx):
    """A run can start from the weights an export writes beside its .onnx (fine-tuning a shipped model)."""
    from synthmatch.bridge.core import contract as contract_mod
    from synthmatch.bridge.core.errors import UsageError
    from synthmatch.training.model.models import build_model, resolve_config
    from synthmatch.training.run.train import _init_weights

    c = contract_mod.default()
    weights = tiny_onnx.with_suffix(".pt")
    model = build_model("ast-tiny", c)
    _init_weights(model, resolve_config("ast-tiny"), weights, c)
    stored = torch.load(weights, weights_only=True)["model_state"]
    assert all(torch.equal(v, stored[k]) for k, v in model.state_dict().items())
    with pytest.raises(UsageError, match="model config differs"):
        _init_weights(build_model("cnn", c), resolve_config("cnn"), weights, c)
    with pytest.raises(UsageError, match="no such file"):
        _init_weights(model, resolve_config("ast-tiny"), weights.with_name("nope.pt"), c)


CQT_TINY = {**TINY, "frontend": "mel+cqt", "head": "pitch-cls"}


@pytest.fixture(scope="module")
def audio_shards(tmp_path_factory):
    """A 20-example audio dataset in shards of 8 (the last one short), as `dataset render` writes it."""
    from synthmatch.training.data.shardrender import render_dataset

    root = tmp_path_factory.mktemp("shards") / "ds"
    render_dataset(default(), root, 20, seed=3, shard_size=8, store="audio", progress=False)
    return root


@pytest.mark.slow
def test_training_from_shards_resumes_exactly_and_reads_epochs(tmp_path, audio_shards):
    # 7 steps of 6 = 42 examples: more than two epochs of the 20, each in its own permutation
    config = _config(tmp_path, "shards", model=CQT_TINY, steps=7, batch_size=6, data=str(audio_shards))
    full, killed = tmp_path / "full", tmp_path / "killed"
    r = _train_cli(config, full)
    assert r.returncode == 0, r.stderr
    views = list(audio_shards.glob("views-*/shard-*.npy"))
    assert len(views) == 3 * 2  # 3 shards x 2 views (mel, constant-Q), computed once
    assert sorted({v.parent.name.split("-")[1] for v in views}) == ["cqt", "mel"]
    k = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(config), str(killed), "5"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert k.returncode == -signal.SIGKILL, k.stderr
    r = _train_cli(config, killed, "--resume")
    assert r.returncode == 0, r.stderr
    a, b = _weights(full / "last.pt"), _weights(killed / "last.pt")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert [os.path.getmtime(v) for v in views] == [
        os.path.getmtime(v) for v in audio_shards.glob("views-*/shard-*.npy")
    ]


def test_shard_batches_are_the_cached_views_of_the_right_rows(audio_shards):
    from synthmatch.training.data.featcache import ViewCache
    from synthmatch.training.data.shards import ShardDataset

    c = default()
    model = build_model(CQT_TINY, c)
    ds = ShardDataset(audio_shards, c)
    cache = ViewCache(ds, model.frontend, progress=False)
    rows = [17, 2, 9, 2]
    (mel, cqt), params = cache.batch(rows)
    audio, expected = ds.batch(rows)
    with torch.no_grad():
        ref_mel, ref_cqt = model.frontend(audio)
    assert torch.equal(params, expected)
    assert (mel - ref_mel).abs().max() < 2e-3 and (cqt - ref_cqt).abs().max() < 2e-3  # float16 storage
    first, second = (next(iter(cache.batches(20, shuffle_seed=s)))[1] for s in (0, 0))
    assert torch.equal(first, second)  # a pure function of (seed, step)
    epoch = next(iter(cache.batches(20, shuffle_seed=1)))[1]
    assert sorted(map(tuple, epoch.tolist())) == sorted(map(tuple, ds.batch(range(20))[1].tolist()))


def test_bad_data_directory_is_a_usage_error(tmp_path, capsys):
    config = _config(tmp_path, "nodata", data=str(tmp_path / "missing"))
    assert cli.main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
    assert "data = " in capsys.readouterr().err


def test_config_types_come_from_the_typed_loader():
    cfg = TrainConfig.from_dict({"model": TINY, "lr": 1, "notes": (48, 72)})
    assert isinstance(cfg.lr, float) and cfg.lr == 1.0  # an int where a float is expected
    assert cfg.notes == [48, 72] and isinstance(cfg.notes, list)  # as stored in checkpoints: --resume compares it
    for bad in ({"steps": True}, {"lr": "fast"}, {"plot": 1}, {"grad_clip": math.inf}, {"model": 3}):
        with pytest.raises(UsageError, match=rf"^x\.toml: {next(iter(bad))} = "):
            TrainConfig.from_dict(bad, where="x.toml")
    with pytest.raises(UsageError, match=r"^x\.toml: unknown key '?batch_sise'?; allowed keys: amp, batch_size"):
        TrainConfig.from_dict({"batch_sise": 8}, where="x.toml")
    with pytest.raises(UsageError, match="steps = 0: must be >= 1"):  # then TrainConfig.validate
        TrainConfig.from_dict({"steps": 0})


# ------------------------------------------------------------------------------------------------
# The loop's parts alone (training.run.loop)

CPU = torch.device("cpu")


def _batch(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n on-the-fly examples: audio (n, T), params (n, 16), notes (n,)."""
    return next(iter(OnTheFly(default(), seed, n)))


def test_train_step_is_the_update_written_out(one_thread):
    """TrainStep = the head's loss, backward, clipping, Adam at lr x lr_at(steps done): the same bits."""
    torch.manual_seed(0)
    model = build_model({**TINY, "dropout": 0.1}, default())
    ref = copy.deepcopy(model)
    views, target, note = batch_views(_batch(4), model, CPU)
    assert [v.shape[0] for v in views] == [4] and target.shape == (4, 16) and note.shape == (4,)
    step = TrainStep(model, lr=1e-3, lr_at=lambda s: (s + 1) / 4, grad_clip=1e-3)  # a clip that always bites
    assert step.lr == 1e-3 * (1 / 4)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3 * (1 / 4))
    for s in range(3):
        torch.manual_seed(10 + s)  # the same dropout masks for both
        loss = step(views, target, note)
        torch.manual_seed(10 + s)
        expected = ref.loss(views, target, note)
        opt.zero_grad()
        expected.backward()
        assert nn.utils.clip_grad_norm_(ref.parameters(), 1e-3) > 1e-3
        opt.step()
        opt.param_groups[0]["lr"] = 1e-3 * ((s + 2) / 4)
        assert not loss.requires_grad and loss.item() == expected.item()
        assert step.lr == opt.param_groups[0]["lr"]
    ours, theirs = model.state_dict(), ref.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not torch.equal(ours["cls_token"], build_model(TINY, default()).state_dict()["cls_token"])


def test_validate_is_the_mse_of_the_predictions_and_splits_over_ranks(tmp_path, one_thread):
    torch.manual_seed(0)
    model = build_model(TINY, default())
    val = ValSet(*_batch(6, seed=5))
    names = default().names
    metrics = validate(model, val, names, batch_size=4)  # chunks of 4 and 2
    assert model.training  # left in the mode it was in
    model.eval()
    with torch.no_grad():
        per_param = ((model(val.audio, val.notes) - val.params) ** 2).mean(0)
    assert list(metrics["val_mse"]) == list(names)
    assert list(metrics["val_mse"].values()) == pytest.approx(per_param.tolist(), rel=1e-5)
    assert metrics["val_loss"] == pytest.approx(float(per_param.mean()), rel=1e-5)
    # under DDP rank r takes rows r::world, and the all-reduce adds the ranks' shares: with a group of one
    # process the reduce is the identity, so two ranks' shares, computed here in turn, add up to the whole
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        shares = [validate(model, val, names, batch_size=4, rank=r, world=2)["val_mse"] for r in (0, 1)]
    finally:
        dist.destroy_process_group()
    assert all(0 < shares[0][n] < metrics["val_mse"][n] for n in names)
    assert [shares[0][n] + shares[1][n] for n in names] == pytest.approx(list(metrics["val_mse"].values()), rel=1e-6)


def test_checkpoint_round_trip_continues_exactly(tmp_path, one_thread):
    """Saved after 2 steps and restored into another model, optimizer and RNG state, the 3rd step is the
    uninterrupted run's: weights, Adam moments, schedule and the dropout RNG all came back."""
    c, cfg = default(), resolve_config({**TINY, "dropout": 0.1})

    def trainer(seed: int) -> TrainStep:
        torch.manual_seed(seed)
        return TrainStep(build_model(cfg, c), lr=1e-3, lr_at=lambda s: (s + 1) / 8, grad_clip=1.0)

    a = trainer(0)
    views, target, note = batch_views(_batch(4), a.model, CPU)
    for _ in range(2):
        a(views, target, note)
    state = RunState(step=2)
    assert state.observe(0.5) and not state.observe(0.7)
    assert (state.best_val, state.last_val) == (0.5, 0.7)
    path = Checkpoints(a, cfg, c, {"lr": 1e-3}, "reference").save(tmp_path / "last.pt", state)
    loss_3 = a(views, target, note)  # the uninterrupted run's third step

    b = trainer(1)
    b(views, target, note)  # moments, schedule and RNG all elsewhere now
    ckpt = load_checkpoint(path)
    assert ckpt["train_config"] == {"lr": 1e-3} and ckpt["synth"] == "reference" and ckpt["extra"] == {}
    assert restore_run(ckpt, b) == RunState(step=2, best_val=0.5, last_val=0.7)
    assert b(views, target, note).item() == loss_3.item()
    assert b.lr == a.lr
    ours, theirs = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_metrics_log_keeps_what_the_checkpoint_covers(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for s in (0, 2, 4, 6):
        log.append({"type": "train", "step": s, "loss": 1.0 / (s + 1)})
    with open(log.path, "a") as f:  # killed in the middle of a record
        f.write('{"type": "val", "st')
    other_rank = MetricsLog(log.path, write=False)
    other_rank.append({"type": "train", "step": 8})
    other_rank.keep_until(0)
    other_rank.clear()
    assert len(log.path.read_text().splitlines()) == 5
    log.keep_until(4)
    assert [r["step"] for r in log.records()] == [0, 2, 4]
    assert log.path.read_text().count("\n") == 3
    log.clear()
    assert not log.path.exists()


def test_step_window_records_the_mean_loss_since_the_last_record():
    window = StepWindow(CPU)
    for loss in (1.0, 2.0, 6.0):
        window.data_begin()
        window.data_end()
        window.add(torch.tensor(loss))
    rec = window.record(step=3, lr=1e-4, batch_size=8)
    assert (rec["type"], rec["step"], rec["loss"], rec["lr"]) == ("train", 3, 3.0, 1e-4)
    assert rec["samples_per_s"] > 0 and 0 <= rec["data_share"] <= 1
    window.restart()
    window.add(torch.tensor(0.5))
    assert window.record(step=4, lr=1e-4, batch_size=8)["loss"] == 0.5


def test_a_performance_model_trains_on_held_windows_from_the_defaults_encoder(tmp_path, one_thread, capsys):
    """ast-tiny-perf (shrunk in steps, not in shape) starts from the shipped default's encoder and head
    (init_partial: the patch and positional embeddings, whose shapes differ, fresh), trains on held-note
    windows and validates on the 13 outputs it carries only."""
    from synthmatch.bridge.live.config import resolve_path

    default_pt = resolve_path("models/default.pt")
    cfg = _config(
        tmp_path,
        "perf",
        model="ast-tiny-perf",
        init_from=str(default_pt),
        init_partial=True,
        notes=[48, 72],
        steps=2,
        val_every=2,
        batch_size=4,
    )
    out = tmp_path / "perf"
    run(TrainConfig.load(cfg), out, device="cpu")
    assert "3 fresh (cqt_embed.weight, patch_embed.weight, pos_embed)" in capsys.readouterr().err
    (val,) = [r for r in _records(out) if r.get("type") == "val" and r["step"] == 2]
    carried = [v for k, v in val["val_mse"].items() if not k.startswith(("env_", "reverb_"))]
    assert len(carried) == 13 and val["val_loss"] == pytest.approx(sum(carried) / 13)
    stored = torch.load(default_pt, weights_only=True)["model_state"]
    first = load_checkpoint(out / "last.pt")["model_state"]
    assert first["blocks.0.attn.qkv.weight"].shape == stored["blocks.0.attn.qkv.weight"].shape
    with pytest.raises(UsageError, match="none of its weights fit"):
        from synthmatch.training.run.train import _init_weights

        c = default()
        _init_weights(build_model("cnn", c), resolve_config("cnn"), default_pt, c, partial=True)


def test_weights_and_runs_saved_before_the_performance_keys_still_load_and_resume(tmp_path, tiny_onnx):
    """A weights file whose model config lacks window_s and carries (every export before them) is the
    full model they default to; a run saved before init_partial resumes."""
    from synthmatch.training.run.train import _check_resume, _init_weights

    c = default()
    stored = torch.load(tiny_onnx.with_suffix(".pt"), weights_only=True)
    for key in ("window_s", "carries"):
        stored["model_config"].pop(key)
    old = tmp_path / "old.pt"
    torch.save(stored, old)
    model = build_model("ast-tiny", c)
    _init_weights(model, resolve_config("ast-tiny"), old, c)
    assert all(torch.equal(v, stored["model_state"][k]) for k, v in model.state_dict().items())
    cfg = TrainConfig()
    saved = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "init_partial"}
    _check_resume(saved, cfg, old)  # no "changes init_partial"
    with pytest.raises(UsageError, match="changes lr"):
        _check_resume({**saved, "lr": 1.0}, cfg, old)


@pytest.mark.parametrize("window_s, says", [(3.5, "at most 2.95 s"), (5.0, "at most the contract's 4 s")])
def test_a_window_the_contract_or_a_held_note_cannot_hold_is_a_usage_error(tmp_path, window_s, says):
    model = {"base": "ast-tiny-perf", "window_s": window_s, "depth": 1, "dim": 32, "heads": 2, "head_hidden": 32}
    cfg = _config(tmp_path, "window", model=model, steps=1, val_size=4, batch_size=2)
    with pytest.raises(UsageError, match=says):
        run(TrainConfig.load(cfg), tmp_path / "out", device="cpu")
