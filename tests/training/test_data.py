"""training.data.onthefly and presets-fitted sampling: example i is f(seed, i) whatever the batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.contract import CONFIG_DIR, ContractError
from synthmatch.training.data.onthefly import OnTheFly, cached_split, split_cache_path
from synthmatch.training.synths.sampling import fit_presets, read_presets_csv, sample_params

PRESETS = CONFIG_DIR / "presets_example.csv"


@pytest.fixture(scope="module")
def c():
    return contract_mod.default()


def _stream(ds: OnTheFly, n_batches: int, loader=None):
    it = iter(loader if loader is not None else ds)
    batches = [next(it) for _ in range(n_batches)]
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def test_example_is_identical_for_batch_sizes_1_7_64(c):
    a64, p64 = _stream(OnTheFly(c, seed=3, batch_size=64), 1)
    by7 = OnTheFly(c, seed=3, batch_size=7)
    a7 = torch.cat([by7.batch(s)[0] for s in (0, 4, 8)])  # examples 0..6, 28..34, 56..62
    rows7 = [*range(0, 7), *range(28, 35), *range(56, 63)]
    picks = [0, 9, 31, 63]
    a1 = torch.cat([OnTheFly(c, seed=3, batch_size=1).batch(i)[0] for i in picks])
    assert a64.shape == (64, c.audio.num_samples) and p64.shape == (64, 16)
    assert a64.dtype == torch.float32 and p64.dtype == torch.float32
    assert torch.equal(a7, a64[rows7])  # bit-identical, not just close
    assert torch.equal(a1, a64[picks])
    assert a64.abs().amax(1).min() > 0  # real sounds, not silence
    assert not torch.equal(a64[0], a64[1])


def test_global_index_formula_ranks_and_resume(c):
    B, W = 4, 3
    # rank r, batch b holds global indices (start_step + b) * B * W + r * B + j
    for rank in range(W):
        ds = OnTheFly(c, seed=5, batch_size=B, rank=rank, world_size=W, start_step=2)
        first = 2 * B * W + rank * B
        assert ds.first_index(2) == first
        assert np.array_equal(ds.renderer.params(first, first + B), sample_params(c, 5, range(first, first + B)))
    _, p, notes = next(iter(OnTheFly(c, seed=5, batch_size=B, rank=1, world_size=W, start_step=2)))
    assert torch.equal(notes, torch.full((B,), 60.0))  # the contract's note unless given a range
    assert torch.equal(p, torch.from_numpy(sample_params(c, 5, range(28, 32))))
    # ranks together cover one single-rank stream with batch B * W
    whole_a, whole_p = OnTheFly(c, seed=5, batch_size=B * W).batch(1)
    parts = [OnTheFly(c, seed=5, batch_size=B, rank=r, world_size=W).batch(1) for r in range(W)]
    assert torch.equal(torch.cat([a for a, _ in parts]), whole_a)
    assert torch.equal(torch.cat([p for _, p in parts]), whole_p)


def test_worker_processes_give_the_same_stream(c):
    direct_a, direct_p = _stream(OnTheFly(c, seed=11, batch_size=5, start_step=1), 4)
    ds = OnTheFly(c, seed=11, batch_size=5, start_step=1)
    loader = ds.loader(num_workers=2)
    assert isinstance(loader, torch.utils.data.DataLoader)
    a, p = _stream(ds, 4, loader)
    del loader
    assert torch.equal(p, direct_p) and torch.equal(a, direct_a)


def test_bad_arguments(c):
    with pytest.raises(ValueError, match="rank"):
        OnTheFly(c, 0, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        OnTheFly(c, 0, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_render_matches_cpu(c):
    ga, gp = OnTheFly(c, seed=2, batch_size=16, device="cuda").batch(0)
    ca, cp = OnTheFly(c, seed=2, batch_size=16).batch(0)
    assert ga.device.type == "cuda"
    assert torch.equal(gp.cpu(), cp)
    assert torch.allclose(ga.cpu(), ca, atol=2e-3)


def test_cached_split_renders_once_and_survives_corruption(c, tmp_path):
    a, p = cached_split(c, "val", 10, cache_dir=tmp_path)
    path = split_cache_path(c, "val", 10, cache_dir=tmp_path)
    assert path.exists() and a.shape == (10, c.audio.num_samples) and p.shape == (10, 16)
    # same as the training stream with the split's seed, and distinct from the test split
    sa, sp = OnTheFly(c, seed=1_000_003, batch_size=10).batch(0)
    assert torch.equal(a, sa) and torch.equal(p, sp)
    t_a, t_p = cached_split(c, "test", 10, cache_dir=tmp_path)
    assert not torch.equal(t_p, p)
    # second call reads the file (modification time unchanged)
    mtime = path.stat().st_mtime_ns
    a2, p2 = cached_split(c, "val", 10, cache_dir=tmp_path)
    assert torch.equal(a2, a) and torch.equal(p2, p) and path.stat().st_mtime_ns == mtime
    # a truncated file is named in a warning and rendered again
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.warns(UserWarning, match=path.name):
        a3, p3 = cached_split(c, "val", 10, cache_dir=tmp_path)
    assert torch.equal(a3, a) and torch.equal(p3, p)
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="split"):
        cached_split(c, "train", 10, cache_dir=tmp_path)


def test_presets_fitted_sampling_follows_the_csv(c):
    x = read_presets_csv(c, PRESETS)
    assert x.shape[1] == 16 and 15 <= len(x) <= 40
    beta = fit_presets(c, PRESETS, "beta")
    s = sample_params(c, 0, range(4000), presets=beta)
    assert np.abs(s.mean(0) - x.mean(0)).max() < 0.02
    assert np.abs(s.std(0) - x.std(0)).max() < 0.02
    assert np.abs(s.mean(0) - 0.5).max() > 0.2  # really not the contract's uniform sampling
    # still f(seed, i): any subset of indices gives the same rows
    assert np.array_equal(sample_params(c, 0, [17, 3999], presets=beta), s[[17, 3999]])
    # kde keeps several modes: pitches land near the presets' octaves, not in between
    kde = fit_presets(c, PRESETS, "kde")
    s = sample_params(c, 1, range(4000), presets=kde)
    pitch = s[:, c.names.index("osc1_pitch")]
    near = np.min(np.abs(pitch[:, None] - np.unique(x[:, 0])[None]), axis=1)
    assert np.mean(near < 0.1) > 0.9
    assert kde.fingerprint != beta.fingerprint
    # the contract's sampling is unchanged without presets
    u = sample_params(c, 0, range(4000))
    assert np.abs(u.mean(0) - 0.5).max() < 0.03


def test_presets_csv_errors_name_the_file_and_column(c, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("osc1_pitch,wobble\n0.5,0.1\n")
    with pytest.raises(ContractError, match=r"bad\.csv.*wobble.*lacks"):
        read_presets_csv(c, bad)
    rows = PRESETS.read_text().splitlines()
    header = next(r for r in rows if not r.startswith("#"))
    bad.write_text(header + "\n" + "x," + ",".join(["0.5"] * 15) + ",1.5\n")
    with pytest.raises(ContractError, match=r"line 2, reverb_mix = '1.5'"):
        read_presets_csv(c, bad)
