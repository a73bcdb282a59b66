"""`synthmatch train`: train a sound-matching model on synth patches rendered on the fly or read from shards.

    synthmatch train --config configs/train/ast-tiny.toml --out runs/ast-tiny [--resume] [--device auto]
    torchrun --nproc_per_node 4 -m bridge.cli train --config ... --out ...     (DDP, same command)

Data: on the fly (training.data.OnTheFly), or `data = "DIR"`: a dataset from `synthmatch dataset render`,
read epoch after epoch in a fresh permutation per epoch (a pure function of train_seed and the epoch).
Validation: the reference synth's val split (val_seed), except for a dataset rendered by a plugin,
which validates on its own last val_size examples and never trains on them (training.shards.holdout).
The data's synth identity goes into every checkpoint; --resume on another synth's data is refused.
The model's front-end views of a shard dataset are computed once and cached beside it
(training.featcache), so a CPU step costs only the network.

Loss: the model head's (training.heads): MSE between predicted and true normalised parameters, or
pitch as classes for head "pitch-cls". Adam (lr 5e-5 in the paper), linear warm-up,
then constant (paper) or cosine decay; gradient clipping; bf16/fp16 autocast. `batch_size` is the global
batch: under DDP each of W ranks renders and trains on its own batch_size / W slice of every step
(training.data.OnTheFly), so a run's data and result do not depend on W (up to float rounding).

Outputs in OUT: last.pt (every ckpt_every steps and at the end), best.pt (lowest validation loss),
config.resolved.json, metrics.jsonl (one JSON object per line: "train" and "val" records), loss.png.
Checkpoints are atomic and hold model, optimizer, scheduler and RNG states, so `--resume` after a crash
or kill -9 continues exactly: the same data indices (via start_step) and the same weights as a run that
was never interrupted.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core import tomlfile
from synthmatch.bridge.core.contract import Contract
from synthmatch.bridge.core.errors import UsageError
from synthmatch.training.checkpoint import (
    check_contract,
    checkpoint_synth,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from synthmatch.training.models import ModelConfig, build_model, count_params, resolve_config
from synthmatch.training.sampling import check_notes
from synthmatch.training.synths import check_identity

AMP = ("none", "bf16", "fp16")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine")
# keys that may change between a run and its --resume without changing the result
RESUMABLE_CHANGES = {"steps", "val_every", "ckpt_every", "log_every", "workers", "plot", "cache_dir"}


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
    val_seed: int = 1_000_003  # validation example i = f(val_seed, i) (training.data's val split seed)
    val_size: int = 512
    val_batch_size: int = 64
    workers: int = 0  # CPU render processes (0: render in the training process, on its device)
    data: str = ""  # a sharded dataset directory (synthmatch dataset render) instead of on-the-fly data
    data_size: int = 0  # > 0: read only the dataset's first data_size examples
    presets: str = ""  # CSV of preset patches to fit the sampling to ("" = the contract's distributions)
    presets_fit: str = "beta"  # "beta" | "kde" (training.sampling.fit_presets)
    cache_dir: str = "data/cache"  # cached validation audio
    contract: str = ""  # contract TOML ("" = configs/contract.toml)
    plot: bool = True  # write OUT/loss.png at each validation
    init_from: str = ""  # start from these weights: a checkpoint, or the .pt an export writes beside its .onnx

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
        """Typed construction from a TOML table; unknown keys and wrong types raise UsageError."""
        types = {f.name: str(f.type) for f in fields(cls)}
        unknown = sorted(set(d) - set(types))
        if unknown:
            raise UsageError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(types)}")
        for k, v in d.items():
            want = {
                "int": (int,),
                "float": (int, float),
                "str": (str,),
                "bool": (bool,),
                "str | dict": (str, dict),
                "list": (list,),
            }[types[k]]
            if not isinstance(v, want) or (isinstance(v, bool) and bool not in want):
                raise UsageError(f"{where}: {k} = {v!r} must be of type {types[k]}")
        kw: dict[str, Any] = {k: float(v) if types[k] == "float" else v for k, v in d.items()}
        cfg = cls(**kw)
        cfg.validate(where)
        return cfg

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        data = tomlfile.read(path, UsageError, "no such config file (see configs/train/)")
        return cls.from_dict(data, str(path))


# ------------------------------------------------------------------------------------------------
# Distributed setup


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


def _setup(device_arg: str) -> tuple[Dist, torch.device]:
    """Read torchrun's environment, pick the device, start the process group (gloo / NCCL)."""
    env = Dist(
        int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    )
    if device_arg == "auto":
        device_arg = "cuda" if torch.cuda.is_available() else "cpu"
    if device_arg == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is visible to torch; use --device cpu")
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    elif device_arg == "cpu":
        device = torch.device("cpu")
    else:
        raise UsageError(f"--device {device_arg!r}: use cpu, cuda or auto")
    if env.world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return env, device


# ------------------------------------------------------------------------------------------------
# Pieces of the loop


def lr_factor(cfg: TrainConfig) -> Callable[[int], float]:
    """Multiplier of cfg.lr for the update after `s` completed steps."""

    def f(s: int) -> float:
        if s < cfg.warmup_steps:
            return (s + 1) / cfg.warmup_steps
        if cfg.schedule == "cosine":
            span = max(1, cfg.steps - cfg.warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (s - cfg.warmup_steps) / span)))
        return 1.0

    return f


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


class TrainStep(nn.Module):
    """(views, target, notes) -> the head's loss: what DDP wraps, so gradients sync through one forward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, views: tuple[torch.Tensor, ...], target: torch.Tensor, note: torch.Tensor) -> torch.Tensor:
        return self.model.loss(views, target, note)


def _shard_batches(
    cfg: TrainConfig, model: nn.Module, contract: Contract, per_rank: int, env: Dist, start_step: int, progress: bool
):
    """Batches of cached front-end views from the dataset at cfg.data (computed once, on rank 0), and
    the dataset's held-out validation examples (x, params) for a plugin's dataset (training.shards.holdout;
    None: validate on the reference synth's val split)."""
    from synthmatch.training.featcache import ViewCache
    from synthmatch.training.shards import ShardDataset, ShardError, holdout

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


def _note_range(cfg: TrainConfig, contract: Contract) -> tuple[int, int]:
    """The notes training (and validation) plays: a dataset's own range, else cfg.notes."""
    if not cfg.data:
        return check_notes(cfg.notes)
    from synthmatch.training.shards import ShardError, read_manifest

    try:
        return read_manifest(Path(cfg.data))[0].notes
    except ShardError as e:
        raise UsageError(f"data = {cfg.data!r}: {e}") from None


def _data_synth(cfg: TrainConfig) -> str:
    """Identity of the synth the training data comes from (training.synths): a dataset's, or "reference"."""
    from synthmatch.training.shards import ShardError
    from synthmatch.training.synths import dataset_identity

    try:
        return dataset_identity(cfg.data)
    except ShardError as e:
        raise UsageError(f"data = {cfg.data!r}: {e}") from None


def _presets(cfg: TrainConfig, contract: Contract):
    if not cfg.presets:
        return None
    from synthmatch.training.sampling import fit_presets

    return fit_presets(contract, cfg.presets, cfg.presets_fit)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    audio: torch.Tensor,
    params: torch.Tensor,
    notes: torch.Tensor,
    cfg: TrainConfig,
    env: Dist,
    device: torch.device,
) -> tuple[float, list[float]]:
    """Mean squared error over the whole set (each rank takes rows rank::world), and per parameter."""
    was_training = model.training
    model.eval()
    rows = torch.arange(env.rank, len(audio), env.world)
    sse = torch.zeros(params.shape[1], dtype=torch.float64, device=device)
    for chunk in rows.split(cfg.val_batch_size):
        x, y = audio[chunk].to(device, non_blocking=True), params[chunk].to(device, non_blocking=True)
        n = notes[chunk].to(device)
        with _autocast(cfg, device):
            pred = model(x, n) if x.dim() == 2 else model.predict_views((x,), n)  # audio, or a "logmel" dataset's mel
        sse += ((pred.float() - y) ** 2).sum(0).double()
    if env.world > 1:
        dist.all_reduce(sse)
    model.train(was_training)
    per_param = (sse / len(audio)).tolist()
    return float(np.mean(per_param)), per_param


def _autocast(cfg: TrainConfig, device: torch.device):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def plot_metrics(metrics_path: Path, png: Path) -> None:
    """Training and validation loss against step, log scale; written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    recs = [r for r in map(_record, metrics_path.read_text().splitlines()) if r is not None]
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for kind, key, label in (("train", "loss", "train MSE"), ("val", "val_loss", "validation MSE")):
        pts = [(r["step"], r[key]) for r in recs if r.get("type") == kind]
        if pts:
            ax.plot(*zip(*pts), marker="o" if kind == "val" else None, ms=3, label=label)
    ax.set(xlabel="step", ylabel="MSE (normalised parameters)", yscale="log", title=png.parent.name)
    ax.grid(True, alpha=0.3)
    ax.legend()
    tmp = png.with_suffix(".tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, png)


def _record(line: str) -> dict | None:
    """One metrics.jsonl record, or None for a blank or half-written (killed mid-write) line."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None
    return rec if isinstance(rec, dict) else None


def _check_resume(stored: dict | None, cfg: TrainConfig, path: Path) -> None:
    if stored is None:
        return
    now = asdict(cfg)
    changed = sorted(k for k in set(now) | set(stored) if k not in RESUMABLE_CHANGES and now.get(k) != stored.get(k))
    if cfg.schedule == "cosine" and now["steps"] != stored.get("steps"):
        changed.append("steps (the cosine schedule depends on it)")
    if changed:
        details = "; ".join(f"{k}: {stored.get(k)!r} -> {now.get(k)!r}" for k in changed if k in now)
        raise UsageError(
            f"{path}: --resume with a config that changes {', '.join(changed)} ({details}); "
            "restore those values, or start a new run in another --out"
        )


# ------------------------------------------------------------------------------------------------
# The loop


def _init_weights(model: nn.Module, model_cfg: ModelConfig, path: Path, contract: Contract) -> None:
    """Load a checkpoint's or an export's weights into a fresh model of the same configuration."""
    try:
        init = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"init_from = {str(path)!r}: no such file") from None
    except Exception as e:
        raise UsageError(f"init_from = {str(path)!r}: not a readable weights file ({type(e).__name__})") from None
    if not isinstance(init, dict) or "model_state" not in init or "model_config" not in init:
        raise UsageError(
            f"init_from = {str(path)!r}: no model weights in it; pass a checkpoint (.pt from "
            f"synthmatch train) or the .pt written beside an exported .onnx"
        )
    check_contract(init, contract, path)
    theirs, ours = dict(init["model_config"]), model_cfg.to_dict()
    widening = not theirs.get("note_input", False) and ours["note_input"]  # a C4 model, told the note from now
    if {**theirs, "note_input": ours["note_input"]} != ours or (
        theirs.get("note_input", False) != ours["note_input"] and not widening
    ):
        raise UsageError(
            f"init_from = {str(path)!r}: its model config differs from this run's model; "
            f"set model to the same preset or table (or that table with note_input = true)"
        )
    missing, unexpected = model.load_state_dict(init["model_state"], strict=not widening)
    if unexpected or any(not k.startswith("note_embed.") for k in missing):
        raise UsageError(
            f"init_from = {str(path)!r}: its weights do not fit this model "
            f"({(unexpected or missing)[0]}); set model to the same preset or table"
        )


def run(
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    device: str = "auto",
    on_step: Callable[[int], None] | None = None,
    progress: bool = True,
) -> dict:
    """Train; returns {"step", "best_val", "last_val", "out"}. on_step(step) runs after every step
    (after that step's validation and checkpoint), on every rank."""
    cfg.validate()
    env, dev = _setup(device)
    out = Path(out)
    try:
        result = _run(cfg, out, env, dev, resume, on_step, progress)
        env.barrier()  # no rank tears the group down while another is still writing or reducing
        return result
    finally:
        if env.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _run(
    cfg: TrainConfig,
    out: Path,
    env: Dist,
    dev: torch.device,
    resume: bool,
    on_step: Callable[[int], None] | None,
    progress: bool,
) -> dict:
    from synthmatch.training import data

    if cfg.batch_size % env.world:
        raise UsageError(f"batch_size {cfg.batch_size} is not divisible by the {env.world} processes")
    if cfg.amp == "fp16" and dev.type != "cuda":
        raise UsageError("amp = 'fp16' needs CUDA; use amp = 'bf16' or 'none' on the CPU")
    contract = contract_mod.load(cfg.contract or None)
    model_cfg: ModelConfig = resolve_config(cfg.model)
    last, best = out / "last.pt", out / "best.pt"
    metrics_path = out / "metrics.jsonl"
    if last.exists() and not resume:
        raise UsageError(f"{out} already holds a run ({last}); pass --resume to continue it or choose another --out")
    if resume and not last.exists():
        raise UsageError(f"--resume: {last} does not exist; start without --resume")

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    model = build_model(model_cfg, contract).to(dev)
    step_module: nn.Module = TrainStep(model)
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg))
    scaler = torch.amp.GradScaler(dev.type, enabled=cfg.amp == "fp16")
    start_step, best_val, last_val = 0, math.inf, math.nan
    if cfg.init_from and not resume:
        _init_weights(model, model_cfg, Path(cfg.init_from), contract)
    if resume:
        ckpt = load_checkpoint(last)  # on the CPU; load_state_dict copies to the model's device
        check_contract(ckpt, contract, last)
        check_identity(
            checkpoint_synth(ckpt),
            _data_synth(cfg),
            str(last),
            "resume on data of the synth it was trained on, or start a new run in another --out",
        )
        _check_resume(ckpt.get("train_config"), cfg, last)
        model.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if "scaler" in ckpt["extra"]:
            scaler.load_state_dict(ckpt["extra"]["scaler"])
        set_rng_state(ckpt["rng"])
        start_step = ckpt["step"]
        best_val = ckpt["metrics"].get("best_val", math.inf)
        last_val = ckpt["metrics"].get("last_val", math.nan)
    resolved = asdict(cfg)
    if env.main:
        out.mkdir(parents=True, exist_ok=True)
        info = {
            "train": resolved,
            "model_config": model_cfg.to_dict(),
            "params": count_params(model),
            "contract": str(contract.source),
            "contract_hash": contract.hash,
            "world_size": env.world,
            "device": str(dev),
        }
        (out / "config.resolved.json").write_text(json.dumps(info, indent=2) + "\n")
        if resume and metrics_path.exists():  # drop what the killed run wrote after its checkpoint
            keep = [
                r
                for r in map(_record, metrics_path.read_text().splitlines())
                if r is not None and r.get("step", math.inf) <= start_step
            ]
            metrics_path.write_text("".join(json.dumps(r) + "\n" for r in keep))
        elif not resume:  # a run killed before its first checkpoint may have left records
            metrics_path.unlink(missing_ok=True)
        for tmp in out.glob(".*.pt.*.tmp"):  # a save cut short by a kill (the target is intact)
            tmp.unlink(missing_ok=True)
    if env.world > 1:
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[dev.index] if dev.type == "cuda" else None
        )

    # data: training stream (or fixed set) and the cached validation split
    presets = _presets(cfg, contract)
    notes = _note_range(cfg, contract)
    per_rank = cfg.batch_size // env.world
    held = None  # a plugin dataset's own validation examples
    if cfg.data:
        batches, held = _shard_batches(cfg, model, contract, per_rank, env, start_step, progress)
    elif cfg.train_size:
        renderer = data.Renderer(contract, cfg.train_seed, "cpu", presets, notes)
        fa, fp = renderer.render(0, cfg.train_size)
        batches = iter(FixedSet(fa, fp, renderer.notes(0, cfg.train_size), per_rank, env.rank, env.world, start_step))
    else:
        render_dev = dev if cfg.workers == 0 else torch.device("cpu")
        stream = data.OnTheFly(
            contract, cfg.train_seed, per_rank, env.rank, env.world, start_step, render_dev, presets, notes
        )
        batches = iter(stream.loader(cfg.workers, pin_memory=dev.type == "cuda"))
    if held is not None:
        val_audio, val_params, val_notes = held
    else:
        split = (contract, "val", cfg.val_size, cfg.val_seed, cfg.cache_dir, presets)
        if env.main:  # render (or read) the cache once, then the other ranks read it
            val_audio, val_params = data.cached_split(*split, progress=progress, notes=notes)
        env.barrier()
        if not env.main:
            val_audio, val_params = data.cached_split(*split, notes=notes)
        val_notes = data.split_notes(contract, "val", cfg.val_size, cfg.val_seed, notes)

    def log(rec: dict) -> None:
        if env.main:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def validate(step: int) -> None:
        nonlocal best_val, last_val
        last_val, per_param = evaluate(model, val_audio, val_params, val_notes, cfg, env, dev)
        log(
            {
                "type": "val",
                "step": step,
                "val_loss": last_val,
                "time": time.time(),
                "val_mse": dict(zip(contract.names, per_param)),
            }
        )
        if last_val < best_val:
            best_val = last_val
            if env.main:
                checkpoint(best, step)
        if env.main and cfg.plot:
            plot_metrics(metrics_path, out / "loss.png")

    def checkpoint(path: Path, step: int) -> None:
        save_checkpoint(
            path,
            model=model,
            model_config=model_cfg,
            contract=contract,
            step=step,
            optimizer=optimizer,
            scheduler=scheduler,
            train_config=resolved,
            metrics={"best_val": best_val, "last_val": last_val},
            synth=_data_synth(cfg),
            extra={"scaler": scaler.state_dict()} if scaler.is_enabled() else {},
        )

    if start_step == 0:
        validate(0)  # the untrained model's loss: where the curve starts
    pbar = None
    if progress and env.main:
        from tqdm import tqdm  # type: ignore[import-untyped]

        pbar = tqdm(total=cfg.steps, initial=start_step, unit="step", dynamic_ncols=True)
    model.train()
    loss_sum = torch.zeros((), device=dev)
    # Data time: wall time waiting for a batch; when the GPU renders (asynchronously), its GPU time
    # between CUDA events instead, read only at log time so the loop never waits for the GPU.
    gpu_render = dev.type == "cuda" and cfg.workers == 0 and not cfg.train_size and not cfg.data
    render_events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
    t_window, data_s, n_window = time.perf_counter(), 0.0, 0
    for step in range(start_step, cfg.steps):
        t0 = time.perf_counter()
        if gpu_render:
            render_events.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)))
            render_events[-1][0].record()
        x, target, note = next(batches)  # audio (B, T) or cached views (tuple of (B, h, w)); (B, 16); (B,)
        if isinstance(x, torch.Tensor):
            x = x.to(dev, non_blocking=True)
            with torch.no_grad():
                x = model.frontend(x)
        else:
            x = tuple(v.to(dev, non_blocking=True) for v in x)
        target, note = target.to(dev, non_blocking=True), note.to(dev, non_blocking=True)
        if gpu_render:
            render_events[-1][1].record()
        else:
            data_s += time.perf_counter() - t0
        with _autocast(cfg, dev):
            loss = step_module(x, target, note)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        loss_sum += loss.detach()
        n_window += 1
        done = step + 1

        if cfg.log_every and (done % cfg.log_every == 0 or done == cfg.steps):
            if render_events:
                render_events[-1][1].synchronize()
                data_s = sum(a.elapsed_time(b) for a, b in render_events) / 1000
                render_events.clear()
            elapsed = time.perf_counter() - t_window
            rec = {
                "type": "train",
                "step": done,
                "loss": float(loss_sum) / n_window,
                "lr": scheduler.get_last_lr()[0],
                "samples_per_s": n_window * cfg.batch_size / elapsed,
                "data_share": data_s / elapsed,
                "time": time.time(),
            }
            log(rec)
            if pbar is not None:
                pbar.set_postfix(
                    loss=f"{rec['loss']:.4f}",
                    val=f"{last_val:.4f}",
                    sps=f"{rec['samples_per_s']:.0f}",
                    data=f"{rec['data_share']:.0%}",
                )
            loss_sum.zero_()
            t_window, data_s, n_window = time.perf_counter(), 0.0, 0
        if (cfg.val_every and done % cfg.val_every == 0) or done == cfg.steps:
            validate(done)
        if env.main and ((cfg.ckpt_every and done % cfg.ckpt_every == 0) or done == cfg.steps):
            checkpoint(last, done)
        if pbar is not None:
            pbar.update(1)
        if on_step is not None:
            on_step(done)
    if pbar is not None:
        pbar.close()
    return {"step": cfg.steps, "best_val": best_val, "last_val": last_val, "out": str(out)}


def main(args) -> int:
    cfg = TrainConfig.load(args.config)
    result = run(cfg, args.out, resume=args.resume, device=args.device)
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(result))
    return 0
