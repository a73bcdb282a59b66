"""Training's subcommands of `synthmatch`: render, match, demo, export, train, dataset, eval.

bridge/cli.py calls `register(command)` to add them. This module imports argparse and the runtime's core
only, never torch, so `synthmatch --help` works on a runtime-only install; each handler ("module:function")
is imported when it runs, and the CLI first checks that the train extra is installed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from synthmatch.bridge.core import argtypes
from synthmatch.bridge.engines import BACKENDS

Command = Callable[[str, str, str], argparse.ArgumentParser]  # (name, "module:function", help) -> its parser


def register(command: Command) -> None:
    """Add training's subcommands, in the order `synthmatch --help` lists them."""
    _render(command)
    _match(command)
    _demo(command)
    _export(command)
    _train(command)
    _dataset(command)
    _eval(command)


def _render(command: Command) -> None:
    """`synthmatch render`: one patch to a WAV file."""
    p = command("render", "synthmatch.training.render:main", "render a patch with the reference synth to a WAV file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--random", action="store_true", help="random patch from the contract's sampling")
    src.add_argument(
        "--params",
        metavar="JSON",
        help='a JSON file with all 16 normalised values {"osc1_pitch": 0.5, ...} (match\'s '
        "params.json works too), or that object inline in quotes",
    )
    p.add_argument("--seed", type=argtypes.seed, default=0, help="with --random: patch = f(seed), seed >= 0")
    p.add_argument("--out", required=True, help="output WAV (16 kHz mono float)")
    p.add_argument("--note", type=argtypes.note, help="MIDI note to play, 0..127 (default: the contract's, 60 = C4)")
    argtypes.add_contract(p)


def _match(command: Command) -> None:
    """`synthmatch match`: one sound file to params.json, match.wav and compare.png."""
    p = command(
        "match",
        "synthmatch.training.match:main",
        "match one sound file: params.json, match.wav (reference synth or --synth) and compare.png",
    )
    p.add_argument("input", help="audio file (wav, flac, ogg; any rate; stereo is mixed down)")
    p.add_argument("--out-dir", default="match", help="where the three files go (default ./match)")
    p.add_argument("--model", help="exported model (default: models/default.onnx)")
    p.add_argument("--backend", default="onnxruntime", choices=("auto", *BACKENDS), help="(default onnxruntime)")
    p.add_argument("--channel", type=int, help="use this channel (0-based) instead of the mix")
    p.add_argument(
        "--budget",
        type=argtypes.milliseconds,
        metavar="MS",
        help="time to improve the prediction by judging candidates through the reference synth, the live "
        "daemon's matcher (default 500; 0: the model alone)",
    )
    p.add_argument(
        "--refine-passes",
        type=argtypes.passes,
        metavar="N",
        help="instead, the older coordinate search over full renders, N passes from the prediction and the "
        "mean patch (3 passes: about 780 renders, 5-10 s); through a plugin the only search (default 1: its "
        "mapped parameters, one render at a time); 0: the model alone",
    )
    p.add_argument(
        "--synth",
        default="reference",
        metavar="SPEC",
        help='render match.wav and refine with "reference" (default) or "vst3:PATH" (needs --profile); '
        "the model must have been trained on that synth",
    )
    p.add_argument("--profile", help="with vst3: a synth profile, configs/synths/NAME.toml or a TOML file")
    argtypes.add_contract(p)


def _demo(command: Command) -> None:
    """`synthmatch demo`: render, match and stream, no hardware needed."""
    p = command(
        "demo",
        "synthmatch.training.demo:main",
        "no hardware needed: render a patch, match it, stream it through the bridge",
    )
    p.add_argument("--out-dir", default="demo", help="where the demo's files go (default ./demo)")
    p.add_argument("--seed", type=argtypes.seed, default=2024, help="which random patch to render (>= 0)")


def _export(command: Command) -> None:
    """`synthmatch export`: a checkpoint to an ONNX model file."""
    p = command(
        "export",
        "synthmatch.training.export:main",
        "export a checkpoint to an ONNX model file (contract embedded, parity-checked)",
    )
    p.add_argument("--checkpoint", required=True, help="training checkpoint (.pt)")
    p.add_argument(
        "--out",
        required=True,
        help="output model file, e.g. models/default.onnx "
        "(model.pt2, the torch program the cuda backend runs, and model.pt, weights to fine-tune "
        "from, are written beside it)",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-weights", action="store_true", help="do not write model.pt2 and model.pt beside it")
    p.add_argument(
        "--test-eval",
        metavar="EVAL_JSON",
        help="embed this `synthmatch eval --checkpoint CHECKPOINT` report as the model's test metrics",
    )
    p.add_argument(
        "--note",
        action="append",
        default=[],
        metavar="KEY=TEXT",
        help='embed a line of provenance in the summary, e.g. hardware="2-core CPU, 57 min" (repeatable)',
    )
    argtypes.add_contract(p)


def _train(command: Command) -> None:
    """`synthmatch train`: a model on patches rendered on the fly."""
    p = command(
        "train",
        "synthmatch.training.run.train:main",
        "train a model on synth patches rendered on the fly (DDP under torchrun)",
    )
    p.add_argument("--config", required=True, help="training TOML (see configs/train/)")
    p.add_argument("--out", required=True, help="run directory: checkpoints, metrics.jsonl, loss.png")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument(
        "--device", choices=("cpu", "cuda", "auto"), default="auto", help="cuda when available with auto (default)"
    )


def _dataset(command: Command) -> None:
    """`synthmatch dataset render|probe|verify`: offline sharded datasets."""
    p = command("dataset", "synthmatch.training.data.shardrender:main", "offline sharded datasets (render, verify)")
    dsub = p.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    _dataset_render(dsub)
    pr = dsub.add_parser(
        "probe",
        help="open a synth with its profile: parameters, mapping, one test render",
        description="load a VST3 plugin with a profile, check every name against the plugin "
        "and print its parameters and one render's level (JSON)",
    )
    pr.add_argument("--synth", required=True, metavar="SPEC", help='"vst3:PATH"')
    pr.add_argument("--profile", required=True, help="configs/synths/NAME.toml or a TOML file")
    argtypes.add_contract(pr)
    v = dsub.add_parser("verify", help="check a sharded dataset's manifest, sizes and checksums")
    v.add_argument("dir", help="dataset directory")
    argtypes.add_contract(v)


def _dataset_render(dsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`synthmatch dataset render`: a sharded dataset, resumable."""
    r = dsub.add_parser(
        "render",
        help="render a sharded dataset with a synth (resumable)",
        description="render a sharded dataset with the reference synth or a VST3 instrument; rerun to resume",
    )
    r.add_argument("--count", type=int, required=True, help="number of examples")
    r.add_argument("--out", required=True, help="dataset directory (created; a rerun resumes it)")
    r.add_argument("--workers", type=int, default=1, help="render processes (default 1)")
    r.add_argument("--seed", type=int, default=0, help="example i = f(seed, i) (default 0)")
    r.add_argument("--shard-size", type=int, default=1024, help="examples per shard (default 1024)")
    r.add_argument(
        "--store",
        choices=("logmel", "audio"),
        default="logmel",
        help="logmel: float16 model input (default, 51 GB per 1M); audio: int16 (128 GB per 1M)",
    )
    r.add_argument("--presets", metavar="CSV", help="sample from distributions fitted to this presets CSV")
    r.add_argument("--presets-method", choices=("beta", "kde"), default="beta", help="fit (default beta)")
    r.add_argument(
        "--synth",
        default="reference",
        metavar="SPEC",
        help='"reference" (default) or "vst3:PATH" (a VST3 instrument, one instance per worker)',
    )
    r.add_argument("--profile", help="with vst3: a synth profile, configs/synths/NAME.toml or a TOML file")
    r.add_argument(
        "--shards",
        metavar="A:B",
        help="render only shards A..B-1 (B exclusive), e.g. one machine's part of a dataset in a shared directory",
    )
    r.add_argument(
        "--notes",
        metavar="LO:HI",
        help="play example i at a MIDI note drawn uniformly from LO..HI "
        "(a function of seed and i), e.g. 36:84; default the contract's note",
    )
    argtypes.add_contract(r)


def _eval(command: Command) -> None:
    """`synthmatch eval`: a model on a fixed split."""
    p = command(
        "eval",
        "synthmatch.training.evaluate:main",
        "evaluate a model on a fixed split: param MSE, spectral convergence, multi-scale distance",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="training checkpoint (.pt), run in torch")
    src.add_argument("--model", help="exported model file (.onnx), run by an inference backend")
    src.add_argument(
        "--baseline", choices=("mean",), help="no model: predict the mean patch (every parameter at its sampling mean)"
    )
    p.add_argument(
        "--refine-passes",
        type=argtypes.passes,
        default=0,
        metavar="N",
        help="score the predictions after N passes of refinement by re-rendering (default 0)",
    )
    p.add_argument("--split", choices=("val", "test"), default="test", help="fixed split (default test)")
    p.add_argument(
        "--notes",
        metavar="LO:HI",
        help="play the split's example i at a MIDI note drawn from LO..HI (default the contract's note), e.g. 36:84",
    )
    p.add_argument(
        "--told",
        choices=("true", "heard"),
        default="true",
        help="with --notes: the note the model is told and its match is played at: the true one "
        "(default) or the one bridge.pitch hears, as the daemon does",
    )
    p.add_argument("--size", type=int, default=None, help="examples (default 512 val, 1024 test)")
    p.add_argument("--out", default=None, help="report directory (default: eval-SPLIT beside the model)")
    p.add_argument("--examples", type=int, default=4, help="examples plotted in eval.png (default 4)")
    p.add_argument("--batch-size", type=int, default=64, help="prediction batch (default 64)")
    p.add_argument("--cache-dir", default="data/cache", help="split cache (default data/cache)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto", help="with --checkpoint")
    p.add_argument(
        "--backend",
        default="onnxruntime",
        choices=("auto", *BACKENDS),
        help="with --model (default onnxruntime)",
    )
    argtypes.add_contract(p)
