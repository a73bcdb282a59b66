"""Training's subcommands, registered by synthmatch.training.commands: present in `synthmatch --help`,
parsed without torch, and their choices derived from the runtime's lists."""

from __future__ import annotations

import subprocess
import sys

import pytest

from synthmatch.bridge.cli import build_parser
from synthmatch.bridge.engines import BACKENDS

TRAINING_COMMANDS = ("render", "match", "demo", "export", "train", "dataset", "eval")


def test_parser_has_training_commands_without_importing_torch():
    code = (
        "import sys\nfrom synthmatch.bridge.cli import build_parser\n"
        "p = build_parser()\n"
        "names = sorted(p._subparsers._group_actions[0].choices)\n"
        "print(' '.join(names)); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert set(TRAINING_COMMANDS) <= set(out[0].split())
    assert out[1] == "False"


@pytest.mark.parametrize("command", ["match x.wav", "eval --model m.onnx"])
def test_backend_choices_are_the_engines_list(command, capsys):
    parser = build_parser()
    for backend in ("auto", *BACKENDS):
        args = parser.parse_args([*command.split(), "--backend", backend])
        assert args.backend == backend
    with pytest.raises(SystemExit) as e:
        parser.parse_args([*command.split(), "--backend", "nosuch"])
    assert e.value.code == 2 and "invalid choice: 'nosuch'" in capsys.readouterr().err


def test_training_handlers_name_training_modules():
    parser = build_parser()
    for argv in (["render", "--random", "--out", "x.wav"], ["train", "--config", "c.toml", "--out", "r"]):
        handler = parser.parse_args(argv).handler
        assert isinstance(handler, str) and handler.startswith("synthmatch.training.")
