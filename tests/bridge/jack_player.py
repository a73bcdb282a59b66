"""A JACK client that loops a WAV file out of its ports (PortAudio via sounddevice), for the daemon's tests.

    python -m tests.bridge.jack_player FILE.wav CLIENT_NAME
Its output ports are CLIENT_NAME:out_1 ...; the test connects them to the daemon's inputs.
Prints "playing" once running. Runs until killed.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def main() -> None:
    import sounddevice as sd

    from synthmatch.bridge.audio import portaudio
    from synthmatch.bridge.core import audiofile

    path, name = sys.argv[1], sys.argv[2]
    portaudio.name_jack_client(sd, name)
    dev = next(i for i, d in enumerate(sd.query_devices()) if d["name"] == "system")
    rate = int(sd.query_devices(dev)["default_samplerate"])
    x = audiofile.read_mono(path, rate)
    pos = [0]

    def callback(outdata, frames, t, status):
        idx = (pos[0] + np.arange(frames)) % x.size
        outdata[:, 0] = x[idx]
        pos[0] += frames

    with sd.OutputStream(device=dev, channels=1, samplerate=rate, callback=callback, dtype="float32"):
        print("playing", flush=True)
        while True:
            time.sleep(1)


if __name__ == "__main__":
    main()
