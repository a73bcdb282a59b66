"""The `synthmatch` command: argparse subcommands, each handler imported only when it runs.

Arguments are declared here so `synthmatch --help` and `synthmatch devices` never import torch;
each subcommand names its handler as "module:function", called with the parsed namespace.
Handlers return an exit code (or None for 0). User errors raise UsageError -> exit 2 with the message.
"""

from __future__ import annotations

import argparse
import importlib
import math
import re
import sys

from synthmatch.bridge.core.errors import UsageError


def _params(args: argparse.Namespace) -> int:
    from synthmatch.bridge.core import contract

    c = contract.load(args.contract)
    print(f"contract {c.source}  hash {c.hash}")
    print(f"{'#':>2}  {'name':<18} {'Massive':<15} {'unit':<9} {'min':>8} {'max':>8}  {'curve':<6} {'CC':>3}  sampling")
    for i, p in enumerate(c.params):
        dist = ", ".join(f"{k}={v}" for k, v in p.sample.items())
        print(
            f"{i:>2}  {p.name:<18} {p.massive:<15} {p.unit or '-':<9} {p.min:>8g} {p.max:>8g}  "
            f"{p.curve:<6} {p.cc:>3}  {dist}"
        )
    return 0


def _whole(lo: int, hi: int | None, advice: str):
    """An argparse type: a whole number in lo..hi (hi None: no upper bound); anything else is refused
    with `advice`, and argparse exits 2 naming the flag."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = lo - 1
        if n < lo or (hi is not None and n > hi):
            raise argparse.ArgumentTypeError(f"{text!r}: {advice}")
        return n

    return parse


_passes = _whole(0, None, "give a whole number of passes >= 0 (0 turns it off)")  # --refine-passes
_seed = _whole(0, None, "give a whole number >= 0")  # patches are f(seed); numpy refuses negative seeds
_note = _whole(0, 127, "give a MIDI note 0..127 (60 = C4)")  # render --note


def _seconds(text: str) -> float:
    """argparse type of --seconds: a finite number > 0."""
    try:
        x = float(text)
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds > 0 (leave it out to run until stopped)")
    return x


def _add_contract(p: argparse.ArgumentParser) -> None:
    p.add_argument("--contract", default=None, help="contract TOML (default: configs/contract.toml)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synthmatch", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    p = command("params", _params, "print the 16-parameter table")
    _add_contract(p)

    p = command("render", "synthmatch.training.render:main", "render a patch with the reference synth to a WAV file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--random", action="store_true", help="random patch from the contract's sampling")
    src.add_argument(
        "--params",
        metavar="JSON",
        help='a JSON file with all 16 normalised values {"osc1_pitch": 0.5, ...} (match\'s '
        "params.json works too), or that object inline in quotes",
    )
    p.add_argument("--seed", type=_seed, default=0, help="with --random: patch = f(seed), seed >= 0")
    p.add_argument("--out", required=True, help="output WAV (16 kHz mono float)")
    p.add_argument("--note", type=_note, help="MIDI note to play, 0..127 (default: the contract's, 60 = C4)")
    _add_contract(p)

    p = command("devices", "synthmatch.bridge.devices:main", "list audio inputs and MIDI ports")

    p = command(
        "match",
        "synthmatch.training.match:main",
        "match one sound file: params.json, match.wav (reference synth or --synth) and compare.png",
    )
    p.add_argument("input", help="audio file (wav, flac, ogg; any rate; stereo is mixed down)")
    p.add_argument("--out-dir", default="match", help="where the three files go (default ./match)")
    p.add_argument("--model", help="exported model (default: models/default.onnx)")
    p.add_argument("--backend", default="onnxruntime", help="inference backend (default onnxruntime)")
    p.add_argument("--channel", type=int, help="use this channel (0-based) instead of the mix")
    p.add_argument(
        "--refine-passes",
        type=_passes,
        metavar="N",
        help="improve the prediction by re-rendering candidates, N passes from the prediction "
        "and from the mean patch (default 3, about 780 renders, about 5 s; through a plugin "
        "1: its mapped parameters only, one render at a time, 206 renders ~1 s for the test "
        "instrument; 0: the model alone)",
    )
    p.add_argument(
        "--synth",
        default="reference",
        metavar="SPEC",
        help='render match.wav and refine with "reference" (default) or "vst3:PATH" (needs --profile); '
        "the model must have been trained on that synth",
    )
    p.add_argument("--profile", help="with vst3: a synth profile, configs/synths/NAME.toml or a TOML file")
    _add_contract(p)

    p = command(
        "demo",
        "synthmatch.training.demo:main",
        "no hardware needed: render a patch, match it, stream it through the bridge",
    )
    p.add_argument("--out-dir", default="demo", help="where the demo's files go (default ./demo)")
    p.add_argument("--seed", type=_seed, default=2024, help="which random patch to render (>= 0)")

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
        "(model.pt with the weights for the cuda backend is written beside it)",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-weights", action="store_true", help="do not write the .pt weights file beside it")
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
    _add_contract(p)

    p = command(
        "train",
        "synthmatch.training.train:main",
        "train a model on synth patches rendered on the fly (DDP under torchrun)",
    )
    p.add_argument("--config", required=True, help="training TOML (see configs/train/)")
    p.add_argument("--out", required=True, help="run directory: checkpoints, metrics.jsonl, loss.png")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument(
        "--device", choices=("cpu", "cuda", "auto"), default="auto", help="cuda when available with auto (default)"
    )

    p = command("dataset", "synthmatch.training.shards:main", "offline sharded datasets (render, verify)")
    dsub = p.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
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
    _add_contract(r)
    pr = dsub.add_parser(
        "probe",
        help="open a synth with its profile: parameters, mapping, one test render",
        description="load a VST3 plugin with a profile, check every name against the plugin "
        "and print its parameters and one render's level (JSON)",
    )
    pr.add_argument("--synth", required=True, metavar="SPEC", help='"vst3:PATH"')
    pr.add_argument("--profile", required=True, help="configs/synths/NAME.toml or a TOML file")
    _add_contract(pr)
    v = dsub.add_parser("verify", help="check a sharded dataset's manifest, sizes and checksums")
    v.add_argument("dir", help="dataset directory")
    _add_contract(v)

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
        type=_passes,
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
        help="with --model: auto, tensorrt, tensorrt-rtx, cuda, onnxruntime (default onnxruntime)",
    )
    _add_contract(p)

    p = command(
        "engine",
        "synthmatch.bridge.engines.tensorrt:build_main",  # "build" is its only action
        "TensorRT engines ahead of time (no GPU needed for tensorrt-rtx)",
    )
    esub = p.add_subparsers(dest="engine_command", required=True, metavar="ACTION")
    e = esub.add_parser(
        "build",
        help="build and cache a model's engine (the daemon then starts without building)",
        description="build and cache a model's TensorRT engine; the daemon finds it in the cache",
    )
    e.add_argument("--model", default="models/default.onnx", help="exported model (default: models/default.onnx)")
    e.add_argument(
        "--flavour",
        choices=("tensorrt-rtx", "rtx", "tensorrt"),
        default="tensorrt-rtx",
        help="tensorrt-rtx (default; builds without a GPU) or tensorrt (TensorRT 10/11, on its GPU)",
    )
    e.add_argument("--precision", choices=("fp32", "fp16"), help="default: fp32 for tensorrt-rtx, fp16 for tensorrt")
    e.add_argument("--cache-dir", help="default: $SYNTHMATCH_CACHE or ~/.cache/synthmatch, then tensorrt/")
    e.add_argument("--rebuild", action="store_true", help="build even when a valid cached engine exists")

    p = command(
        "bridge",
        "synthmatch.bridge.live.daemon:main",
        "listen to an audio input, infer the 16 parameters, send them as MIDI CC / OSC",
    )
    p.add_argument("--config", help="daemon TOML (default: configs/bridge.toml)")
    p.add_argument("--input", help='device-name substring, or "file:PATH" to play a file through the daemon')
    p.add_argument("--fast", action="store_true", help="with file input: as fast as possible, not real time")
    p.add_argument("--mode", choices=("trigger", "continuous", "manual"))
    p.add_argument("--model", help="exported model file (default: models/default.onnx)")
    p.add_argument("--backend", choices=("auto", "onnxruntime", "cuda", "tensorrt", "tensorrt-rtx"))
    p.add_argument("--midi-port", help="send MIDI CC into the output port whose name contains this")
    p.add_argument("--osc", metavar="[HOST:]PORT", help="send OSC to this address")
    p.add_argument("--print", action="store_true", help="print one JSON line per update on stdout")
    p.add_argument("--no-control", action="store_true", help="do not start the OSC control server")
    p.add_argument(
        "--refine-passes",
        type=_passes,
        metavar="N",
        help="trigger/manual: follow each snapshot with one refined by re-rendering, N passes, "
        "a few seconds later (needs the train extra; default 0 = off)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set continuous.hop_s=0.1 (repeatable)",
    )
    p.add_argument("--seconds", type=_seconds, help="stop after this many seconds (> 0)")
    p.add_argument("--check", action="store_true", help="validate config and model, then exit")

    return parser


def _resolve(handler):
    if callable(handler):
        return handler
    module, _, func = handler.partition(":")
    return getattr(importlib.import_module(module), func)


TRAINING = "synthmatch.training."  # handlers in these modules need the train extra (torch, ...)


def _missing_train_extra() -> list[str]:
    """The train extra's distributions that are not installed, named by synthmatch's own metadata
    (a runtime-only install: ["torch", "matplotlib", "pedalboard", "tqdm"])."""
    from importlib import metadata

    missing = []
    for req in metadata.requires("synthmatch") or []:
        spec, _, marker = req.partition(";")
        if 'extra == "train"' in marker:
            name = re.match(r"[A-Za-z0-9._-]+", spec.strip()).group()
            try:
                metadata.distribution(name)
            except metadata.PackageNotFoundError:
                missing.append(name)
    return missing


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from synthmatch.bridge.core.contract import ContractError

    needs_train = isinstance(args.handler, str) and args.handler.startswith(TRAINING)
    missing = _missing_train_extra() if needs_train else []
    if missing:  # checked before the handler: it would fail halfway, with a traceback, on its first torch import
        print(
            f"synthmatch {args.command}: error: needs the training extra (missing {', '.join(missing)}): "
            "pip install 'synthmatch[train]'",
            file=sys.stderr,
        )
        return 2

    try:
        return _resolve(args.handler)(args) or 0
    except (UsageError, ContractError) as e:
        print(f"synthmatch {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # python -m synthmatch.bridge.cli ... (e.g. under torchrun)
    sys.exit(main())
