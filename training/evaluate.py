"""Evaluate a model on a fixed split: predict, re-render the predictions, compare.

`evaluate(predict_fn, contract, audio, params)` is the reusable core (scripts/compare_models.py and
the model card use it): predict_fn maps (B, num_samples) float32 numpy audio to (B, 16) normalised
parameters (numpy or torch). Predictions are clipped to [0, 1] (what a synth accepts), rendered with
ReferenceSynth and scored with training.model.metrics: parameter MSE overall and per parameter, spectral
convergence, multi-scale spectral distance.

`synthmatch eval (--checkpoint PATH | --model model.onnx | --baseline mean) --split test` runs it on a
cached split and writes eval.json, eval.md and eval.png (input vs re-rendered log-mel for a few
examples). `--baseline mean` scores the mean patch, the floor any model must beat.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synthmatch.bridge.core.atomic import write_atomic, write_text
from synthmatch.bridge.core.contract import Contract
from synthmatch.bridge.core.errors import UsageError
from synthmatch.training.data.onthefly import DEFAULT_SPLIT_SIZES, RENDER_GROUP, cached_split, split_seed
from synthmatch.training.model import metrics
from synthmatch.training.synths.reference import ReferenceSynth

PAPER = {  # Bruford et al., DAFx 2024, test set of Massive patches: param MSE, spectral convergence
    "ast": {"param_mse": 0.031, "spectral_convergence": 0.616},
    "mlp": {"param_mse": 0.077, "spectral_convergence": 4.608},
    "cnn": {"param_mse": 0.094, "spectral_convergence": 5.372},
}
PredictFn = Callable[[np.ndarray], object]


@dataclass
class EvalRun:
    metrics: dict
    pred: np.ndarray  # (N, 16) clipped predictions
    rendered: torch.Tensor  # (N, T) re-rendered predictions
    sc: np.ndarray  # (N,) per-example spectral convergence
    mss: np.ndarray  # (N,) per-example multi-scale distance


def predict(predict_fn: PredictFn, audio, batch_size: int = 64, n_params: int = 16, notes=None) -> np.ndarray:
    """Run predict_fn over (N, T) audio in batches -> (N, n_params) float32 clipped to [0, 1]. With
    (N,) notes, predict_fn is called as predict_fn(audio, notes) (a model told the note)."""
    audio = audio.numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    out = []
    for s in range(0, len(audio), batch_size):
        x = np.ascontiguousarray(audio[s : s + batch_size], dtype=np.float32)
        y = predict_fn(x) if notes is None else predict_fn(x, np.asarray(notes[s : s + batch_size], np.float32))
        if isinstance(y, torch.Tensor):
            y = y.detach().float().cpu().numpy()
        out.append(np.asarray(y, dtype=np.float32))
    shapes = {y.shape for y in out}
    if any(y.ndim != 2 or y.shape[1] != n_params for y in out):
        raise ValueError(f"predict_fn returned shape(s) {sorted(shapes)}; expected (batch, {n_params})")
    pred = np.concatenate(out) if out else np.zeros((0, n_params), np.float32)
    if len(pred) != len(audio):
        raise ValueError(f"predict_fn returned {len(pred)} rows for {len(audio)} examples; expected one each")
    return np.clip(np.nan_to_num(pred, nan=0.5), 0.0, 1.0)


def rerender(contract: Contract, pred: np.ndarray, notes=None) -> torch.Tensor:
    """(N, 16) normalised [, (N,) MIDI notes played] -> (N, T) audio on the CPU, in the same render
    groups as training.data.onthefly."""
    synth = ReferenceSynth(contract, chunk=RENDER_GROUP)
    if notes is None:
        return synth.render(torch.from_numpy(pred))
    return synth.render(torch.from_numpy(pred), note=torch.as_tensor(np.asarray(notes, np.float64)))


def _spectral(target: torch.Tensor, rendered: torch.Tensor, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    sc, mss = [], []
    for s in range(0, len(target), batch):
        t, r = target[s : s + batch].float(), rendered[s : s + batch].float()
        sc.append(metrics.spectral_convergence(t, r))
        mss.append(metrics.multiscale_spectral_distance(t, r))
    return torch.cat(sc).double().numpy(), torch.cat(mss).double().numpy()


def run(
    predict_fn: PredictFn,
    contract: Contract,
    audio,
    params,
    batch_size: int = 64,
    refine_cfg=None,
    notes=None,
    told=None,
) -> EvalRun:
    """evaluate(), keeping predictions, re-rendered audio and per-example scores.

    notes: (N,) MIDI notes the examples play; told: (N,) notes the model is told and its predictions
    are re-rendered at (default `notes`: the true note; bridge.pitch's detected note to score what the
    daemon does). Parameter MSE is only meaningful where told == notes: oscillator pitches are
    offsets from the note told."""
    audio = torch.as_tensor(audio).float().cpu()
    params = torch.as_tensor(params).float().cpu()
    if len(audio) != len(params) or len(audio) == 0:
        raise ValueError(
            f"need the same non-zero number of audio clips and patches; got {len(audio)} and {len(params)}"
        )
    told = notes if told is None else told
    pred = predict(predict_fn, audio, batch_size, len(contract.params), told)
    if refine_cfg is not None and refine_cfg.passes:  # training.refine: search by re-rendering
        if told is not None:
            raise ValueError("refinement re-renders at the contract's note: evaluate other notes without it")
        from synthmatch.training.refine import refine

        pred = refine(contract, audio, pred, refine_cfg)[0]
    rendered = rerender(contract, pred, told)
    mse, per = metrics.param_mse(torch.from_numpy(pred), params)
    sc, mss = _spectral(audio, rendered)
    result = {
        "count": len(audio),
        "param_mse": float(mse),
        "param_mse_per_param": {n: float(v) for n, v in zip(contract.names, per)},
        "spectral_convergence": float(sc.mean()),
        "spectral_convergence_median": float(np.median(sc)),
        "multiscale_spectral_distance": float(mss.mean()),
        "multiscale_spectral_distance_median": float(np.median(mss)),
        "pitch_within_1_semitone": metrics.pitch_accuracy(pred, params.numpy(), contract),
        "sc_stft": metrics.SC_STFT,
        "mss_stft": metrics.MSS_STFT,
        "contract_hash": contract.hash,
    }
    if notes is not None:
        off = np.abs(np.asarray(told, np.float64) - np.asarray(notes, np.float64))
        result["notes"] = {
            "range": [int(np.min(notes)), int(np.max(notes))],
            "told_is_true_note": float(np.mean(off == 0)),
            "told_within_1_semitone": float(np.mean(off <= 1)),
        }
    return EvalRun(result, pred, rendered, sc, mss)


def evaluate(predict_fn: PredictFn, contract: Contract, audio, params, batch_size: int = 64) -> dict:
    """predict_fn: (B, T) float32 numpy -> (B, 16); audio (N, T), params (N, 16) -> JSON-ready dict."""
    return run(predict_fn, contract, audio, params, batch_size).metrics


# ------------------------------------------------------------------------------------------------
# Reports


def markdown(result: dict, title: str = "Evaluation") -> str:
    lines = [f"# {title}", ""]
    info = {k: result[k] for k in ("model", "split", "count", "seed", "contract_hash") if k in result}
    lines += [", ".join(f"{k}: `{v}`" for k, v in info.items()), ""]
    lines += [
        "| metric | value |",
        "|---|---:|",
        f"| parameter MSE | {result['param_mse']:.4f} |",
        f"| spectral convergence (mean) | {result['spectral_convergence']:.3f} |",
        f"| spectral convergence (median) | {result['spectral_convergence_median']:.3f} |",
        f"| multi-scale spectral distance (mean) | {result['multiscale_spectral_distance']:.3f} |",
        f"| multi-scale spectral distance (median) | {result['multiscale_spectral_distance_median']:.3f} |",
        *(
            [
                f"| oscillator pitch within 1 semitone (gain >= 1/3) | "
                f"{result['pitch_within_1_semitone']['within']:.1%} |"
            ]
            if "pitch_within_1_semitone" in result
            else []
        ),
        "",
    ]
    lines += ["| parameter | MSE |", "|---|---:|"]
    lines += [f"| {n} | {v:.4f} |" for n, v in result["param_mse_per_param"].items()]
    sc = result["sc_stft"]
    lines += [
        "",
        f"Spectral convergence: linear STFT magnitude, n_fft {sc['n_fft']}, hop {sc['hop_length']}, "
        f"Hann window, centred; per example, then averaged. Multi-scale distance: FFT sizes "
        f"{', '.join(map(str, result['mss_stft']['n_ffts']))}, hop n_fft/4, SC + log-magnitude L1 per "
        "scale, averaged. Parameter MSE on normalised values in [0, 1].",
        "",
    ]
    return "\n".join(lines)


def plot_examples(
    contract: Contract, target: torch.Tensor, rendered: torch.Tensor, sc: np.ndarray, path: str | Path, count: int = 4
) -> list[int]:
    """PNG of input vs re-rendered log-mel for `count` examples spread over the SC range (best to
    worst). Returns the example indices shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthmatch.training.model.frontend import LogMel

    order = np.argsort(sc, kind="stable")
    count = min(count, len(order))
    picks = [int(order[round(q)]) for q in np.linspace(0, len(order) - 1, count)]
    with torch.no_grad():
        lm = LogMel(contract)
        a, b = lm(target[picks].float()).numpy(), lm(rendered[picks].float()).numpy()
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    seconds = contract.audio.duration_s
    fig, axes = plt.subplots(count, 2, figsize=(10, 2.2 * count), squeeze=False, constrained_layout=True)
    for r, i in enumerate(picks):
        for col, (spec, name) in enumerate(((a[r], "input"), (b[r], "re-rendered prediction"))):
            ax = axes[r, col]
            im = ax.imshow(
                spec,
                origin="lower",
                aspect="auto",
                vmin=lo,
                vmax=hi,
                cmap="magma",
                extent=(0, seconds, 0, spec.shape[0]),
            )
            ax.set_title(f"#{i} {name}" + (f"  (SC {sc[i]:.3f})" if col else ""), fontsize=9)
            ax.set_ylabel("mel band" if col == 0 else "")
            ax.set_xlabel("s" if r == count - 1 else "")
    fig.colorbar(im, ax=axes, shrink=0.6, label="normalised log-mel")
    write_atomic(path, lambda f: fig.savefig(f, dpi=80, format="png"))
    plt.close(fig)
    return picks


def write_reports(
    run_: EvalRun,
    contract: Contract,
    target: torch.Tensor,
    out: str | Path,
    title: str = "Evaluation",
    examples: int = 4,
) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "eval.json", "md": out / "eval.md", "png": out / "eval.png"}
    picks = plot_examples(contract, target, run_.rendered, run_.sc, paths["png"], examples)
    result = {**run_.metrics, "plotted_examples": picks}
    write_text(paths["json"], json.dumps(result, indent=1) + "\n")
    write_text(paths["md"], markdown(result, title))
    return paths


# ------------------------------------------------------------------------------------------------
# CLI


def _torch_predictor(path: str, contract: Contract, device: str) -> PredictFn:
    from synthmatch.training.model.checkpoint import load_model

    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device
    )
    model, _ = load_model(path, contract, map_location=dev)
    if model.num_samples != contract.audio.num_samples:
        raise UsageError(
            f"{path}: a performance model ({model.num_samples / contract.audio.sample_rate:g} s window) reads "
            "held-note windows, not one-shots; evaluate it with scripts/eval_perf.py after export"
        )
    model.to(dev).eval()

    def predict_fn(x: np.ndarray, notes: np.ndarray | None = None) -> np.ndarray:
        note = None if notes is None else torch.from_numpy(notes).to(dev)
        with torch.no_grad():
            return model(torch.from_numpy(x).to(dev), note).float().cpu().numpy()

    return predict_fn


def heard_notes(audio: np.ndarray, contract: Contract) -> np.ndarray:
    """(N, T) windows -> (N,) MIDI notes bridge.pitch detects (the daemon's note; fallback when unpitched)."""
    from synthmatch.bridge.audio.pitch import detect

    return np.array([detect(x, contract.audio.sample_rate).note for x in audio], np.float32)


def main(args) -> int:
    from synthmatch.bridge.core import contract as contract_mod

    c = contract_mod.load(args.contract)
    size = args.size if args.size is not None else DEFAULT_SPLIT_SIZES[args.split]
    if size < 1:
        raise UsageError(f"--size must be >= 1, got {size}")
    if args.checkpoint:
        predict_fn, model = _torch_predictor(args.checkpoint, c, args.device), args.checkpoint
    elif args.baseline:
        from synthmatch.training.synths.sampling import mean_patch

        patch = mean_patch(c)
        predict_fn, model = (lambda x, n=None: np.broadcast_to(patch, (x.shape[0], patch.size))), "baseline-mean"
        if not args.out:
            raise UsageError("--baseline needs --out (there is no model file to write the report beside)")
    else:
        from synthmatch.bridge.engines import load_engine

        engine = load_engine(args.model, backend=args.backend, contract=c)
        predict_fn, model = engine.infer, args.model
    from synthmatch.bridge.core.outpaths import writable_dir
    from synthmatch.training.synths.sampling import parse_notes

    try:
        notes = parse_notes(args.notes)
    except ValueError as e:
        raise UsageError(str(e)) from None
    out = Path(args.out) if args.out else Path(model).with_suffix("").parent / f"eval-{args.split}"
    writable_dir(out, "--out")  # before the evaluation: an existing file there fails in a second, not after it
    audio, params = cached_split(c, args.split, size, cache_dir=args.cache_dir, progress=True, notes=notes)
    played = told = None
    if notes is not None:
        from synthmatch.training.data.onthefly import split_notes

        played = split_notes(c, args.split, size, notes=notes).numpy()
        told = heard_notes(audio.numpy(), c) if args.told == "heard" else played
    refine_cfg = None
    if args.refine_passes:
        from synthmatch.training.refine import RefineConfig

        refine_cfg = RefineConfig(passes=args.refine_passes)
    try:
        r = run(
            predict_fn, c, audio, params, batch_size=args.batch_size, refine_cfg=refine_cfg, notes=played, told=told
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    r.metrics = {
        "model": str(model),
        "split": args.split,
        "seed": split_seed(args.split),
        "refine_passes": args.refine_passes,
        **({"told": args.told} if notes else {}),
        **r.metrics,
    }
    paths = write_reports(
        r, c, audio, out, title=f"Evaluation of {Path(model).name} on the {args.split} split", examples=args.examples
    )
    m = r.metrics
    print(
        f"param MSE {m['param_mse']:.4f}  SC {m['spectral_convergence']:.3f}  "
        f"multi-scale {m['multiscale_spectral_distance']:.3f}  ({m['count']} examples)",
        file=sys.stderr,
    )
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0 if math.isfinite(m["param_mse"]) else 1
