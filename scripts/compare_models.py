"""Train several models on the same data budget and compare them on the same test split.

Each model starts from its configs/train/<name>.toml (learning rate, schedule, architecture) with the
budget overridden for all alike: the same steps x batch of the same on-the-fly training stream
(train_seed), the same validation split, then evaluation of best.pt on the same cached test split
with training.evaluate. Prints a paper-style table (parameter MSE, spectral convergence) beside the
numbers of Bruford et al. (DAFx 2024), and writes OUT/compare.json and OUT/compare.md.

The default budget (200 steps x 16 on ast-tiny, mlp, cnn) runs in about 10-20 minutes on two CPU
cores and only shows the ordering starting to form; the paper's numbers need GPU-scale training
(e.g. --steps 100000 --batch-size 64 --device cuda --models ast-small,mlp,cnn).

    python scripts/compare_models.py [--models ast-tiny,mlp,cnn] [--steps 200] [--batch-size 16]
                                     [--test-size 256] [--out runs/compare] [--device auto]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.contract import CONFIG_DIR
from synthmatch.training.data.onthefly import cached_split
from synthmatch.training.evaluate import PAPER, evaluate
from synthmatch.training.model.checkpoint import load_model
from synthmatch.training.run import train
from synthmatch.training.run.config import TrainConfig


def train_config(name: str, args: argparse.Namespace) -> TrainConfig:
    path = CONFIG_DIR / "train" / f"{name}.toml"
    base = TrainConfig.load(path) if path.exists() else TrainConfig(model=name)
    return dataclasses.replace(
        base,
        steps=args.steps,
        batch_size=args.batch_size,
        warmup_steps=min(base.warmup_steps, args.steps // 10),
        val_every=max(1, args.steps // 4),
        ckpt_every=args.steps,
        log_every=max(1, args.steps // 20),
        val_size=args.val_size,
        train_seed=args.train_seed,
        seed=args.seed,
        workers=args.workers,
        cache_dir=args.cache_dir,
        amp="none" if args.device == "cpu" else base.amp,
        contract=args.contract or "",
        **({"lr": args.lr} if args.lr else {}),
    )


def paper_key(name: str) -> str | None:
    kind = name.split("-")[0]
    return kind if kind in PAPER else None


def table(rows: list[dict]) -> str:
    lines = [
        "| model | params | train s | param MSE | SC mean | SC median | multi-scale | paper param MSE | paper SC |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        p = PAPER.get(paper_key(r["model"]) or "", {})
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['train_seconds']:.0f} | {r['param_mse']:.4f} | "
            f"{r['spectral_convergence']:.3f} | {r['spectral_convergence_median']:.3f} | "
            f"{r['multiscale_spectral_distance']:.3f} | {p.get('param_mse', '-')} | "
            f"{p.get('spectral_convergence', '-')} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="ast-tiny,mlp,cnn", help="comma-separated MODEL_CONFIGS names")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=None, help="override every model's learning rate")
    ap.add_argument("--val-size", type=int, default=128)
    ap.add_argument("--test-size", type=int, default=256)
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0, help="model initialisation")
    ap.add_argument("--workers", type=int, default=0, help="CPU render processes per training run")
    ap.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    ap.add_argument("--cache-dir", default="data/cache")
    ap.add_argument("--contract", default=None)
    ap.add_argument("--out", default="runs/compare")
    args = ap.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"

    c = contract_mod.load(args.contract)
    out = Path(args.out)
    test_audio, test_params = cached_split(c, "test", args.test_size, cache_dir=args.cache_dir, progress=True)
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        cfg = train_config(name, args)
        run_dir = out / name
        print(f"== {name}: {cfg.steps} steps x {cfg.batch_size}, lr {cfg.lr:g}", file=sys.stderr)
        t0 = time.perf_counter()
        train.run(cfg, run_dir, resume=(run_dir / "last.pt").exists(), device=args.device, progress=True)
        seconds = time.perf_counter() - t0
        model, ckpt = load_model(run_dir / "best.pt", c, map_location=args.device)
        model.to(args.device)

        def predict_fn(x, model=model):
            with torch.no_grad():
                return model(torch.from_numpy(x).to(args.device)).float().cpu()

        result = evaluate(predict_fn, c, test_audio, test_params)
        rows.append(
            {
                "model": name,
                "params": sum(p.numel() for p in model.parameters()),
                "train_seconds": seconds,
                "best_step": ckpt["step"],
                **result,
            }
        )
        print(table(rows[-1:]), file=sys.stderr)

    report = {
        "budget": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "examples": args.steps * args.batch_size,
            "train_seed": args.train_seed,
        },
        "test": {"size": args.test_size, "split": "test"},
        "device": args.device,
        "paper": PAPER,
        "results": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(report, indent=1) + "\n")
    md = (
        f"# Model comparison: {args.steps} steps x {args.batch_size} examples each, "
        f"test split of {args.test_size}\n\n{table(rows)}\n\nPaper columns: Bruford et al., DAFx 2024 "
        "(Massive presets, full-scale training); the rows here use this repository's reference synth and "
        "the budget above.\n"
    )
    (out / "compare.md").write_text(md)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
