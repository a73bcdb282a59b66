"""Daemon configuration: defaults, overrides, and exit 2 naming the key for every kind of mistake."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.errors import UsageError
from synthmatch.bridge.live import config


@pytest.fixture(scope="module")
def c():
    return contract_mod.default()


def test_shipped_config_is_the_defaults(c):
    cfg = config.load(contract=c)
    assert cfg.source.endswith("configs/bridge.toml")
    assert cfg.mode == "continuous" and cfg.model.endswith("models/default.onnx")
    assert cfg.control.host == "127.0.0.1" and cfg.output.osc.host == "127.0.0.1"
    fresh = config.from_dict({}, contract=c)
    assert config.as_dict(cfg) == config.as_dict(fresh)  # the TOML documents exactly the defaults


def test_overrides_are_typed(c):
    cfg = config.load(
        overrides={
            "continuous.hop_s": config.parse_value("0.1"),
            "input.source": config.parse_value("file:x.wav"),
            "output.midi.cc": {"filter1_cutoff": 74},
        },
        contract=c,
    )
    assert cfg.continuous.hop_s == 0.1 and cfg.input.source == "file:x.wav"
    assert cfg.output.midi.ccs[c.names.index("filter1_cutoff")] == 74


@pytest.mark.parametrize(
    "over, key",
    [
        ({"continuous.hopp": 1}, "continuous.hopp"),
        ({"bogus": 1}, "bogus"),
        ({"input.channel": "two"}, "input.channel"),
        ({"mode": "sometimes"}, "mode"),
        ({"output.midi.enabled": True, "output.midi.channel": 17}, "output.midi.channel"),
        ({"control.footswitch.channel": 0x20}, "control.footswitch.channel"),
        ({"output.midi.cc": {"cutoff": 74}}, "output.midi.cc.cutoff"),
        ({"output.midi.enabled": True, "output.midi.cc": {"osc1_gain": 14}}, "collides"),
        ({"output.midi.enabled": True, "output.midi.resolution": 14, "output.midi.cc": {"osc1_gain": 46}}, "LSB 46"),
        ({"output.osc.enabled": True, "output.osc.preset": "cubase"}, "output.osc.preset"),
        ({"onset.floor_db": -30.0}, "onset.floor_db"),
        # issue 14: nan and inf are TOML floats; each would crash the start or silently disable a feature
        ({"continuous.hop_s": math.nan}, "continuous.hop_s = nan: must be a finite number"),
        ({"onset.threshold_db": math.nan}, "onset.threshold_db = nan: must be a finite number"),
        ({"continuous.gate_db": math.nan}, "continuous.gate_db = nan"),
        ({"continuous.max_rate_hz": math.nan}, "continuous.max_rate_hz = nan"),
        ({"trigger.max_wait_s": math.inf}, "trigger.max_wait_s = inf"),
        ({"output.midi.retry_max_s": -math.inf}, "output.midi.retry_max_s = -inf"),
        ({"continuous.deadband": 2.0}, r"continuous.deadband = 2: must lie in [0, 1)"),
        ({"continuous.deadband": 1.0}, "continuous.deadband = 1:"),
        ({"continuous.gate_db": 6.0}, "continuous.gate_db = 6:"),
        ({"onset.threshold_db": 3.0}, "onset.threshold_db = 3"),
        ({"manual.timeout_s": 0.0}, "manual.timeout_s = 0:"),
        ({"input.latency": "nan"}, "input.latency = 'nan'"),
    ],
)
def test_mistakes_name_the_key(c, over, key):
    with pytest.raises(UsageError, match=re.escape(key) if ":" in key else key.replace(".", r"\.")):
        config.load(overrides=over, contract=c)


def test_cli_exits_2_naming_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('mode = "trigger"\n[continuous]\nhop = 0.1\n')
    r = subprocess.run(
        [sys.executable, "-m", "synthmatch.bridge.cli", "bridge", "--config", str(bad), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "continuous.hop" in r.stderr and str(bad) in r.stderr
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "synthmatch.bridge.cli",
            "bridge",
            "--set",
            "output.midi.channel=0",
            "--set",
            "output.midi.enabled=true",
            "--check",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "output.midi.channel" in r.stderr


def test_check_validates_config_and_model(tiny_onnx, tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "synthmatch.bridge.cli", "bridge", "--model", str(tiny_onnx), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "ok" in r.stdout
    # the model against a different contract: refused at start with exit 2
    text = (contract_mod.DEFAULT_CONTRACT).read_text().replace("note_off_s = 3.0", "note_off_s = 2.5")
    other = tmp_path / "contract.toml"
    other.write_text(text)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "synthmatch.bridge.cli",
            "bridge",
            "--model",
            str(tiny_onnx),
            "--set",
            f'contract="{other}"',
            "--check",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "was exported for contract" in r.stderr, r.stderr


def test_a_config_that_is_a_directory_or_unreadable_is_one_line_exit_2(tmp_path):
    locked = tmp_path / "locked.toml"
    locked.write_text('mode = "trigger"\n')
    locked.chmod(0)
    for path, why in ((tmp_path, "is a directory"), (locked, "permission denied")):
        if why == "permission denied" and os.access(locked, os.R_OK):
            continue  # root reads anything
        r = subprocess.run(
            [sys.executable, "-m", "synthmatch.bridge.cli", "bridge", "--config", str(path), "--check"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith(f"synthmatch bridge: error: {path}: {why}")
