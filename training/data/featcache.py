"""A model's front-end views of a sharded dataset, computed once and read for many epochs.

Training on the CPU spends most of a step in the front-end (two DFT-as-conv views per example), which
does not learn, so `synthmatch train --data DIR` computes every example's views once per front-end and
keeps them beside the dataset, float16, one file per shard and view:

    DIR/views-mel-<key>/shard-00000.npy     (n, n_mels, frames) log-mel
    DIR/views-cqt-<key>/shard-00000.npy     (n, n_bins, cqt_frames) constant-Q (front-end "mel+cqt")

<key> is a hash of the view's settings (the contract's [frontend], or the model's cqt spec) and of the
dataset's manifest, so another front-end or another dataset never reads these files, and models that
share a view (every model has the mel view) share its cache. Each shard's
files are written under temporary names and renamed when whole: a killed computation resumes where it
stopped and never reads a half-written file. float16 keeps normalised views (about -1 .. 1.5) to ~1e-3.

A "logmel" dataset (`dataset render --store logmel`) already holds the mel view: a "mel" model reads it
directly, with no cache.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from synthmatch.bridge.core.atomic import write_atomic
from synthmatch.training.data.shards import MANIFEST, ShardDataset, ShardError

CHUNK = 64  # examples per front-end call (bounds memory: ~25 MB of audio)


def view_dirs(views: torch.nn.Module, ds: ShardDataset) -> list[Path]:
    """One cache directory per view: its name and a hash of its settings and the dataset's manifest."""
    manifest = hashlib.sha256((ds.root / MANIFEST).read_bytes()).hexdigest()
    out = []
    for name, settings in views.settings:
        blob = json.dumps({"view": name, "settings": settings, "manifest": manifest}, sort_keys=True)
        out.append(ds.root / f"views-{name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}")
    return out


class ViewCache:
    """Views of every example of an "audio" (or "logmel") ShardDataset, memory-mapped.

    batch(indices) -> (tuple of views (N, h, w) float32 tensors, params (N, 16) float32).
    count > 0 uses only examples 0..count-1 (and computes only the shards that hold them)."""

    def __init__(self, ds: ShardDataset, views: torch.nn.Module, progress: bool = True, count: int = 0):
        self.ds = ds
        self.count = min(count, len(ds)) if count > 0 else len(ds)
        self.n_views = len(views.shapes)
        if ds.store == "logmel":
            if self.n_views != 1:
                raise ShardError(
                    f"{ds.root}: a logmel dataset holds the mel view only; this model also "
                    "needs the constant-Q view: render the dataset with --store audio"
                )
            self._x = [[x] for x in ds._x]
            return
        self.dirs = view_dirs(views, ds)
        for d in self.dirs:
            d.mkdir(exist_ok=True)
        n_shards = -(-self.count // ds.plan.shard_size)
        self._x = [self._shard(k, views, progress) for k in range(n_shards)]
        if progress:
            print(file=sys.stderr)

    def _files(self, k: int) -> list[Path]:
        return [d / f"shard-{k:05d}.npy" for d in self.dirs]

    def _shard(self, k: int, views: torch.nn.Module, progress: bool) -> list[np.ndarray]:
        files = self._files(k)
        if not all(f.is_file() for f in files):
            start, stop = self.ds.plan.shard_range(k)
            out = [np.empty((stop - start, *shape), np.float16) for shape in views.shapes]
            with torch.no_grad():
                for s in range(start, stop, CHUNK):
                    audio, _ = self.ds.batch(np.arange(s, min(s + CHUNK, stop)))
                    for o, v in zip(out, views(audio)):
                        o[s - start : s - start + len(audio)] = v.numpy().astype(np.float16)
            for f, o in zip(files, out):
                write_atomic(f, lambda fh, o=o: np.save(fh, o))  # a full disk: DiskFull, one line
            if progress:
                print(
                    f"\rfront-end views: shard {k + 1}/{-(-self.count // self.ds.plan.shard_size)}",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
        return [np.load(f, mmap_mode="r") for f in files]

    def __len__(self) -> int:
        return self.count

    def batch(self, indices) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.count):
            raise IndexError(f"index out of range 0..{self.count - 1}")
        K = self.ds.plan.shard_size
        shard, row = idx // K, idx % K
        out = [np.empty((len(idx), *x.shape[1:]), np.float32) for x in self._x[0]]
        params = np.empty((len(idx), 16), np.float32)
        for k in np.unique(shard):
            sel = np.nonzero(shard == k)[0]
            order = np.argsort(row[sel])  # sorted reads from the memory map
            for o, x in zip(out, self._x[k]):
                o[sel[order]] = x[row[sel][order]]
            params[sel] = self.ds._params[k][row[sel]]
        return tuple(torch.from_numpy(o) for o in out), torch.from_numpy(params)

    def batches(
        self, batch_size: int, rank: int = 0, world_size: int = 1, start_step: int = 0, shuffle_seed: int | None = None
    ):
        """Infinite (views, params, notes) batches in ShardDataset.order's epoch-by-epoch order (a pure
        function of the step)."""
        step = start_step
        while True:
            first = step * batch_size * world_size + rank * batch_size
            rows = self.ds.order(first, first + batch_size, shuffle_seed, self.count)
            yield (*self.batch(rows), self.ds.notes(rows))
            step += 1
