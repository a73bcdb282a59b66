"""training.evaluate: the reusable core on real renders, and `synthmatch eval` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synthmatch.bridge import cli
from synthmatch.bridge.core import contract as contract_mod
from synthmatch.training.data.onthefly import cached_split
from synthmatch.training.evaluate import evaluate
from synthmatch.training.model.checkpoint import save_checkpoint
from synthmatch.training.model.models import build_model, resolve_config

SIZE = 8


@pytest.fixture(scope="module")
def c():
    return contract_mod.default()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def split(c, cache):
    return cached_split(c, "test", SIZE, cache_dir=cache)


def test_oracle_scores_zero_and_constant_guess_scores_by_hand(c, split):
    audio, params = split
    lookup = {a.numpy().tobytes(): p.numpy() for a, p in zip(audio, params)}
    oracle = evaluate(lambda x: np.stack([lookup[row.tobytes()] for row in x]), c, audio, params, batch_size=3)
    assert oracle["count"] == SIZE
    assert oracle["param_mse"] == 0.0
    # predictions re-render in the same groups as the split: bit-identical audio, zero distance
    assert oracle["spectral_convergence"] == 0.0 and oracle["multiscale_spectral_distance"] == 0.0

    half = evaluate(lambda x: torch.full((len(x), 16), 0.5), c, audio, params)
    by_hand = ((params.double() - 0.5) ** 2).mean(0)
    assert half["param_mse"] == pytest.approx(float(by_hand.mean()), rel=1e-6)
    assert list(half["param_mse_per_param"]) == list(c.names)
    assert list(half["param_mse_per_param"].values()) == pytest.approx(by_hand.tolist(), rel=1e-6)
    assert half["spectral_convergence"] > 0.3 and half["multiscale_spectral_distance"] > 0.3
    assert half["sc_stft"]["n_fft"] == 1024
    # out-of-range predictions are clipped to what a synth accepts
    wild = evaluate(lambda x: np.full((len(x), 16), 7.0, np.float32), c, audio, params)
    assert wild["param_mse"] == pytest.approx(float(((params.double() - 1.0) ** 2).mean()), rel=1e-6)
    with pytest.raises(ValueError, match="expected"):
        evaluate(lambda x: np.zeros((len(x), 3)), c, audio, params)


def test_eval_cli_checkpoint_and_onnx_write_reports(c, cache, tmp_path, tiny_onnx):
    cfg = resolve_config("ast-tiny")
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the same weights as the tiny_onnx fixture
        model = build_model(cfg, c)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", model=model, model_config=cfg, contract=c, step=0)
    common = ["--split", "test", "--size", str(SIZE), "--cache-dir", str(cache), "--examples", "3"]
    assert cli.main(["eval", "--checkpoint", str(ckpt), "--out", str(tmp_path / "pt"), "--device", "cpu", *common]) == 0
    assert cli.main(["eval", "--model", str(tiny_onnx), "--out", str(tmp_path / "onnx"), *common]) == 0

    results = {}
    for name in ("pt", "onnx"):
        out = tmp_path / name
        r = results[name] = json.loads((out / "eval.json").read_text())
        assert r["count"] == SIZE and r["split"] == "test" and r["contract_hash"] == c.hash
        assert np.isfinite(r["param_mse"]) and 0 < r["param_mse"] < 1
        assert r["spectral_convergence"] > 0 and len(r["param_mse_per_param"]) == 16
        assert len(r["plotted_examples"]) == 3
        md = (out / "eval.md").read_text()
        assert "| parameter MSE |" in md and "| filter1_cutoff |" in md and "n_fft 1024" in md
        png = (out / "eval.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        import matplotlib.image

        img = matplotlib.image.imread(out / "eval.png")
        assert img.shape[0] > 300 and img.shape[1] > 500 and img[..., :3].std() > 0.05  # a real picture

    # torch and ONNX Runtime run the same weights: the same scores
    assert results["onnx"]["param_mse"] == pytest.approx(results["pt"]["param_mse"], abs=1e-5)
    # and the CLI's numbers are evaluate()'s
    audio, params = cached_split(c, "test", SIZE, cache_dir=cache)
    with torch.no_grad():
        direct = evaluate(lambda x: model.eval()(torch.from_numpy(x)), c, audio, params)
    assert direct["param_mse"] == pytest.approx(results["pt"]["param_mse"], rel=1e-6)
    assert direct["spectral_convergence"] == pytest.approx(results["pt"]["spectral_convergence"], rel=1e-5)


def test_eval_cli_errors(c, tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    assert cli.main(["eval", "--checkpoint", str(bad), "--size", "2", "--cache-dir", str(tmp_path)]) == 2
    assert cli.main(["eval", "--model", str(tmp_path / "missing.onnx"), "--size", "2"]) == 2


def test_eval_cli_mean_baseline(c, cache, split, tmp_path):
    out = tmp_path / "mean"
    common = ["--split", "test", "--size", str(SIZE), "--cache-dir", str(cache), "--examples", "2"]
    assert cli.main(["eval", "--baseline", "mean", "--out", str(out), *common]) == 0
    r = json.loads((out / "eval.json").read_text())
    _, params = split
    # every sampling is uniform in this contract: the mean patch is 0.5 everywhere
    assert r["param_mse"] == pytest.approx(float(((np.asarray(params) - 0.5) ** 2).mean()), rel=1e-5)
    assert r["model"] == "baseline-mean" and r["spectral_convergence"] > 0
    assert cli.main(["eval", "--baseline", "mean", *common]) == 2  # no file to write beside: --out needed


def test_a_performance_model_is_refused_with_where_to_evaluate_it(tmp_path, capsys):
    """eval reads one-shots: a performance model (0.4 s window) given as --checkpoint or --model is one
    line naming what to use instead, exit 2."""
    from synthmatch.bridge.live.config import DEFAULT_PERF_MODEL, resolve_path

    c = contract_mod.default()
    cfg = resolve_config({"base": "ast-tiny-perf", "depth": 1, "dim": 32, "heads": 2, "head_hidden": 32})
    ckpt = save_checkpoint(tmp_path / "perf.pt", model=build_model(cfg, c), model_config=cfg, contract=c, step=0)
    args = ["--split", "test", "--size", "2", "--cache-dir", str(tmp_path / "cache")]
    assert cli.main(["eval", "--checkpoint", str(ckpt), "--device", "cpu", *args]) == 2
    assert "scripts/eval_perf.py" in capsys.readouterr().err
    assert cli.main(["eval", "--model", str(resolve_path(DEFAULT_PERF_MODEL)), *args]) == 2
    err = capsys.readouterr().err
    assert "a performance model" in err and "scripts/eval_perf.py" in err and "Traceback" not in err
