"""Real receivers for the output profiles: amsynth and ZynAddSubFX headless on a JACK test server, their
audio recorded with jack_rec, and what the recording says the synth played, in the contract's units.

    with Amsynth(server, tmp_path, waveform="saw") as am:          # a patch of the laws' assumptions
        take = am.play(values, seconds=1.5)                          # values through the amsynth profile
        landed_attack_s(take.audio, take.rate)

Measures (numpy only, no scipy):
  landed_attack_s   the envelope's 10 % -> 90 % rise / 0.8: the contract's attack is a linear ramp to
                    the peak, whose 10-90 % rise is 0.8 of its length
  landed_filter     the contract's ladder lowpass (cutoff Hz, resonance 0..1) closest, in dB, to the
                    recorded spectrum of white noise through the synth's filter (bridge/match/synth.py
                    has the ladder: H(s) = (1 + k) / ((1 + s / wc)^4 + k), k = 3.5 x)
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.outputs import midiports, profile
from synthmatch.bridge.outputs.base import Update
from synthmatch.bridge.outputs.config import MidiSinkConfig, OscSinkConfig
from synthmatch.bridge.outputs.midi import MidiCCSink
from synthmatch.bridge.outputs.osc import OscSink
from tests.jack import JackServer, missing_tools

C = contract_mod.default()
LADDER_MAX_FEEDBACK = 3.5  # the contract's filter1 resonance 1.0 (bridge/match/synth.py)
NOTE = 60


def missing(synth: str) -> list[str]:
    """What is absent for a test with `synth` (a binary name), [] when it can run."""
    gone = missing_tools()
    for tool in (synth, "jack_rec"):
        if shutil.which(tool) is None:
            gone.append(tool)
    return gone


def physical(name: str, v: float) -> float:
    return C.param(name).to_physical(v)


def values(**physical_values: float) -> list[float]:
    """16 normalised values: the contract's middle, with the named parameters at the physical values
    given (seconds, Hz, 0..1)."""
    out = [0.5] * len(C.names)
    for name, x in physical_values.items():
        out[C.names.index(name)] = C.param(name).to_normalised(x)
    return out


@dataclass
class Take:
    audio: np.ndarray  # mono float64, the recording from before the note-on
    rate: int


def record(server: JackServer, port: str, seconds: float, path: Path) -> subprocess.Popen:
    """jack_rec of one port for `seconds`, running once this returns (its port connected)."""
    rec = subprocess.Popen(
        ["jack_rec", "-f", str(path), "-d", f"{seconds:g}", "-b", "24", port],
        env=server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server.wait_for_port("jackrec:input1")
    server.settle()
    return rec


def read_take(rec: subprocess.Popen, path: Path, timeout: float = 15.0) -> Take:
    import soundfile as sf

    rec.wait(timeout=timeout)
    audio, rate = sf.read(str(path), dtype="float64", always_2d=True)
    return Take(audio[:, 0], int(rate))


class _Synth:
    """A synth as a subprocess on `server`; stopped on exit."""

    client = ""
    midi_in = ""
    audio_out = ""

    def __init__(self, server: JackServer, tmp: Path):
        self.server, self.tmp = server, Path(tmp)
        self.proc: subprocess.Popen | None = None
        self.log = self.tmp / f"{self.client}.log"
        self._notes = None  # rtmidi out (notes for synths whose values go by OSC)
        self.takes = 0

    def _start(self, cmd: list[str], env: dict[str, str]) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp)
        try:
            for port in (self.midi_in, self.audio_out):
                self.server.wait_for_port(port, timeout=20)
        except Exception as e:
            raise RuntimeError(f"{cmd[0]} did not come up: {e}; its log:\n{self.log.read_text()[-2000:]}") from e

    def close(self) -> None:
        if self._notes is not None:
            midiports.retire(self._notes, server_dead=not self.server.running())
            self._notes = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.server.running():  # a synth started next under the same name must not find these
                self.server.wait_for_port(self.audio_out, present=False)
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _rec_path(self) -> Path:
        self.takes += 1
        return self.tmp / f"{self.client}-{self.takes}.wav"

    def note_port(self):
        """A plain rtmidi JACK output connected to the synth's MIDI input (for note on/off)."""
        if self._notes is None:
            out = midiports.new_client("out", "jack", f"{self.client}-notes")
            out.open_virtual_port("notes")
            self.server.wait_for_port(f"{self.client}-notes:notes")
            self.server.connect(f"{self.client}-notes:notes", self.midi_in)
            self.server.settle()
            self._notes = out
        return self._notes


class Amsynth(_Synth):
    """amsynth 1.13 (-x: no GUI) with JACK audio and MIDI, its own HOME (config, controllers file, bank).

    The bank's one preset is what configs/synths/amsynth.toml assumes: oscillator 1 only (osc_mix -1),
    filter key track, filter velocity sensitivity and filter envelope amount 0, no LFO, no reverb;
    `waveform` saw (the attack) or noise (the filter: white noise shows the filter's response)."""

    client = "amsm"
    midi_in = "amsm:midi_in"
    audio_out = "amsm:L out"
    WAVEFORMS = {"sine": 0, "pulse": 1, "saw": 2, "noise": 3}
    CONTROLLERS = {1: "freq_mod_amount", 7: "master_vol", 71: "filter_resonance", 72: "amp_release"}
    CONTROLLERS.update({73: "amp_attack", 74: "filter_cutoff", 75: "amp_decay", 91: "reverb_wet"})

    def __init__(self, server: JackServer, tmp: Path, waveform: str = "saw", sustain: float = 0.35):
        super().__init__(server, tmp)
        home = self.tmp / "amsynth-home"
        config = home / ".config" / "amsynth"
        config.mkdir(parents=True, exist_ok=True)
        (home / ".local" / "share").mkdir(parents=True, exist_ok=True)
        # amsynth 1.13 reads its MIDI map from $XDG_CONFIG_HOME/amsynth/controllers: line n = CC n
        (config / "controllers").write_text("".join(self.CONTROLLERS.get(i, "null") + "\n" for i in range(128)))
        patch = {
            "amp_attack": 0.0,
            "amp_decay": 0.0,
            "amp_sustain": sustain,
            "amp_release": 0.1,
            "osc1_waveform": self.WAVEFORMS[waveform],
            "osc_mix": -1.0,
            "osc_mix_mode": 0.0,
            "filter_type": 0.0,  # lowpass
            "filter_slope": 1.0,  # 24 dB/octave
            "filter_cutoff": 1.5,
            "filter_resonance": 0.0,
            "filter_env_amount": 0.0,
            "filter_kbd_track": 0.0,
            "filter_vel_sens": 0.0,
            "amp_vel_sens": 0.0,
            "filter_mod_amount": -1.0,  # the LFO's share: (x + 1) / 2 = 0
            "amp_mod_amount": -1.0,
            "freq_mod_amount": 0.0,
            "reverb_wet": 0.0,
            "distortion_crunch": 0.0,
            "master_vol": 0.5,
            "portamento_time": 0.0,
            "keyboard_mode": 0.0,
        }
        bank = self.tmp / "synthmatch.amSynth.bank"
        bank.write_text(
            "amSynth\n<preset> <name> synthmatch\n" + "".join(f"<parameter> {k} {v:g}\n" for k, v in patch.items())
        )
        env = {**self.server.env, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
        env["XDG_DATA_HOME"] = str(home / ".local" / "share")
        self._start(
            ["amsynth", "-x", "-a", "jack", "-m", "jack", "-n", self.client, "--jack_autoconnect=false"]
            + ["-b", str(bank), "-P", "0", "-r", str(server.rate)],
            env,
        )
        self.profile = profile.load("amsynth", C)
        cfg = MidiSinkConfig(enabled=True, virtual="out", api="jack", client_name="amsm-bridge", notes=True)
        self.sink = MidiCCSink(cfg, C, profile=self.profile)
        self.server.wait_for_port("amsm-bridge:out")
        self.server.connect("amsm-bridge:out", self.midi_in)
        self.server.settle()

    def play(self, vals: list[float], seconds: float = 1.5, hold_s: float = 1.2) -> Take:
        """Send the values through the profile (MIDI CC), record, play note 60 for `hold_s`. A silent take
        is played once more: on a loaded CI machine amsynth once missed the note entirely (a harness
        fault; a profile that sends wrong values still plays, and is measured on the second take)."""
        take = self._play(vals, seconds, hold_s)
        if envelope(take.audio, take.rate).max() > 1e-4:
            return take
        self.server.settle(cycles=20)
        return self._play(vals, seconds, hold_s)

    def _play(self, vals: list[float], seconds: float, hold_s: float) -> Take:
        self.sink.send(Update(vals))
        self.server.settle()
        path = self._rec_path()
        rec = record(self.server, self.audio_out, seconds, path)
        self.sink.send(Update(vals, note=NOTE, new_note=True))
        time.sleep(hold_s)
        self.sink.send(Update(vals, note_off=True))
        return read_take(rec, path)

    def close(self) -> None:
        sink = getattr(self, "sink", None)
        if sink is not None:
            sink.close()
        super().close()


class Zyn(_Synth):
    """ZynAddSubFX 3.0 (-U: no GUI) with JACK audio and MIDI, OSC on `port`; part 0's ADsynth voice is
    set to white noise (`noise=True`, for the filter) or left as its default sine (the envelope)."""

    client = "zynaddsubfx"
    midi_in = "zynaddsubfx:midi_input"
    audio_out = "zynaddsubfx:out_1"

    def __init__(self, server: JackServer, tmp: Path, noise: bool = False):
        super().__init__(server, tmp)
        self.port = _free_udp_port()
        env = {**self.server.env, "HOME": str(self.tmp)}
        self._start(
            ["zynaddsubfx", "-U", "-I", "jack", "-O", "jack", "-P", str(self.port), "-r", str(server.rate)], env
        )
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.profile = profile.load("zynaddsubfx", C)
        self.sink = OscSink(OscSinkConfig(enabled=True, port=self.port), C, profile=self.profile)
        self.wait_ready()
        if noise:
            self.send("/part0/kit0/adpars/VoicePar0/Type", "i", 1)  # white noise
        self.send("/part0/kit0/adpars/GlobalPar/PAmpVelocityScaleFunction", "i", 0)  # velocity off
        self.query("/part0/kit0/adpars/VoicePar0/Type")  # a round trip: what came before is applied

    def send(self, address: str, tag: str, value) -> None:
        self.sock.sendto(osc_message(address, tag, value), ("127.0.0.1", self.port))

    def query(self, address: str, timeout: float = 5.0):
        """zyn's reply to a parameter address without arguments: its current value."""
        self.sock.setblocking(False)
        try:
            while self.sock.recv(65536):  # earlier answers still queued
                pass
        except BlockingIOError:
            pass
        self.sock.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.sendto(osc_message(address), ("127.0.0.1", self.port))
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    continue
                got = parse_osc(data)
                if got is not None and got[0] == address:
                    return got[1]
        raise TimeoutError(f"zynaddsubfx did not answer {address} within {timeout} s; log:\n{self._log_tail()}")

    def wait_ready(self) -> None:
        self.query("/part0/kit0/adpars/GlobalPar/GlobalFilter/basefreq", timeout=20)

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def play(self, vals: list[float], seconds: float = 1.5, hold_s: float = 1.2) -> Take:
        """Send the values through the profile (OSC), record, play note 60 for `hold_s` (MIDI)."""
        self.sink.send(Update(vals))
        self.query("/part0/kit0/adpars/GlobalPar/AmpEnvelope/A_dt")  # applied before the note
        notes = self.note_port()
        path = self._rec_path()
        rec = record(self.server, self.audio_out, seconds, path)
        notes.send_message([0x90, NOTE, 100])
        time.sleep(hold_s)
        notes.send_message([0x80, NOTE, 0])
        return read_take(rec, path)

    def close(self) -> None:
        sink = getattr(self, "sink", None)
        if sink is not None:
            sink.close()
        if getattr(self, "sock", None) is not None:
            self.sock.close()
        super().close()


def _free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- OSC, the little a query needs ------------------------------------------------------------------


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (4 - len(b) % 4)


def osc_message(address: str, tag: str = "", value=None) -> bytes:
    out = _pad(address.encode()) + _pad(("," + tag).encode())
    if tag == "i":
        out += struct.pack(">i", int(value))
    elif tag == "f":
        out += struct.pack(">f", float(value))
    return out


def parse_osc(data: bytes):
    """(address, first argument) of a plain message with an i / f / T / F argument; None otherwise."""
    if data.startswith(b"#bundle"):
        return None
    end = data.index(b"\0")
    address = data[:end].decode(errors="replace")
    pos = (end // 4 + 1) * 4
    tend = data.index(b"\0", pos)
    tags = data[pos + 1 : tend].decode(errors="replace")
    pos = (tend // 4 + 1) * 4
    if not tags:
        return address, None
    if tags[0] == "i":
        return address, struct.unpack(">i", data[pos : pos + 4])[0]
    if tags[0] == "f":
        return address, struct.unpack(">f", data[pos : pos + 4])[0]
    return address, {"T": True, "F": False}.get(tags[0])


# -- what the recording says ------------------------------------------------------------------------


def envelope(x: np.ndarray, rate: int, win_s: float = 0.004) -> np.ndarray:
    """The peak |x| over a sliding window of `win_s` (one period of C4 is 3.8 ms), per sample."""
    w = max(1, int(win_s * rate))
    a = np.abs(x)
    pad = np.concatenate([a, np.zeros(w)])
    # sliding max via a strided view (w is small)
    view = np.lib.stride_tricks.sliding_window_view(pad, w)[: len(a)]
    return view.max(axis=1)


def landed_attack_s(x: np.ndarray, rate: int) -> float:
    """The attack the recording shows, as the contract's linear ramp: (t90 - t10) / 0.8, t10 and t90
    where the envelope first reaches 10 % and 90 % of its peak."""
    env = envelope(x, rate)
    peak = float(env.max())
    if peak <= 1e-4:
        raise AssertionError("the synth played nothing")
    t10 = int(np.argmax(env >= 0.1 * peak))
    t90 = int(np.argmax(env >= 0.9 * peak))
    return (t90 - t10) / rate / 0.8


def spectrum_db(x: np.ndarray, rate: int, nfft: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies Hz, power dB): the per-bin median of Hann-windowed periodograms, half overlap (Welch's
    method with a median: a frame hit by a dropout or click on a loaded JACK server moves the mean of every
    bin but not the median; the median's constant -1.6 dB bias is a gain, which every fit here ignores)."""
    win = np.hanning(nfft)
    frames = [x[i : i + nfft] * win for i in range(0, len(x) - nfft + 1, nfft // 2)]
    if not frames:
        raise AssertionError(f"recording too short for a spectrum: {len(x)} samples")
    p = np.median([np.abs(np.fft.rfft(f)) ** 2 for f in frames], axis=0)
    return np.fft.rfftfreq(nfft, 1.0 / rate), 10 * np.log10(p + 1e-30)


def ladder_db(f: np.ndarray, cutoff: float, res: float) -> np.ndarray:
    k = LADDER_MAX_FEEDBACK * res
    s = 1j * f / cutoff
    return 20 * np.log10(np.abs((1 + k) / ((1 + s) ** 4 + k)))


def sustained(x: np.ndarray, rate: int, start_s: float, stop_s: float) -> np.ndarray:
    """The part of a take between `start_s` and `stop_s` after the note began (first sound)."""
    on = int(np.argmax(np.abs(x) > 1e-4 * max(1e-9, np.abs(x).max())))
    return x[on + int(start_s * rate) : on + int(stop_s * rate)]


def landed_filter(x: np.ndarray, rate: int) -> tuple[float, float]:
    """(cutoff Hz, resonance 0..1) of the contract ladder closest to the recorded spectrum of filtered
    white noise (`fit_ladder`), averaged over 200 log-spaced bands from 30 Hz to the contract's Nyquist
    (8 kHz: what the model hears; above it a synth's bilinear filter falls faster than the analog ladder,
    towards its own Nyquist, which would pull a fitted cutoff of 5 kHz down by 20 %)."""
    top = min(0.45 * rate, C.audio.sample_rate / 2)
    f, p = spectrum_db(x, rate)
    band = (f >= 30) & (f <= top)
    f, p = f[band], p[band]
    idx = np.digitize(f, np.geomspace(30, top, 200))
    groups = [idx == i for i in np.unique(idx)]
    fs = np.array([f[g].mean() for g in groups])
    ps = np.array([10 * np.log10(np.mean(10 ** (p[g] / 10))) for g in groups])
    return fit_ladder(fs, ps, hi=top)


def fit_ladder(f: np.ndarray, p_db: np.ndarray, floor_db: float = 45.0, hi: float = 21600.0) -> tuple[float, float]:
    """The contract ladder (cutoff, resonance) whose response, up to a gain, is closest in dB to p_db at
    f (least squares over the frequencies where the ladder is within `floor_db` of its DC gain: the
    noise floor of a recording stays out). Grid: resonance by 0.01, cutoff by 1/48 octave."""
    cutoffs = np.geomspace(20, hi, int(48 * np.log2(hi / 20)))
    best = (np.inf, 0.0, 0.0)
    for res in np.arange(0.0, 1.0001, 0.01):
        m = ladder_db(f[None, :], cutoffs[:, None], res)  # (cutoffs, f)
        keep = m > -floor_db
        n = keep.sum(axis=1)
        d = np.where(keep, p_db[None, :] - m, 0.0)
        mean = d.sum(axis=1) / np.maximum(n, 1)
        err = np.where(keep, (d - mean[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(n, 1)
        err[n < 8] = np.inf
        i = int(np.argmin(err))
        if err[i] < best[0]:
            best = (float(err[i]), float(cutoffs[i]), float(res))
    return best[1], best[2]


def centroid_hz(x: np.ndarray, rate: int) -> float:
    """The spectral centroid of a take (power-weighted mean frequency)."""
    f, p = spectrum_db(x, rate)
    w = 10 ** (p / 10)
    return float((f * w).sum() / w.sum())
