"""A training run's configuration (TrainConfig: the TOML of `synthmatch train`, typed and validated) and
its place among the processes of a DDP run (Dist). Read by the trainer (training.run.train) and by what a
run reads (training.run.traindata)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch.distributed as dist

from synthmatch.bridge.core import tomlfile
from synthmatch.bridge.core.errors import UsageError
from synthmatch.bridge.core.loader import load_dataclass
from synthmatch.training.model.models import resolve_config
from synthmatch.training.synths.sampling import check_notes

AMP = ("none", "bf16", "fp16")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    model: str | dict = "ast-tiny"  # a MODEL_CONFIGS name, or a table {base = "ast-tiny", depth = 2, ...}
    batch_size: int = 32  # global batch (all ranks together)
    steps: int = 100_000  # optimizer steps
    lr: float = 5e-5  # peak learning rate (paper: Adam, 5e-5)
    optimizer: str = "adam"  # "adam" | "adamw"
    weight_decay: float = 0.0
    warmup_steps: int = 1000  # linear warm-up from lr / warmup_steps
    schedule: str = "constant"  # after warm-up: "constant" (paper) | "cosine" (to 0 at `steps`)
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    amp: str = "none"  # "none" | "bf16" | "fp16" (fp16 on CUDA only)
    val_every: int = 1000  # steps between validations (0 = only at the end)
    ckpt_every: int = 1000  # steps between last.pt saves
    log_every: int = 50  # steps between "train" records in metrics.jsonl
    seed: int = 0  # model init and dropout
    # data
    train_seed: int = 0  # training example i = f(train_seed, i)
    notes: list = field(default_factory=lambda: [60, 60])  # [lo, hi] MIDI notes played (on-the-fly and val data;
    #                                                      a dataset's own range when `data` is set)
    train_size: int = 0  # > 0: train on the fixed set of examples 0..train_size-1, repeated (overfit checks)
    val_seed: int = 1_000_003  # validation example i = f(val_seed, i) (training.data.onthefly's val split seed)
    val_size: int = 512
    val_batch_size: int = 64
    workers: int = 0  # CPU render processes (0: render in the training process, on its device)
    data: str = ""  # a sharded dataset directory (synthmatch dataset render) instead of on-the-fly data
    data_size: int = 0  # > 0: read only the dataset's first data_size examples
    presets: str = ""  # CSV of preset patches to fit the sampling to ("" = the contract's distributions)
    presets_fit: str = "beta"  # "beta" | "kde" (training.synths.sampling.fit_presets)
    cache_dir: str = "data/cache"  # cached validation audio
    contract: str = ""  # contract TOML ("" = configs/contract.toml)
    plot: bool = True  # write OUT/loss.png at each validation
    init_from: str = ""  # start from these weights: a checkpoint, or the .pt an export writes beside its .onnx
    # take from init_from every tensor whose name and shape fit this model, the rest fresh (a model of
    # another window or patch size starting from the default's encoder and head); listed at the start
    init_partial: bool = False

    def validate(self, where: str = "config") -> None:
        def need(cond: bool, key: str, what: str) -> None:
            if not cond:
                raise UsageError(f"{where}: {key} = {getattr(self, key)!r}: {what}")

        for key in ("batch_size", "steps", "val_size", "val_batch_size"):
            need(getattr(self, key) >= 1, key, "must be >= 1")
        for key in ("warmup_steps", "val_every", "ckpt_every", "log_every", "train_size", "workers", "data_size"):
            need(getattr(self, key) >= 0, key, "must be >= 0")
        need(self.lr > 0, "lr", "must be > 0")
        need(self.weight_decay >= 0 and self.grad_clip >= 0, "grad_clip", "grad_clip, weight_decay must be >= 0")
        need(self.amp in AMP, "amp", f"use one of {', '.join(AMP)}")
        need(self.optimizer in OPTIMIZERS, "optimizer", f"use one of {', '.join(OPTIMIZERS)}")
        need(self.schedule in SCHEDULES, "schedule", f"use one of {', '.join(SCHEDULES)}")
        need(self.presets_fit in ("beta", "kde"), "presets_fit", "use beta or kde")
        try:
            check_notes(self.notes, f"{where}: notes")
        except ValueError as e:
            raise UsageError(str(e)) from None
        try:
            resolve_config(self.model)
        except (ValueError, TypeError) as e:
            raise UsageError(f"{where}: model: {e}") from None

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> TrainConfig:
        """Typed construction from a TOML table (bridge.core.loader: unknown keys, wrong types and non-finite
        numbers raise UsageError naming the key; ints become floats where a float is expected), then validate."""
        cfg = load_dataclass(cls, d, error=UsageError, source=where)
        cfg.validate(where)
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        data = tomlfile.read(path, UsageError, "no such config file (see configs/train/)")
        return cls.from_dict(data, str(path))


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()
