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


# ---- issue 22: every number bounded where it is read; --check opens the outputs as the run does -------

OSC_ON = {"output.osc.enabled": True}
ABLETON = {**OSC_ON, "output.osc.preset": "ableton"}


@pytest.mark.parametrize(
    "over, says",
    [
        ({"refine.budget_ms": 99999999999999999999}, "refine.budget_ms = 1e+20: must lie in [0, 5000] ms"),
        ({"refine.keep_margin": 1.0}, "refine.keep_margin = 1: must lie in [0, 1)"),
        ({"threads": config.MAX_THREADS + 1}, f"threads = {config.MAX_THREADS + 1}: must lie in [0, "),
        ({"onset.holdoff_s": 1e308}, "onset.holdoff_s = 1e+308: must lie in [0, 60] s"),
        ({"onset.lookback_ms": 1e308}, "onset.lookback_ms = 1e+308: must lie in [0, 2000] ms"),
        ({"input.blocksize": 2147483648}, "input.blocksize = 2147483648: must lie in [0, 65536] frames"),
        ({"continuous.gate_s": 1e-300}, "continuous.gate_s = 1e-300: must lie in [0.01, 4] s"),
        ({"continuous.hop_s": 1e-300}, "continuous.hop_s = 1e-300: must lie in [0.01, 60] s"),
        ({"onset.frame": 2**31}, "onset.frame = 2147483648: must lie in [8, 1024] samples"),
        ({**ABLETON, "output.osc.track": 2147483648}, "output.osc.track = 2147483648: must lie in [-1, 2147483647]"),
        ({**ABLETON, "output.osc.fx": 2**40}, "output.osc.fx = 1099511627776: must lie in [-1, 2147483647]"),
        ({**ABLETON, "output.osc.device": -2}, "output.osc.device = -2: must lie in [-1, 2147483647]"),
        ({**OSC_ON, "output.osc.indices": [2**31] * 16}, "output.osc.indices[0] = 2147483648: must lie in"),
        ({**OSC_ON, "output.osc.value_max": -1}, "output.osc.value_max = -1, value_min = 0: need finite value_min <"),
        ({"output.osc.value_max": -1}, "output.osc.value_max = -1"),  # refused while the output is off too
        ({**OSC_ON, "output.osc.value_min": 2.0}, "output.osc.value_max = 1 (the generic preset's), value_min = 2"),
        ({**OSC_ON, "output.osc.value_max": 1e300}, "output.osc.value_max = 1e+300: must lie in [-1000000, 1000000]"),
        ({"output.midi.velocity": 128}, "output.midi.velocity = 128: must lie in [1, 127]"),
        ({"output.midi.ccs": [14] * 15 + [300]}, "output.midi.ccs[15] = 300: must lie in [-1, 127]"),
        ({"control.port": 70000}, "control.port = 70000: must lie in [0, 65535]"),
        ({"continuous.hop_s": 10**400}, "continuous.hop_s = "),  # an int past the float range
    ],
)
def test_numbers_out_of_range_are_refused_naming_the_key_and_the_range(c, over, says):
    with pytest.raises(UsageError) as e:
        config.load(overrides=over, contract=c)
    assert says in str(e.value), str(e.value)
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


def _numeric_keys(cls, prefix: str):
    """(dotted key, annotation) of every int / float / list[int] field of a config dataclass, recursively."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            yield from _numeric_keys(tp, key + ".")
        elif tp in (int, float, list[int]):
            yield key, tp


def _all_numeric_keys():
    from synthmatch.bridge.outputs.config import OutputSettings

    return [*_numeric_keys(config.BridgeConfig, ""), *_numeric_keys(OutputSettings, "output.")]


@pytest.mark.parametrize("key, tp", _all_numeric_keys(), ids=[k for k, _ in _all_numeric_keys()])
@pytest.mark.parametrize("sign", [1, -1], ids=["huge", "-huge"])
def test_every_numeric_setting_is_bounded(c, key, tp, sign):
    """No number the daemon reads is unbounded: a huge one of either sign is refused naming the key."""
    huge = {int: 2**63, float: 1e300, list[int]: [2**63] * len(c.names)}[tp]
    value = [sign * x for x in huge] if isinstance(huge, list) else sign * huge
    section = key.split(".")
    over = {key: value}
    if section[0] == "output":  # an output's own checks run when it is on
        over[f"output.{section[1]}.enabled"] = True
    with pytest.raises(UsageError) as e:
        config.load(overrides=over, contract=c)
    msg = str(e.value)
    assert section[-1] in msg and section[-2 if len(section) > 1 else 0] in msg, msg


def _bridge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synthmatch.bridge.cli", "bridge", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "args, says",
    [
        (["--midi-port", "nosuchport"], "output.midi"),  # no such port, or no MIDI system: the run fails so
        (
            ["--osc", "127.0.0.1:9000", "--set", 'output.osc.preset="ableton"', "--set", "output.osc.track=2147483648"],
            "output.osc.track = 2147483648: must lie in [-1, 2147483647]",
        ),
        (["--osc", "127.0.0.1:9000", "--set", "output.osc.value_max=-1"], "output.osc.value_max = -1"),
        (["--osc", "no-such-host.invalid:9000"], "output.osc.host = 'no-such-host.invalid': cannot resolve"),
    ],
)
def test_check_fails_where_the_run_would(tiny_onnx, args, says):
    r = _bridge("--model", str(tiny_onnx), "--check", *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stdout == "", r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and says in errors[0], r.stderr


def test_check_names_the_outputs_it_opened(tiny_onnx):
    r = _bridge("--model", str(tiny_onnx), "--check", "--osc", "127.0.0.1:9", "--print")
    assert r.returncode == 0 and "outputs: OscSink, PrintSink: ok" in r.stdout, r.stderr
