"""training.data.shards and training.data.shardrender: the dataset format, parallel resumable rendering, byte-identical
resume, refusing bad datasets."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from synthmatch.bridge import cli
from synthmatch.bridge.core import contract as contract_mod
from synthmatch.training.data.onthefly import OnTheFly
from synthmatch.training.data.shardrender import render_dataset
from synthmatch.training.data.shards import MANIFEST, ShardDataset, ShardError
from synthmatch.training.model.frontend import LogMel

ROOT = Path(__file__).resolve().parents[2]
COUNT, SHARD = 24, 3  # 8 shards


@pytest.fixture(scope="module")
def c():
    return contract_mod.default()


@pytest.fixture(scope="module")
def reference(c, tmp_path_factory):
    """An uninterrupted render with two workers."""
    out = tmp_path_factory.mktemp("ref")
    summary = render_dataset(c, out, COUNT, seed=4, workers=2, shard_size=SHARD, progress=False)
    assert summary["shards"] == 8 and summary["rendered_shards"] == 8
    return out


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.glob("shard-*"))}


def test_shards_hold_the_on_the_fly_examples(c, reference):
    ds = ShardDataset(reference, c, verify=True)
    assert len(ds) == COUNT and ds.store == "logmel"
    x, p = ds.batch([23, 0, 5, 4])
    audio, params = OnTheFly(c, seed=4, batch_size=COUNT).batch(0)
    assert torch.equal(p, params[[23, 0, 5, 4]])
    assert x.shape == (4, c.frontend.n_mels, c.num_frames) and x.dtype == torch.float32
    assert (x - LogMel(c)(audio[[23, 0, 5, 4]])).abs().max() < 1e-3  # float16 storage
    x1, p1 = ds[5]
    assert torch.equal(x1, x[2]) and torch.equal(p1, p[2])
    with pytest.raises(IndexError):
        ds.batch([COUNT])
    # epoch-wise reading: the rank split covers the single-rank stream; a shuffled epoch is a permutation
    it = ds.batches(10, start_step=2)
    assert torch.equal(next(it)[1], ds.batch([(20 + j) % COUNT for j in range(10)])[1])
    ranks = [next(ds.batches(5, rank=r, world_size=2, start_step=2))[1] for r in range(2)]
    assert torch.equal(torch.cat(ranks), next(ds.batches(10, start_step=2))[1])
    rows = ds.order(0, 2 * COUNT, shuffle_seed=1)
    assert sorted(rows[:COUNT]) == list(range(COUNT)) and sorted(rows[COUNT:]) == list(range(COUNT))
    assert list(rows[:COUNT]) != list(range(COUNT)) and list(rows[:COUNT]) != list(rows[COUNT:])


def test_audio_store_is_int16_of_the_synth_output(c, tmp_path):
    render_dataset(c, tmp_path, 6, seed=4, workers=1, shard_size=4, store="audio", progress=False)
    ds = ShardDataset(tmp_path, c)
    assert ds.store == "audio" and np.load(tmp_path / "shard-00000.x.npy", mmap_mode="r").dtype == np.int16
    x, p = ds.batch(range(6))
    audio, params = OnTheFly(c, seed=4, batch_size=6).batch(0)
    assert torch.equal(p, params) and (x - audio).abs().max() <= 0.5 / 32767 + 1e-7


def test_killed_render_resumes_to_identical_bytes(c, reference, tmp_path):
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "synthmatch.bridge.cli",
        "dataset",
        "render",
        "--count",
        str(COUNT),
        "--out",
        str(out),
        "--workers",
        "1",
        "--seed",
        "4",
        "--shard-size",
        str(SHARD),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest, done = out / MANIFEST, 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done = len(json.loads(manifest.read_text())["shards"])
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                done = 0
            if done >= 2:
                break
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its render worker, mid-way
        proc.wait()
    assert 2 <= done < COUNT // SHARD, "the render should have been killed part-way"
    # what a kill can leave behind: a half-written temporary file, and a damaged finished shard
    (out / "shard-00007.x.npy.tmp-12345").write_bytes(b"\x93NUMPY half")
    first = out / "shard-00000.x.npy"
    first.write_bytes(first.read_bytes()[:-100])
    with pytest.raises(ShardError, match="unfinished|truncated"):
        ShardDataset(out, c)

    summary = render_dataset(c, out, COUNT, seed=4, workers=2, shard_size=SHARD, progress=False)
    assert summary["rendered_shards"] < COUNT // SHARD  # finished shards were kept
    assert _files(out) == _files(reference)
    assert not list(out.glob("*.tmp-*"))
    ref_shards = json.loads((reference / MANIFEST).read_text())["shards"]
    assert json.loads(manifest.read_text())["shards"] == ref_shards
    # a finished dataset reruns as a no-op
    assert render_dataset(c, out, COUNT, seed=4, workers=2, shard_size=SHARD, progress=False)["rendered_shards"] == 0


def _children(pid: int) -> list[int]:
    """Live processes whose parent is pid (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_render_workers_end_with_a_killed_render(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "synthmatch.bridge.cli",
        "dataset",
        "render",
        "--count",
        "4096",
        "--out",
        str(tmp_path / "d"),
        "--workers",
        "2",
        "--shard-size",
        "64",
        "--store",
        "audio",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list((tmp_path / "d").glob("shard-*.npy")):
            time.sleep(0.05)
        workers = [w for w in _children(proc.pid) if "spawn_main" in Path(f"/proc/{w}/cmdline").read_text()]
        assert workers, "the render's worker processes"
    finally:
        proc.kill()  # the parent alone: SIGKILL runs no clean-up of its own
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.05)
    alive = [
        w
        for w in workers
        if Path(f"/proc/{w}/stat").exists() and Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    ]
    assert not alive, f"workers {alive} outlived the render"


def test_truncated_shard_is_detected(c, reference, tmp_path):
    for p in reference.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    victim = tmp_path / "shard-00003.x.npy"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(
        ShardError, match=r"shard-00003\.x\.npy: \d+ bytes, the manifest says \d+: the shard is truncated"
    ):
        ShardDataset(tmp_path, c)
    assert cli.main(["dataset", "verify", str(tmp_path)]) == 2
    # same size, flipped bytes: only the checksum sees it
    victim.write_bytes((reference / victim.name).read_bytes()[:-8] + b"\0" * 8)
    ShardDataset(tmp_path, c)  # sizes agree
    with pytest.raises(ShardError, match="sha256"):
        ShardDataset(tmp_path, c, verify=True)
    assert cli.main(["dataset", "verify", str(reference)]) == 0


def test_contract_hash_mismatch_and_other_settings_are_refused(c, reference, tmp_path):
    other = dataclasses.replace(c, audio=dataclasses.replace(c.audio, note=c.audio.note + 1))
    assert other.hash != c.hash
    with pytest.raises(ShardError, match=f"made for contract hash {c.hash}.*has hash {other.hash}"):
        ShardDataset(reference, other)
    with pytest.raises(ShardError, match="another dataset.*seed: 4 there, 5 asked"):
        render_dataset(c, reference, COUNT, seed=5, workers=1, shard_size=SHARD, progress=False)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ShardError, match="not empty"):
        render_dataset(c, tmp_path, 4, progress=False)
    with pytest.raises(ShardError, match="no manifest"):
        ShardDataset(tmp_path, c)
