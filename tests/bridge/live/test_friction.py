"""What a new user tripped on (issue 21's friction list), one test each, through the real command where
it matters: the README's file example, device indices, errors naming the flag written, MIDI port and
control port errors, the messages counter, WAV headers, alsa-lib's noise, --profile and --channel."""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from synthmatch.bridge.core import audiofile
from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.errors import UsageError
from synthmatch.bridge.live import serve
from tests.bridge.daemon_util import bridge_cmd, exit_counters, notes_file

C = contract_mod.default()


def args(*argv: str) -> argparse.Namespace:
    from synthmatch.bridge.cli import build_parser

    return build_parser().parse_args(["bridge", *argv])


def test_readme_file_example_prints_a_one_shot(tiny_onnx, tmp_path):
    """`synthmatch bridge --input file:take.wav --fast --print` on one note printed nothing (continuous
    mode gated the decaying one-shot). File input now defaults to trigger mode: one snapshot per note."""
    take = tmp_path / "take.wav"
    notes_file(take, C, [4000], 16000 * 5)
    run = subprocess.run(
        bridge_cmd("--input", f"file:{take}", "--fast", "--print", "--model", str(tiny_onnx), "--no-control"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 1 and lines[0]["mode"] == "trigger"
    c = exit_counters(run.stderr)
    assert c["inferences"] == 1 and c["updates"] == 1
    assert c["messages"] == 0  # a printed line is no MIDI/OSC message


def test_file_input_keeps_an_explicit_mode():
    cfg = serve.config_from_args(args("--input", "file:x.wav", "--mode", "continuous"))
    assert cfg.mode == "continuous"
    assert serve.config_from_args(args("--input", "file:x.wav")).mode == "trigger"


def test_device_index_is_taken_three_ways():
    assert serve.config_from_args(args("--set", "input.source=1")).input.source == "1"
    assert serve.config_from_args(args("--input", "1")).input.source == "1"
    from synthmatch.bridge.audio.input import find_device

    class Devices:  # the shape of sounddevice's device list: what find_device reads
        default = type("D", (), {"device": (0, 0)})()

        @staticmethod
        def query_devices():
            return [
                {"name": "Monitor", "max_input_channels": 0, "default_samplerate": 48000.0},
                {"name": "USB Audio", "max_input_channels": 2, "default_samplerate": 48000.0},
            ]

    assert find_device(Devices, "1")[1] == "USB Audio"
    with pytest.raises(UsageError, match="no input device has index 7; inputs: 1 'USB Audio'"):
        find_device(Devices, "7")


def test_devices_names_the_real_key_and_keeps_alsa_lib_quiet():
    run = subprocess.run(
        [sys.executable, "-m", "synthmatch.bridge.cli", "devices"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0
    assert "input.source" in run.stdout and "input.device" not in run.stdout
    assert "ALSA lib" not in run.stderr, run.stderr


def test_set_errors_name_the_flag_and_the_key_written():
    with pytest.raises(UsageError) as e:
        serve.config_from_args(args("--set", "output.midi.cc.filter1_cutoff=14", "--midi-port", "x"))
    msg = str(e.value)
    assert msg.startswith("--set output.midi.cc.filter1_cutoff=14: output.midi.cc.filter1_cutoff = 14 collides")
    assert "ccs[" not in msg and "bridge.toml" not in msg and "osc1_pitch" in msg
    with pytest.raises(UsageError, match=r"^--set continuous.hop_s=0: continuous.hop_s = 0: must lie in"):
        serve.config_from_args(args("--set", "continuous.hop_s=0"))
    with pytest.raises(UsageError, match=r"^--channel 17: output.midi.channel = 17: must lie in \[1, 16\]"):
        serve.config_from_args(args("--channel", "17"))
    with pytest.raises(UsageError, match=r"^--profile moog: output.profile = 'moog': no such output profile"):
        serve.config_from_args(args("--profile", "moog"))
    # -1 sends a parameter nowhere (was refused)
    cfg = serve.config_from_args(args("--set", "output.midi.cc.reverb_mix=-1", "--midi-port", "x"))
    assert cfg.output.midi.ccs[-1] == -1


def test_profile_and_channel_flags():
    cfg = serve.config_from_args(args("--profile", "amsynth", "--channel", "3", "--midi-port", "amsynth"))
    assert cfg.output.profile == "amsynth" and cfg.output.midi.channel == 3


@pytest.mark.jack
def test_ambiguous_midi_port_lists_candidates_without_jack_advice(jack):
    import rtmidi

    ins = []
    try:
        for client in ("zynaddsubfx_osc", "zynaddsubfx_midi"):  # two ports the name matches
            m = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, client)
            m.open_virtual_port("in")
            ins.append(m)
            jack.wait_for_port(f"{client}:in")
        cfg = serve.config_from_args(args("--midi-port", "zynaddsubfx", "--set", 'output.midi.api="jack"'))
        with pytest.raises(UsageError) as e:
            serve._open_sinks(cfg, C)
        msg = str(e.value)
        assert "ambiguous" in msg and "zynaddsubfx_midi:in" in msg and "zynaddsubfx_osc:in" in msg
        assert "start the JACK server" not in msg and "give more of the name" in msg
    finally:
        for m in ins:
            m.close_port()
            m.delete()


def test_busy_control_port_names_no_control_and_control_port():
    from synthmatch.bridge.live.control import CommandQueue, ControlServer

    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        with pytest.raises(UsageError) as e:
            ControlServer("127.0.0.1", taken.getsockname()[1], CommandQueue(4)).start()
        msg = str(e.value)
        assert "--no-control" in msg and "control.port" in msg and "\n" not in msg
    finally:
        taken.close()


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed (apt-get install sox)")
def test_wav_files_have_a_standard_header(tmp_path):
    path = tmp_path / "x.wav"
    audiofile.write(path, np.sin(np.arange(16000) / 10.0).astype(np.float32) * 0.5, 16000)
    run = subprocess.run(["sox", str(path), "-n", "stat"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and "WARN" not in run.stderr, run.stderr
    assert "Samples read:             16000" in run.stderr
    back = audiofile.read_mono(path, 16000)
    assert np.allclose(back, np.sin(np.arange(16000) / 10.0).astype(np.float32) * 0.5)
