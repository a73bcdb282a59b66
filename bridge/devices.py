"""`synthmatch devices`: audio inputs (PortAudio via sounddevice) and MIDI ports (python-rtmidi, per API).

Needs no model and no config, and works on a machine with no sound card, no JACK server and no ALSA
sequencer: each missing piece is reported as a line, never as a traceback. Note that PortAudio lists
JACK devices only when a JACK server is running at the time this command starts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from typing import IO, Iterator


@contextlib.contextmanager
def quiet_stderr(caught: list[str]) -> Iterator[None]:
    """C libraries' own lines on fd 2 (alsa-lib's "ALSA lib seq_hw.c: ... open /dev/snd/seq failed") are
    caught instead of reaching the user's terminal; what they said is appended to `caught`."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded): nothing to hide
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace").strip()
            if text:
                caught.append(text)


def audio_inputs() -> tuple[list[dict], str | None]:
    """Input-capable devices as dicts (index, name, hostapi, channels, rate, default); or an error line."""
    try:
        import sounddevice as sd
    except OSError as e:  # libportaudio2 missing
        return [], f"PortAudio not available ({e}); install libportaudio2"
    try:
        apis = sd.query_hostapis()
        default_in = sd.default.device[0]
        devices = sd.query_devices()
    except sd.PortAudioError as e:
        return [], f"PortAudio error: {e}"
    out = []
    for i, d in enumerate(devices):
        if d["max_input_channels"] > 0:
            out.append(
                dict(
                    index=i,
                    name=d["name"],
                    hostapi=apis[d["hostapi"]]["name"],
                    channels=d["max_input_channels"],
                    rate=d["default_samplerate"],
                    default=i == default_in,
                )
            )
    return out, None


def midi_ports() -> dict[str, dict[str, list[str] | str]]:
    """{api: {"outputs": [...], "inputs": [...]}} or {api: {"error": why}} for each compiled API."""
    from synthmatch.bridge.outputs import midiports

    result: dict[str, dict] = {}
    for api in midiports.compiled_apis():
        if api == "jack" and not midiports.jack_server_alive():
            result[api] = {"error": f'no JACK server running (server "{midiports.jack_server_name()}")'}
            continue
        noise: list[str] = []
        try:
            with quiet_stderr(noise):
                outs, ins = midiports.list_ports(api, "out"), midiports.list_ports(api, "in")
            result[api] = {"outputs": outs, "inputs": ins}
        except midiports.MidiPortError as e:
            why = f"{e}" + ("; is the ALSA sequencer loaded? (sudo modprobe snd-seq)" if api == "alsa" else "")
            result[api] = {"error": why}
    return result


def report(stream: IO[str] = sys.stdout) -> None:
    w = lambda s="": print(s, file=stream)  # noqa: E731
    inputs, err = audio_inputs()
    w("Audio inputs (--input INDEX or a part of the name; in the config: input.source):")
    if err:
        w(f"  {err}")
    elif not inputs:
        w("  no audio input devices")
    for d in inputs:
        mark = "*" if d["default"] else " "
        w(f" {mark}{d['index']:>3}  {d['name']}  [{d['hostapi']}]  {d['channels']} ch  {d['rate']:g} Hz")
    w()
    ports = midi_ports()
    if not ports:
        w("MIDI: python-rtmidi has no MIDI API compiled in")
    for api, info in ports.items():
        w(f"MIDI ({api}):")
        if "error" in info:
            w(f"  {info['error']}")
            continue
        w("  can send to (output.midi.port = a part of the name):")
        w("\n".join(f"    {p}" for p in info["outputs"]) or "    none")
        w("  can receive from (control.footswitch.port = a part of the name):")
        w("\n".join(f"    {p}" for p in info["inputs"]) or "    none")


def main(args: argparse.Namespace | None = None) -> int:
    report()
    return 0
