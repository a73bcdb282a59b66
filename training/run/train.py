"""`synthmatch train`: train a sound-matching model on synth patches rendered on the fly or read from shards.

    synthmatch train --config configs/train/ast-tiny.toml --out runs/ast-tiny [--resume] [--device auto]
    torchrun --nproc_per_node 4 -m bridge.cli train --config ... --out ...     (DDP, same command)

Data: on the fly (training.data.onthefly.OnTheFly), or `data = "DIR"`: a dataset from `synthmatch dataset render`,
read epoch after epoch in a fresh permutation per epoch (a pure function of train_seed and the epoch).
Validation: the reference synth's val split (val_seed), except for a dataset rendered by a plugin,
which validates on its own last val_size examples and never trains on them (training.data.shards.holdout).
The data's synth identity goes into every checkpoint; --resume on another synth's data is refused.
The model's front-end views of a shard dataset are computed once and cached beside it
(training.data.featcache), so a CPU step costs only the network.

Loss: the model head's (training.model.heads): MSE between predicted and true normalised parameters, or
pitch as classes for head "pitch-cls". Adam (lr 5e-5 in the paper), linear warm-up,
then constant (paper) or cosine decay; gradient clipping; bf16/fp16 autocast. `batch_size` is the global
batch: under DDP each of W ranks renders and trains on its own batch_size / W slice of every step
(training.data.onthefly.OnTheFly), so a run's data and result do not depend on W (up to float rounding).

Outputs in OUT: last.pt (every ckpt_every steps and at the end), best.pt (lowest validation loss),
config.resolved.json, metrics.jsonl (one JSON object per line: "train" and "val" records), loss.png.
Checkpoints are atomic and hold model, optimizer, scheduler and RNG states, so `--resume` after a crash
or kill -9 continues exactly: the same data indices (via start_step) and the same weights as a run that
was never interrupted.

Here: the config, the process group, and the run put together (_start_run, then the loop in _run). The
loop's parts, each usable alone, are in training.run.loop (TrainStep, validate, RunState, Checkpoints,
MetricsLog, StepWindow); what the run reads, from its config, in training.run.traindata.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.atomic import write_text
from synthmatch.bridge.core.contract import Contract
from synthmatch.bridge.core.errors import UsageError
from synthmatch.training.model.checkpoint import check_contract, checkpoint_synth, load_checkpoint
from synthmatch.training.model.models import ModelConfig, build_model, count_params, resolve_config
from synthmatch.training.run.config import Dist, TrainConfig
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
from synthmatch.training.run.traindata import data_synth, run_data
from synthmatch.training.synths import check_identity

# keys that may change between a run and its --resume without changing the result
RESUMABLE_CHANGES = {"steps", "val_every", "ckpt_every", "log_every", "workers", "plot", "cache_dir"}


# ------------------------------------------------------------------------------------------------
# Distributed setup


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


def _check_resume(stored: dict | None, cfg: TrainConfig, path: Path) -> None:
    if stored is None:
        return
    now = asdict(cfg)
    stored = {**asdict(TrainConfig()), **stored}  # a run saved before a key existed had its default
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


def _init_partial(model: nn.Module, state: dict, path: Path) -> None:
    """Load the tensors of `state` whose name and shape fit `model`; say which of the model's are fresh."""
    ours = model.state_dict()
    fits = {k: v for k, v in state.items() if k in ours and ours[k].shape == v.shape}
    if not fits:
        raise UsageError(f"init_from = {str(path)!r}: none of its weights fit this model; drop init_partial")
    model.load_state_dict(fits, strict=False)
    fresh = sorted(k for k in ours if k not in fits)
    print(f"init_from {path}: {len(fits)} tensors taken, {len(fresh)} fresh ({', '.join(fresh)})", file=sys.stderr)


def _init_weights(
    model: nn.Module, model_cfg: ModelConfig, path: Path, contract: Contract, partial: bool = False
) -> None:
    """Load a checkpoint's or an export's weights into a fresh model of the same configuration (partial:
    of any configuration, the tensors that fit)."""
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
    if partial:
        _init_partial(model, init["model_state"], path)
        return
    # a file saved before a key existed holds its default (window_s, carries: the full model's)
    theirs, ours = {**ModelConfig().to_dict(), **dict(init["model_config"])}, model_cfg.to_dict()
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


@dataclass
class _RunParts:
    """A started run's fixed parts; RunState holds what changes as it trains."""

    cfg: TrainConfig
    env: Dist
    out: Path
    model: nn.Module
    trainer: TrainStep
    batches: Iterator  # this rank's training batches, from the run's next step on
    val: ValSet
    log: MetricsLog
    ckpts: Checkpoints


def _run(
    cfg: TrainConfig,
    out: Path,
    env: Dist,
    dev: torch.device,
    resume: bool,
    on_step: Callable[[int], None] | None,
    progress: bool,
) -> dict:
    parts, state = _start_run(cfg, out, env, dev, resume, progress)
    if state.step == 0:
        _validate(parts, state)  # the untrained model's loss: where the curve starts
    pbar = None
    if progress and env.main:
        from tqdm import tqdm  # type: ignore[import-untyped]

        pbar = tqdm(total=cfg.steps, initial=state.step, unit="step", dynamic_ncols=True)
    parts.model.train()
    # batches rendered on the GPU arrive asynchronously: their data time is GPU time (CUDA events)
    gpu_render = dev.type == "cuda" and cfg.workers == 0 and not cfg.train_size and not cfg.data
    window = StepWindow(dev, gpu_events=gpu_render)
    for done in range(state.step + 1, cfg.steps + 1):  # done: steps done once this one is
        window.data_begin()
        views, target, note = batch_views(next(parts.batches), parts.model, dev)  # (B, h, w) each; (B, 16); (B,)
        window.data_end()
        window.add(parts.trainer(views, target, note))
        state.step = done

        if cfg.log_every and (done % cfg.log_every == 0 or done == cfg.steps):
            rec = window.record(done, parts.trainer.lr, cfg.batch_size)
            parts.log.append(rec)
            if pbar is not None:
                pbar.set_postfix(
                    loss=f"{rec['loss']:.4f}",
                    val=f"{state.last_val:.4f}",
                    sps=f"{rec['samples_per_s']:.0f}",
                    data=f"{rec['data_share']:.0%}",
                )
            window.restart()
        if (cfg.val_every and done % cfg.val_every == 0) or done == cfg.steps:
            _validate(parts, state)
        if env.main and ((cfg.ckpt_every and done % cfg.ckpt_every == 0) or done == cfg.steps):
            parts.ckpts.save(out / "last.pt", state)
        if pbar is not None:
            pbar.update(1)
        if on_step is not None:
            on_step(done)
    if pbar is not None:
        pbar.close()
    return {"step": cfg.steps, "best_val": state.best_val, "last_val": state.last_val, "out": str(out)}


def _start_run(
    cfg: TrainConfig, out: Path, env: Dist, dev: torch.device, resume: bool, progress: bool
) -> tuple[_RunParts, RunState]:
    """Check the run can start (or resume), build the model and its TrainStep from cfg.seed, load
    init_from's weights or last.pt (--resume), prepare OUT (rank 0), then the data from the run's next step."""
    if cfg.batch_size % env.world:
        raise UsageError(f"batch_size {cfg.batch_size} is not divisible by the {env.world} processes")
    if cfg.amp == "fp16" and dev.type != "cuda":
        raise UsageError("amp = 'fp16' needs CUDA; use amp = 'bf16' or 'none' on the CPU")
    contract = contract_mod.load(cfg.contract or None)
    model_cfg: ModelConfig = resolve_config(cfg.model)
    last = out / "last.pt"
    if last.exists() and not resume:
        raise UsageError(f"{out} already holds a run ({last}); pass --resume to continue it or choose another --out")
    if resume and not last.exists():
        raise UsageError(f"--resume: {last} does not exist; start without --resume")

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    try:
        model = build_model(model_cfg, contract).to(dev)
    except ValueError as e:  # what only the contract can tell (a window longer than its own)
        raise UsageError(f"{cfg.contract or 'configs/contract.toml'}: model: {e}") from None
    trainer = TrainStep(
        model,
        lr=cfg.lr,
        optimizer=cfg.optimizer,
        weight_decay=cfg.weight_decay,
        lr_at=lr_factor(cfg),
        amp=cfg.amp,
        grad_clip=cfg.grad_clip,
    )
    state = RunState()
    if cfg.init_from and not resume:
        _init_weights(model, model_cfg, Path(cfg.init_from), contract, cfg.init_partial)
    if resume:
        state = _resume(last, cfg, contract, trainer)
    log = MetricsLog(out / "metrics.jsonl", write=env.main)
    if env.main:
        info = {
            "train": asdict(cfg),
            "model_config": model_cfg.to_dict(),
            "params": count_params(model),
            "contract": str(contract.source),
            "contract_hash": contract.hash,
            "world_size": env.world,
            "device": str(dev),
        }
        _prepare_out(out, info, log, resume, state.step)
    if env.world > 1:
        trainer.distribute()
    batches, val = run_data(cfg, model, contract, env, dev, state.step, progress)
    ckpts = Checkpoints(trainer, model_cfg, contract, asdict(cfg), data_synth(cfg))
    return _RunParts(cfg, env, out, model, trainer, batches, val, log, ckpts), state


def _resume(last: Path, cfg: TrainConfig, contract: Contract, trainer: TrainStep) -> RunState:
    """--resume: check that last.pt continues this run (same contract, data synth, result-changing config),
    then load it into trainer (weights, optimizer, schedule, scaler) and the RNGs."""
    ckpt = load_checkpoint(last)  # on the CPU; load_state_dict copies to the model's device
    check_contract(ckpt, contract, last)
    check_identity(
        checkpoint_synth(ckpt),
        data_synth(cfg),
        str(last),
        "resume on data of the synth it was trained on, or start a new run in another --out",
    )
    _check_resume(ckpt.get("train_config"), cfg, last)
    return restore_run(ckpt, trainer)


def _prepare_out(out: Path, info: dict, log: MetricsLog, resume: bool, step: int) -> None:
    """Rank 0, before the first step: config.resolved.json (info), metrics.jsonl as of `step`, no stale tmp files."""
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.resolved.json", json.dumps(info, indent=2) + "\n")
    if resume:
        log.keep_until(step)
    else:
        log.clear()
    for tmp in out.glob(".*.pt.*.tmp"):  # a save cut short by a kill (the target is intact)
        tmp.unlink(missing_ok=True)


def _validate(parts: _RunParts, state: RunState) -> None:
    """Validation at state.step: a "val" record, best.pt when the loss is the lowest so far, loss.png."""
    cfg, env = parts.cfg, parts.env
    metrics = validate(
        parts.model,
        parts.val,
        parts.ckpts.contract.names,
        batch_size=cfg.val_batch_size,
        amp=cfg.amp,
        rank=env.rank,
        world=env.world,
    )
    parts.log.append(
        {
            "type": "val",
            "step": state.step,
            "val_loss": metrics["val_loss"],
            "time": time.time(),
            "val_mse": metrics["val_mse"],
        }
    )
    if state.observe(metrics["val_loss"]) and env.main:
        parts.ckpts.save(parts.out / "best.pt", state)
    if cfg.plot:
        parts.log.plot(parts.out / "loss.png")


def main(args) -> int:
    from synthmatch.bridge.core.outpaths import writable_dir

    cfg = TrainConfig.load(args.config)
    writable_dir(args.out, "--out")  # an existing file, a read-only place: one line before any work
    result = run(cfg, args.out, resume=args.resume, device=args.device)
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(result))
    return 0
