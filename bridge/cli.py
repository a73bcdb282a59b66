"""The `synthmatch` command: argparse subcommands, each handler imported only when it runs.

The runtime's commands are declared here; training's come from synthmatch.training.commands (argparse only),
so `synthmatch --help` and `synthmatch devices` never import torch. Each subcommand names its handler as
"module:function", called with the parsed namespace. Handlers return an exit code (or None for 0). User errors
raise UsageError -> exit 2 with the message.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import re
import signal
import sys
from collections.abc import Callable
from typing import Any

from synthmatch.bridge.core import argtypes
from synthmatch.bridge.core.errors import UsageError, clip, os_error_advice


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


Command = Callable[[str, Any, str], argparse.ArgumentParser]  # (name, handler, help) -> its parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synthmatch", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    p = command("params", _params, "print the 16-parameter table")
    argtypes.add_contract(p)
    command("devices", "synthmatch.bridge.devices:main", "list audio inputs and MIDI ports")

    from synthmatch.training import commands as training_commands  # argparse only: no torch

    training_commands.register(command)
    _engine_command(command)
    _bridge_command(command)
    return parser


def _engine_command(command: Command) -> None:
    """`synthmatch engine build`: a TensorRT engine built and cached ahead of time."""
    p = command(
        "engine",
        "synthmatch.bridge.engines.tensorrt_build:build_main",  # "build" is its only action
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


def _bridge_command(command: Command) -> None:
    """`synthmatch bridge`: the live daemon."""
    # imported here, not at the top: this module loads in milliseconds, so a Ctrl-C while starting lands
    # inside main's try (exit 130, no traceback) rather than in the import of numpy
    from synthmatch.bridge.live.config import BACKEND_CHOICES, MODES

    p = command(
        "bridge",
        "synthmatch.bridge.live.serve:main",
        "listen to an audio input, infer the 16 parameters, send them as MIDI CC / OSC",
    )
    p.add_argument("--config", help="daemon TOML (default: configs/bridge.toml)")
    p.add_argument(
        "--input",
        help='an input device: its index or a part of its name (`synthmatch devices`); or "file:PATH" to play '
        "a file through the daemon (trigger mode unless --mode is given)",
    )
    p.add_argument("--fast", action="store_true", help="with file input: as fast as possible, not real time")
    p.add_argument("--mode", choices=MODES)
    p.add_argument("--model", help="exported model file (default: models/default.onnx)")
    p.add_argument("--backend", choices=BACKEND_CHOICES)
    p.add_argument("--midi-port", help="send MIDI CC into the output port whose name contains this")
    p.add_argument("--osc", metavar="[HOST:]PORT", help="send OSC to this address")
    p.add_argument(
        "--profile",
        metavar="NAME",
        help="the synth's output profile (configs/synths/NAME.toml's [live]: amsynth, zynaddsubfx, surge-xt, "
        "massive, synthmatch-synth): each value sent as what that synth needs for its physical value",
    )
    p.add_argument("--channel", type=int, metavar="1..16", help="MIDI channel of the CCs and notes (default 1)")
    p.add_argument("--print", action="store_true", help="print one JSON line per update on stdout")
    p.add_argument("--no-control", action="store_true", help="do not start the OSC control server")
    p.add_argument(
        "--refine-budget",
        type=argtypes.milliseconds,
        metavar="MS",
        help="time to improve each answer by judging candidates through the reference synth, ms "
        "(default 150; 0 = the network's answer alone)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set continuous.hop_s=0.1 (repeatable)",
    )
    p.add_argument("--seconds", type=argtypes.seconds, help="stop after this many seconds (> 0)")
    p.add_argument("--check", action="store_true", help="validate config and model, then exit")


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
            name = re.split(r"[^A-Za-z0-9._-]", spec.strip(), maxsplit=1)[0]  # "torch>=2.3" -> "torch"
            try:
                metadata.distribution(name)
            except metadata.PackageNotFoundError:
                missing.append(name)
    return missing


NESTED = (
    "a value is nested too deeply to read (a TOML or JSON array or table over ~1000 levels deep, in a file "
    "or a --set); flatten it"
)


def _fail(command: str, message: str) -> int:
    """One line on stderr (a huge value quoted in it cut short) -> exit status 2."""
    print(f"synthmatch {command}: error: {clip(message)}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C while starting (imports, parsing): no traceback
        return 130


@contextlib.contextmanager
def _sigint_deferred():
    """Hold a Ctrl-C back while the command's modules load; it is delivered (KeyboardInterrupt: exit 130)
    as soon as they have. An import of a C extension (numpy, ONNX Runtime) interrupted halfway can crash the
    interpreter on its way out: SIGSEGV, seen once in 36 runs under load. No-op where the platform has no
    pthread_sigmask (Windows)."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None:
        yield
        return
    mask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        mask(signal.SIG_UNBLOCK, {signal.SIGINT})  # one that came meanwhile is raised here


def _main(argv: list[str] | None) -> int:
    with _sigint_deferred():
        args = build_parser().parse_args(argv)
        from synthmatch.bridge.core.contract import ContractError

        needs_train = isinstance(args.handler, str) and args.handler.startswith(TRAINING)
        missing = _missing_train_extra() if needs_train else []
        if missing:  # checked before the handler: it would fail halfway, with a traceback, on its first torch import
            return _fail(
                args.command,
                f"needs the training extra (missing {', '.join(missing)}): pip install 'synthmatch[train]'",
            )
        handler = _resolve(args.handler)

    try:
        return handler(args) or 0
    except (UsageError, ContractError) as e:
        return _fail(args.command, str(e))
    except RecursionError:  # tomllib / json on a 100,000-deep array, wherever it is read
        return _fail(args.command, NESTED)
    except OSError as e:  # a path or a disk the handler did not foresee: a name over 255 bytes, a full disk
        advice = os_error_advice(e)
        if advice is None:
            raise
        return _fail(args.command, advice)


if __name__ == "__main__":  # python -m synthmatch.bridge.cli ... (e.g. under torchrun)
    sys.exit(main())
