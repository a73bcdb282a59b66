"""Per-update cost of the output sinks, and MIDI delivery latency through a dummy-driver JACK server.

    python -m scripts.bench_sinks [--out bench_sinks.json]     (from the repository root)

Needs jackd (Debian jackd2) for the MIDI figures. Prints JSON: microseconds per send() (median, p99)
for MIDI 7-bit / 14-bit with all 16 values changing, OSC bundle to a local UDP socket, a JSON line;
and send()-to-receiver-callback latency in ms (bounded below by the JACK period, 256 / 48000 s).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import time

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.outputs.config import MidiSinkConfig, OscSinkConfig
from synthmatch.bridge.outputs.midi import MidiCCSink
from synthmatch.bridge.outputs.osc import OscSink
from synthmatch.bridge.outputs.printer import PrintSink


def stats_us(samples: list[float]) -> dict:
    s = sorted(samples)
    return {"median_us": round(statistics.median(s) * 1e6, 1), "p99_us": round(s[int(0.99 * (len(s) - 1))] * 1e6, 1)}


def time_sends(sink, n: int) -> list[float]:
    out = []
    for k in range(n):
        vals = [((k * 37 + i * 11) % 100) / 100 for i in range(16)]  # every value changes each time
        t = time.perf_counter()
        sink.send(vals)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="")
    ap.add_argument("-n", type=int, default=2000)
    a = ap.parse_args()
    c = contract_mod.default()
    res: dict = {}
    rx_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx_sock.bind(("127.0.0.1", 0))
    osc = OscSink(OscSinkConfig(port=rx_sock.getsockname()[1]), c)
    res["osc_bundle_16"] = stats_us(time_sends(osc, a.n))
    osc.close()
    rx_sock.close()
    res["print_json_line"] = stats_us(time_sends(PrintSink(c, stream=io.StringIO()), a.n))

    from tests.jack import JackServer, MidiReceiver

    server = JackServer()
    os.environ.update(JACK_DEFAULT_SERVER=server.name, JACK_NO_START_SERVER="1")
    server.start()
    try:
        for bits in (7, 14):
            sink = MidiCCSink(MidiSinkConfig(enabled=True, api="jack", resolution=bits, virtual=f"b{bits}"), c)
            with MidiReceiver(server, f"rx{bits}") as rx:
                server.connect(f"synthmatch:b{bits}", rx.port)
                res[f"midi_{bits}bit_16"] = stats_us(time_sends(sink, a.n))
                lat = []
                for k in range(50):
                    rx.clear()
                    t = time.perf_counter()
                    sink.send([((k + 1) % 2) * 0.5 + 0.1] * 16)
                    rx.wait_for(1)
                    lat.append(time.perf_counter() - t)
                res[f"midi_{bits}bit_latency_ms"] = {
                    "median": round(statistics.median(lat) * 1e3, 2),
                    "max": round(max(lat) * 1e3, 2),
                }
            sink.close()
        sink = MidiCCSink(
            MidiSinkConfig(enabled=True, api="jack", virtual="r", check_interval_s=0.01, retry_min_s=0.02), c
        )
        server.kill()
        t = time.perf_counter()
        server.start()
        while "synthmatch:r" not in server.ports():
            sink.maintain()
            time.sleep(0.005)
        res["midi_reopen_after_jack_restart_s"] = round(time.perf_counter() - t, 3)
        sink.close()
    finally:
        server.close()
    res["jack_period_ms"] = round(server.period / server.rate * 1e3, 2)
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
