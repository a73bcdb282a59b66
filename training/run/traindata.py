"""What a training run reads, from its TrainConfig: this rank's training batches and the validation set.

Training batches are (x, params (B, 16), notes (B,)): x is audio (B, T) rendered on the fly
(training.data.onthefly.OnTheFly) or taken from the fixed set of train_size examples (FixedSet), or a shard
dataset's cached front-end views (training.data.featcache). Each rank takes its B = batch_size / W slice of
every global batch, from the step a run starts or resumes at, so the data does not depend on W.
Validation: the reference synth's val split (cached), or a plugin dataset's own held-out examples.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from synthmatch.bridge.core.contract import Contract
from synthmatch.bridge.core.errors import UsageError
from synthmatch.training.run.config import Dist, TrainConfig
from synthmatch.training.run.loop import ValSet
from synthmatch.training.synths.sampling import check_notes


class FixedSet:
    """Batches from the fixed set of examples 0..N-1, cycled with the global-index rule of OnTheFly."""

    def __init__(
        self,
        audio: torch.Tensor,
        params: torch.Tensor,
        notes: torch.Tensor,
        batch_size: int,
        rank: int,
        world: int,
        start_step: int,
    ):
        self.audio, self.params, self.notes = audio, params, notes
        self.b, self.rank, self.world = batch_size, rank, world
        self.step = start_step

    def __iter__(self):
        while True:
            i0 = self.step * self.b * self.world + self.rank * self.b
            idx = torch.arange(i0, i0 + self.b) % len(self.audio)
            self.step += 1
            yield self.audio[idx], self.params[idx], self.notes[idx]


def shard_batches(
    cfg: TrainConfig, model: nn.Module, contract: Contract, per_rank: int, env: Dist, start_step: int, progress: bool
):
    """Batches of cached front-end views from the dataset at cfg.data (computed once, on rank 0), and
    the dataset's held-out validation examples (x, params) for a plugin's dataset (training.data.shards.holdout;
    None: validate on the reference synth's val split)."""
    from synthmatch.training.data.featcache import ViewCache
    from synthmatch.training.data.shards import ShardDataset, ShardError, holdout

    try:
        ds = ShardDataset(cfg.data, contract)
        split = holdout(ds, cfg.val_size, cfg.data_size)
        count = split[0] if split else cfg.data_size
        if env.main:
            ViewCache(ds, model.frontend, progress, count)
        env.barrier()
        cache = ViewCache(ds, model.frontend, progress=False, count=count)
    except ShardError as e:
        raise UsageError(f"data = {cfg.data!r}: {e}") from None
    held = (*ds.batch(split[1]), ds.notes(split[1])) if split else None  # audio (N, T) or log-mel, params, notes
    return cache.batches(per_rank, env.rank, env.world, start_step, shuffle_seed=cfg.train_seed), held


def note_range(cfg: TrainConfig, contract: Contract) -> tuple[int, int]:
    """The notes training (and validation) plays: a dataset's own range, else cfg.notes."""
    if not cfg.data:
        return check_notes(cfg.notes)
    from synthmatch.training.data.shards import ShardError, read_manifest

    try:
        return read_manifest(Path(cfg.data))[0].notes
    except ShardError as e:
        raise UsageError(f"data = {cfg.data!r}: {e}") from None


def data_synth(cfg: TrainConfig) -> str:
    """Identity of the synth the training data comes from (training.synths): a dataset's, or "reference"."""
    from synthmatch.training.data.shards import ShardError, dataset_identity

    try:
        return dataset_identity(cfg.data)
    except ShardError as e:
        raise UsageError(f"data = {cfg.data!r}: {e}") from None


def preset_sampling(cfg: TrainConfig, contract: Contract):
    if not cfg.presets:
        return None
    from synthmatch.training.synths.sampling import fit_presets

    return fit_presets(contract, cfg.presets, cfg.presets_fit)


def run_data(
    cfg: TrainConfig,
    model: nn.Module,
    contract: Contract,
    env: Dist,
    dev: torch.device,
    start_step: int,
    progress: bool,
) -> tuple[Iterator, ValSet]:
    """This rank's training batches from start_step on (a dataset's cached views, the fixed set of
    train_size examples, or rendered on the fly), and the validation set."""
    from synthmatch.training.data import onthefly

    presets = preset_sampling(cfg, contract)
    notes = note_range(cfg, contract)
    per_rank = cfg.batch_size // env.world
    held = None  # a plugin dataset's own validation examples
    window_n = getattr(model, "num_samples", contract.audio.num_samples)
    if window_n < contract.audio.num_samples:  # a performance model: windows of held notes
        return held_data(cfg, contract, window_n, per_rank, env, dev, start_step, presets, notes)
    if cfg.data:
        batches, held = shard_batches(cfg, model, contract, per_rank, env, start_step, progress)
    elif cfg.train_size:
        renderer = onthefly.Renderer(contract, cfg.train_seed, "cpu", presets, notes)
        fa, fp = renderer.render(0, cfg.train_size)
        batches = iter(FixedSet(fa, fp, renderer.notes(0, cfg.train_size), per_rank, env.rank, env.world, start_step))
    else:
        render_dev = dev if cfg.workers == 0 else torch.device("cpu")
        stream = onthefly.OnTheFly(
            contract, cfg.train_seed, per_rank, env.rank, env.world, start_step, render_dev, presets, notes
        )
        batches = iter(stream.loader(cfg.workers, pin_memory=dev.type == "cuda"))
    if held is not None:
        return batches, ValSet(*held)
    split = (contract, "val", cfg.val_size, cfg.val_seed, cfg.cache_dir, presets)
    if env.main:  # render (or read) the cache once, then the other ranks read it
        val_audio, val_params = onthefly.cached_split(*split, progress=progress, notes=notes)
    env.barrier()
    if not env.main:
        val_audio, val_params = onthefly.cached_split(*split, notes=notes)
    val_notes = onthefly.split_notes(contract, "val", cfg.val_size, cfg.val_seed, notes)
    return batches, ValSet(val_audio, val_params, val_notes)


def held_data(
    cfg: TrainConfig,
    contract: Contract,
    window_n: int,
    per_rank: int,
    env: Dist,
    dev: torch.device,
    start_step: int,
    presets,
    notes: tuple[int, int],
) -> tuple[Iterator, ValSet]:
    """A performance model's data (training.data.held): windows of window_n samples cut from held notes,
    rendered on the fly, and a validation set of such windows (val_seed; rendered in memory, ~30 s)."""
    from synthmatch.training.data.held import HeldStream, held_split

    if cfg.data or cfg.train_size:
        raise UsageError("a model with window_s renders its own held windows; remove data and train_size")
    render_dev = dev if cfg.workers == 0 else torch.device("cpu")
    try:
        val = ValSet(*held_split(contract, cfg.val_seed, cfg.val_size, window_n, presets, notes))
    except ValueError as e:
        raise UsageError(f"model: {e}") from None
    stream = HeldStream(
        contract,
        cfg.train_seed,
        per_rank,
        window_n,
        rank=env.rank,
        world_size=env.world,
        start_step=start_step,
        device=render_dev,
        presets=presets,
        notes=notes,
    )
    batches = iter(stream.loader(cfg.workers, pin_memory=dev.type == "cuda"))
    return batches, val
