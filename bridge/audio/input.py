"""Audio input for the daemon: a sound-card stream (sounddevice) or a file played through the same path.

Both sources only fill a `Ring` of raw frames at the source's own rate and channel count. The audio
callback copies `indata` into the preallocated ring and counts status flags - nothing else, so the
real-time thread never allocates, logs or waits. Everything else happens on the daemon's worker
thread in `Converter`: mix to mono (or pick a channel), sanitise (NaN/inf -> 0, clip to +-1, remove a
DC offset), resample to the contract's 16 kHz with a streaming resampler.

A lost device (stream error, PortAudioError, the stream stopping on its own, e.g. the JACK server
dying) does not end the daemon: `DeviceSource.poll()` closes what is left, re-scans the devices and
reopens the same name with exponential backoff; the ring's positions simply continue.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from synthmatch.bridge.audio.ring import Ring
from synthmatch.bridge.core.errors import UsageError
from synthmatch.bridge.core.loader import within
from synthmatch.bridge.core.names import pick

log = logging.getLogger("synthmatch.bridge")

JACK_CLIENT_NAME = "synthmatch"  # under JACK the input ports are synthmatch:in_1, ...
RING_SECONDS = 4.0  # raw ring length; the worker drains it every millisecond or so


@dataclass
class InputSettings:
    source: str = ""  # device-name substring ("" = system default input) or "file:PATH"
    # 0 = mix all channels to mono; N = use channel N only (1-based)
    channel: int = field(default=0, metadata=within(0, 1024, note="0 mixes all channels, N >= 1 picks one"))
    # device rate in Hz; 0 = the device's default. Resampled to 16 kHz
    sample_rate: int = field(default=0, metadata=within(0, 768000, unit=" Hz", note="0 = the device's default"))
    # frames per callback (0 = let the driver choose); the raw ring holds RING_SECONDS, a block far less
    blocksize: int = field(default=256, metadata=within(0, 65536, unit=" frames", note="0 = the driver's choice"))
    latency: str = "low"  # PortAudio latency hint: "low", "high" or seconds as a string
    fast: bool = False  # file input: as fast as the daemon consumes it instead of real time
    loop: bool = False  # file input: start over at the end (soak tests, demos)
    # device lost: reconnect attempts back off up to this interval
    retry_max_s: float = field(default=5.0, metadata=within(0, 3600, low_open=True, unit=" s"))


def input_devices(sd) -> list[tuple[int, str, int, float]]:
    """(index, name, max input channels, default rate) of every device that can record."""
    out = []
    for i, d in enumerate(sd.query_devices()):
        if d["max_input_channels"] > 0:
            out.append((i, d["name"], int(d["max_input_channels"]), float(d["default_samplerate"])))
    return out


def find_device(sd, name: str) -> tuple[int, str, int, float]:
    """Input device by name ("" = the default input), picked by core.names.pick: an exact name wins, else
    a unique case-insensitive substring. Raises UsageError listing the candidates when none or several
    match."""
    devs = input_devices(sd)
    if not name:
        try:
            idx = sd.default.device[0]
        except (TypeError, IndexError):
            idx = -1
        for d in devs:
            if d[0] == idx:
                return d
        if devs:
            return devs[0]
        raise UsageError("input: no audio input device found; connect one (or start JACK) or use --input file:PATH")
    if name.strip().isdigit():  # an index, as `synthmatch devices` lists them
        for d in devs:
            if d[0] == int(name):
                return d
        if not any(name.strip() in d[1] for d in devs):
            listing = ", ".join(f"{d[0]} {d[1]!r}" for d in devs) or "none"
            raise UsageError(f"input: no input device has index {name.strip()}; inputs: {listing}")
    i = pick(
        [d[1] for d in devs],
        name,
        "input device",
        lambda msg: UsageError(f"input: {msg}"),
        labels=[f"{d[1]!r} ({d[2]} in)" for d in devs],
        hint="see `synthmatch devices`",
    )
    return devs[i]


class DeviceSource:
    """A sounddevice InputStream feeding a Ring; reopens the device by name when it is lost."""

    def __init__(self, settings: InputSettings):
        import sounddevice as sd

        from synthmatch.bridge.audio import portaudio

        self.sd = sd
        self.s = settings
        portaudio.name_jack_client(sd, JACK_CLIENT_NAME)  # also re-scans: sees a JACK server started late
        idx, name, max_ch, default_sr = find_device(sd, settings.source)
        if settings.channel > max_ch:
            raise UsageError(
                f"input.channel = {settings.channel}: device {name!r} has {max_ch} input channels; set "
                f"input.channel to 1..{max_ch}, or 0 to mix them all"
            )
        self.device_name = name
        self.name = f"device:{name}"
        self.channels = max_ch if settings.channel == 0 else settings.channel
        self.sample_rate = int(settings.sample_rate or default_sr)
        self.ring = Ring(int(self.sample_rate * RING_SECONDS), self.channels)
        self.eof = False  # a device never ends
        self.generation = 0  # bumped on every (re)open: the worker resets its resampler
        self.status_counts = {"input_overflow": 0, "input_underflow": 0, "other": 0}
        self.reconnects = 0
        self.device_lost = 0
        self._stream = None
        self._alive = [False]
        self._broken = [False]
        self._stopping = False
        self._next_try = 0.0
        self._backoff = 0.25
        self._idx = idx

    def _make_callback(self):
        """The real-time callback of one stream: copy in, count flags, nothing else. A stream that was
        abandoned (device lost) may still call it; its `alive` flag then ends that stream."""
        ring, counts, alive = self.ring, self.status_counts, [True]
        abort = self.sd.CallbackAbort

        def callback(indata, frames, _time_info, status) -> None:
            if not alive[0]:
                raise abort
            ring.write(indata)
            if status:
                if status.input_overflow:
                    counts["input_overflow"] += 1
                elif status.input_underflow:
                    counts["input_underflow"] += 1
                else:
                    counts["other"] += 1

        return callback, alive

    def _open(self, idx: int) -> None:
        latency = self.s.latency
        lat = float(latency) if latency not in ("low", "high") else latency
        callback, alive = self._make_callback()
        broken = [False]

        def finished() -> None:  # PortAudio thread: the stream stopped
            if not self._stopping:
                broken[0] = True

        stream = self.sd.InputStream(
            device=idx,
            channels=self.channels,
            samplerate=self.sample_rate,
            dtype="float32",
            blocksize=self.s.blocksize,
            latency=lat,
            callback=callback,
            finished_callback=finished,
        )
        stream.start()
        self._stream, self._alive, self._broken = stream, alive, broken
        self.generation += 1

    def start(self) -> None:
        from synthmatch.bridge.audio import portaudio

        portaudio.safe_exit(self.sd)
        try:
            self._open(self._idx)
        except self.sd.PortAudioError as e:
            raise UsageError(
                f"input: cannot open {self.device_name!r} at {self.sample_rate} Hz with "
                f"{self.channels} channel(s): {e}. Try input.sample_rate or input.channel"
            ) from None
        log.info(
            "input %s: %d Hz, %d channel(s), block %d",
            self.device_name,
            self.sample_rate,
            self.channels,
            self.s.blocksize,
        )

    @property
    def healthy(self) -> bool:
        st = self._stream
        return st is not None and not self._broken[0] and st.active

    def poll(self) -> None:
        """Worker thread, every loop: detect a lost stream and try to bring it back (with backoff)."""
        from synthmatch.bridge.audio import portaudio

        if self._stopping or self.healthy:
            return
        if self._stream is not None:
            # never touch a lost stream again: closing it can block forever (JACK server died)
            self.device_lost += 1
            log.warning(
                "input %s lost (%s); reconnecting",
                self.device_name,
                "stream finished" if self._broken[0] else "stream inactive",
            )
            self._alive[0] = False
            portaudio.abandon(self._stream)
            self._stream = None
            self._next_try = 0.0
            self._backoff = 0.25
        now = time.monotonic()
        if now < self._next_try:
            return
        try:
            portaudio.rescan(self.sd)
            idx = next((d[0] for d in input_devices(self.sd) if d[1] == self.device_name), None)
            if idx is None:
                raise LookupError("not present")
            self._open(idx)
            self.reconnects += 1
            log.warning("input %s back (reconnect %d)", self.device_name, self.reconnects)
        except (self.sd.PortAudioError, LookupError, OSError) as e:
            if self._stream is not None:
                portaudio.abandon(self._stream)
                self._stream = None
            self._next_try = time.monotonic() + self._backoff
            log.debug("input %s: retry in %.2f s (%s)", self.device_name, self._backoff, e)
            self._backoff = min(self._backoff * 2, self.s.retry_max_s)

    def stop(self) -> None:
        from synthmatch.bridge.audio import portaudio

        self._stopping = True
        st, self._stream = self._stream, None
        if st is None:
            return
        if st.active and not self._broken[0]:
            st.abort(ignore_errors=True)
            st.close(ignore_errors=True)
        else:
            self._alive[0] = False
            portaudio.abandon(st)


class FileSource:
    """Plays an audio file into a Ring block by block: at the file's real pace, or `fast`.

    fast writes whenever the ring has room for the next block, so nothing is dropped (latency figures
    then include queueing and mean little: measure them at the real pace).
    """

    def __init__(self, path: str, settings: InputSettings):
        import soundfile as sf

        from synthmatch.bridge.core.audiofile import AudioFileError, check_readable

        if _is_fifo(path):  # open() blocks until a writer opens the other end: say so first; no probing
            log.info("input: %s is a FIFO (named pipe); waiting for a program to write into it", path)
        else:  # (a probe's open and close of a FIFO would take and end the writer's only stream)
            try:
                check_readable(path)
            except AudioFileError as e:
                raise UsageError(f"input: {e}") from None
        try:
            self._f = sf.SoundFile(path)
        except (OSError, RuntimeError) as e:  # soundfile's LibsndfileError derives from RuntimeError
            raise UsageError(f"input: cannot read audio file {path!r} ({e}); give a wav/flac/ogg path") from None
        if settings.channel > self._f.channels:
            raise UsageError(f"input.channel = {settings.channel}: {path} has {self._f.channels} channel(s)")
        self.s = settings
        self.name = f"file:{path}"
        self.sample_rate = int(self._f.samplerate)
        self.channels = int(self._f.channels)
        self.block = settings.blocksize or 256
        self.ring = Ring(max(int(self.sample_rate * RING_SECONDS), 4 * self.block), self.channels)
        self.eof = False
        self.generation = 1
        self.status_counts = {"input_overflow": 0, "input_underflow": 0, "other": 0}
        self.reconnects = 0
        self.device_lost = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="synthmatch-file", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poll(self) -> None:
        pass

    def _run(self) -> None:
        buf = np.zeros((self.block, self.channels), dtype=np.float32)  # preallocated, like a driver's
        t0 = time.monotonic()
        pos = 0
        try:
            while not self._stop.is_set():
                if self.s.fast:
                    while self.ring.space() < self.block and not self._stop.is_set():
                        time.sleep(0.0005)
                else:
                    delay = t0 + pos / self.sample_rate - time.monotonic()
                    if delay > 0:
                        self._stop.wait(delay)
                n = self._f.read(self.block, dtype="float32", always_2d=True, out=buf)
                n = n.shape[0] if hasattr(n, "shape") else int(n)
                if n:
                    self.ring.write(buf[:n])
                    pos += n
                if n < self.block:
                    if not self.s.loop or pos == 0:
                        break
                    self._f.seek(0)
        finally:
            self.eof = True
            self._f.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)


def _is_fifo(path: str) -> bool:
    import os
    import stat

    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def open_source(settings: InputSettings):
    """The source named by settings.source: FileSource for "file:PATH", else a DeviceSource."""
    if settings.source.startswith("file:"):
        return FileSource(settings.source[5:], settings)
    return DeviceSource(settings)


class Converter:
    """Worker-side: raw (n, channels) frames at any rate -> sanitised mono float32 at the target rate.

    Sanitising is the identity on clean audio (finite, within +-1, no offset), so a file played through
    the daemon arrives sample-identical when its rate is already the target rate.
    """

    DC_TAU_S = 2.0  # time constant of the running DC estimate
    DC_TOLERANCE = 0.02  # offsets below this (-34 dBFS) are left alone: clean audio passes unchanged

    def __init__(self, in_rate: int, out_rate: int, channels: int, channel: int = 0):
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self.channels, self.channel = channels, channel
        self.nonfinite = 0  # samples that were NaN/inf
        self.clipped = 0  # samples beyond +-1
        self.dc = 0.0
        self.reset()

    def reset(self) -> None:
        self._rs = None
        if self.in_rate != self.out_rate:
            import soxr

            self._rs = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality="HQ")

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if raw.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        if self.channel:
            x = raw[:, self.channel - 1]
        elif raw.shape[1] == 1:
            x = raw[:, 0]
        else:
            x = raw.mean(axis=1, dtype=np.float32)
        x = np.ascontiguousarray(x, dtype=np.float32)
        bad = ~np.isfinite(x)
        if bad.any():
            self.nonfinite += int(bad.sum())
            x[bad] = 0.0
        if self._rs is not None:
            x = self._rs.resample_chunk(x)
        # DC: a slow running mean, subtracted only when it is a real offset (keeps clean audio exact)
        if x.size:
            a = 1.0 - np.exp(-x.size / (self.DC_TAU_S * self.out_rate))
            self.dc += a * (float(x.mean(dtype=np.float64)) - self.dc)
            if abs(self.dc) > self.DC_TOLERANCE:
                x = x - np.float32(self.dc)
        over = np.abs(x) > 1.0
        if over.any():
            self.clipped += int(over.sum())
            x = np.clip(x, -1.0, 1.0)
        return x
