"""The parts of a training run, each usable and testable alone; training.run.train puts them together.

    trainer = TrainStep(model, lr=5e-5, amp="bf16", grad_clip=1.0)      # optimizer, schedule, loss scaler
    views, target, note = batch_views(next(batches), model, device)    # a batch on the device, as views
    loss = trainer(views, target, note)                                 # one optimizer update
    metrics = validate(model, ValSet(audio, params, notes), contract.names, batch_size=64)
    Checkpoints(trainer, ...).save(path, state); state = restore_run(load_checkpoint(path), trainer)

TrainStep is also what scripts/bench_train.py times, so the bench measures the trainer's own step.
RunState is all a run changes besides the weights and TrainStep's states: the steps done and the
validation losses. MetricsLog is OUT/metrics.jsonl; StepWindow turns the steps since the last "train"
record into that record (mean loss, samples/s, the share of time spent waiting for data).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from synthmatch.bridge.core.atomic import FULL, disk_full, write_atomic, write_text
from synthmatch.bridge.core.contract import Contract
from synthmatch.training.model.checkpoint import save_checkpoint, set_rng_state
from synthmatch.training.model.models import ModelConfig

ViewBatch = tuple[torch.Tensor, ...]  # the model's front-end views of a batch: (B, h, w) each (mel [, constant-Q])


def autocast(amp: str, device: torch.device):
    """The autocast context of a TrainConfig.amp value ("none", "bf16", "fp16") on device."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def batch_views(
    batch: tuple[torch.Tensor | ViewBatch, torch.Tensor, torch.Tensor], model: nn.Module, device: torch.device
) -> tuple[ViewBatch, torch.Tensor, torch.Tensor]:
    """A training batch on device: (audio (B, T) or a shard dataset's cached views, params (B, 16), notes (B,))
    -> (views, params, notes). Audio goes through model.frontend under no_grad: the front-end is not trained."""
    x, target, note = batch
    if isinstance(x, torch.Tensor):
        x = x.to(device, non_blocking=True)
        with torch.no_grad():
            views = model.frontend(x)
    else:
        views = tuple(v.to(device, non_blocking=True) for v in x)
    return views, target.to(device, non_blocking=True), note.to(device, non_blocking=True)


# ------------------------------------------------------------------------------------------------
# The step


class HeadLoss(nn.Module):
    """(views, target, notes) -> the head's loss: what DDP wraps, so gradients sync through one forward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, views: ViewBatch, target: torch.Tensor, note: torch.Tensor) -> torch.Tensor:
        return self.model.loss(views, target, note)


class TrainStep:
    """One optimizer update on a batch of views: forward under autocast (the head's loss in fp32),
    backward (fp16: through the loss scaler), clipping to a global gradient norm (grad_clip; 0 = off),
    the optimizer's update, then the LR schedule's.

    It owns the optimizer (Adam or AdamW at lr x lr_at(steps done)), the schedule and the fp16 loss
    scaler: with the weights, the states a checkpoint keeps (Checkpoints, restore_run)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        lr_at: Callable[[int], float] | None = None,
        amp: str = "none",
        grad_clip: float = 0.0,
    ):
        self.model, self.amp, self.grad_clip = model, amp, grad_clip
        self.device = next(model.parameters()).device
        self.loss_module: nn.Module = HeadLoss(model)  # DistributedDataParallel(HeadLoss) after distribute()
        opt_cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(model.parameters(), lr=lr, weight_decay=weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_at or (lambda s: 1.0))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")

    def distribute(self) -> None:
        """Sync gradients across the process group (DDP); call once the weights are loaded: DDP copies
        rank 0's to the other ranks as it starts."""
        dev = self.device
        self.loss_module = nn.parallel.DistributedDataParallel(
            self.loss_module, device_ids=[dev.index] if dev.type == "cuda" else None
        )

    @property
    def lr(self) -> float:
        """The learning rate of the next update."""
        return self.scheduler.get_last_lr()[0]

    def __call__(self, views: ViewBatch, target: torch.Tensor, note: torch.Tensor) -> torch.Tensor:
        """Update on views (B, h, w) each, target (B, 16) normalised, note (B,) MIDI; the batch's loss
        before the update (0-d, detached, on the device: reading it would wait for the GPU)."""
        with autocast(self.amp, self.device):
            loss = self.loss_module(views, target, note)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.detach()


# ------------------------------------------------------------------------------------------------
# Validation


class ValSet(NamedTuple):
    audio: torch.Tensor  # (N, T) audio, or (N, n_mels, frames) log-mel of a "logmel" shard dataset
    params: torch.Tensor  # (N, 16) normalised, contract order
    notes: torch.Tensor  # (N,) MIDI notes played


@torch.no_grad()
def validate(
    model: nn.Module,
    val: ValSet,
    names: Sequence[str],
    *,
    batch_size: int,
    amp: str = "none",
    rank: int = 0,
    world: int = 1,
) -> dict:
    """{"val_loss": mean squared error of the predicted normalised parameters over all of val (over the
    parameters the model carries: a performance model's),
    "val_mse": {name: that error per parameter}}. Under DDP each rank takes rows rank::world and the
    sums are all-reduced, so every rank returns the whole set's metrics. Leaves model in its mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = torch.arange(rank, len(val.audio), world)
    sse = torch.zeros(val.params.shape[1], dtype=torch.float64, device=device)  # (16,) summed squared errors
    for chunk in rows.split(batch_size):
        x, y = val.audio[chunk].to(device, non_blocking=True), val.params[chunk].to(device, non_blocking=True)
        n = val.notes[chunk].to(device)
        with autocast(amp, device):
            pred = model(x, n) if x.dim() == 2 else model.predict_views((x,), n)  # audio, or a "logmel" dataset's mel
        sse += ((pred.float() - y) ** 2).sum(0).double()
    if world > 1:
        dist.all_reduce(sse)
    model.train(was_training)
    per_param = (sse / len(val.audio)).tolist()
    mask = getattr(getattr(model, "head_out", None), "mask", None)  # the parameters the model answers for
    carried = [e for e, m in zip(per_param, mask.tolist() if mask is not None else [1] * len(per_param)) if m]
    return {"val_loss": float(np.mean(carried)), "val_mse": dict(zip(names, per_param))}


# ------------------------------------------------------------------------------------------------
# Run state and checkpoints


@dataclass
class RunState:
    """What a run has done besides the weights and TrainStep's states; restored by --resume."""

    step: int = 0  # optimizer steps done
    best_val: float = math.inf  # the lowest validation loss so far: best.pt's
    last_val: float = math.nan  # the latest validation loss

    def observe(self, val_loss: float) -> bool:
        """Take a validation loss at self.step; True when it is the lowest so far (best.pt is due)."""
        self.last_val = val_loss
        if val_loss < self.best_val:
            self.best_val = val_loss
            return True
        return False


@dataclass
class Checkpoints:
    """Saves a run's state: weights, TrainStep's optimizer, schedule and (fp16) scaler, RunState, and the RNG
    states (training.model.checkpoint), with what identifies the run. restore_run reads it back."""

    trainer: TrainStep
    model_config: ModelConfig
    contract: Contract
    train_config: dict  # the resolved TrainConfig (asdict): --resume refuses changes that alter the result
    synth: str  # the training data's synth identity (training.synths): --resume refuses another synth's data

    def save(self, path: Path, state: RunState) -> Path:
        t = self.trainer
        return save_checkpoint(
            path,
            model=t.model,
            model_config=self.model_config,
            contract=self.contract,
            step=state.step,
            optimizer=t.optimizer,
            scheduler=t.scheduler,
            train_config=self.train_config,
            metrics={"best_val": state.best_val, "last_val": state.last_val},
            synth=self.synth,
            extra={"scaler": t.scaler.state_dict()} if t.scaler.is_enabled() else {},
        )


def restore_run(ckpt: dict, trainer: TrainStep) -> RunState:
    """Load a checkpoint (load_checkpoint's dict, CPU tensors) into trainer's model and states, restore the
    RNGs, and return its RunState: the next step is then the one an uninterrupted run would take."""
    trainer.model.load_state_dict(ckpt["model_state"])  # copies to the model's device
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    trainer.scheduler.load_state_dict(ckpt["scheduler"])
    if "scaler" in ckpt["extra"]:
        trainer.scaler.load_state_dict(ckpt["extra"]["scaler"])
    set_rng_state(ckpt["rng"])
    return RunState(ckpt["step"], ckpt["metrics"].get("best_val", math.inf), ckpt["metrics"].get("last_val", math.nan))


# ------------------------------------------------------------------------------------------------
# metrics.jsonl


class MetricsLog:
    """OUT/metrics.jsonl: one JSON object per line, "train" and "val" records; `write`: this process writes
    (rank 0), elsewhere every method does nothing, so the loop calls them on every rank."""

    def __init__(self, path: Path, write: bool = True):
        self.path, self.write = Path(path), write

    def append(self, rec: dict) -> None:
        if self.write:
            try:
                with open(self.path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            except OSError as e:
                if e.errno in FULL:
                    raise disk_full(self.path, len(json.dumps(rec)) + 1) from None
                raise

    def records(self) -> list[dict]:
        return [r for r in map(_record, self.path.read_text().splitlines()) if r is not None]

    def keep_until(self, step: int) -> None:
        """--resume from a checkpoint at `step`: drop what the killed run wrote after it (and a half-written
        last line)."""
        if self.write and self.path.exists():
            keep = [r for r in self.records() if r.get("step", math.inf) <= step]
            write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))

    def clear(self) -> None:
        """A new run: a run killed before its first checkpoint may have left records."""
        if self.write:
            self.path.unlink(missing_ok=True)

    def plot(self, png: Path) -> None:
        if self.write:
            plot_metrics(self.path, png)


def _record(line: str) -> dict | None:
    """One metrics.jsonl record, or None for a blank or half-written (killed mid-write) line."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None
    return rec if isinstance(rec, dict) else None


def plot_metrics(metrics_path: Path, png: Path) -> None:
    """Training and validation loss against step, log scale; written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    recs = MetricsLog(metrics_path).records()
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
    write_atomic(png, lambda f: fig.savefig(f, format="png"))


class StepWindow:
    """The steps since the last "train" record: their summed loss, wall time, and time waiting for data.

    Data time is the wall time from `data_begin` to `data_end` (next batch, its front-end, the copy to the
    device); when the GPU renders (asynchronously: gpu_events), its GPU time between CUDA events
    instead, read only in `record` so the loop never waits for the GPU."""

    def __init__(self, device: torch.device, gpu_events: bool = False):
        self.gpu_events = gpu_events
        self.loss_sum = torch.zeros((), device=device)  # on the device: adding to it does not sync
        self.events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.restart()

    def restart(self) -> None:
        self.loss_sum.zero_()
        self.t_start, self.data_s, self.steps = time.perf_counter(), 0.0, 0

    def data_begin(self) -> None:
        self.t_data = time.perf_counter()
        if self.gpu_events:
            self.events.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)))
            self.events[-1][0].record()

    def data_end(self) -> None:
        if self.gpu_events:
            self.events[-1][1].record()
        else:
            self.data_s += time.perf_counter() - self.t_data

    def add(self, loss: torch.Tensor) -> None:
        self.loss_sum += loss
        self.steps += 1

    def record(self, step: int, lr: float, batch_size: int) -> dict:
        """The "train" record at `step` (steps done): mean loss, lr, samples/s of the global batch, data
        share of the wall time. Call restart() after it."""
        if self.events:
            self.events[-1][1].synchronize()
            self.data_s = sum(a.elapsed_time(b) for a, b in self.events) / 1000  # ms -> s
            self.events.clear()
        elapsed = time.perf_counter() - self.t_start
        return {
            "type": "train",
            "step": step,
            "loss": float(self.loss_sum) / self.steps,
            "lr": lr,
            "samples_per_s": self.steps * batch_size / elapsed,
            "data_share": self.data_s / elapsed,
            "time": time.time(),
        }
