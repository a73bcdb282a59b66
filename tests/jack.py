"""A real JACK server with the dummy driver for tests, plus real JACK MIDI peers (rtmidi, jack_midi_dump).

Fixtures (tests/bridge/conftest.py):
  jack          session-scoped running server; os.environ points every client at it for the session
                (JACK_DEFAULT_SERVER=<unique name>, JACK_NO_START_SERVER=1). Skips when jackd is absent.
  jack_server   function-scoped private server (os.environ switched to it for the test), which the test
                may kill()/restart(); stopped afterwards. Subprocess clients: env=server.env.

What clients see (measured with Debian jackd2 1.9.21, libportaudio2 19.6, python-rtmidi 1.5.8 wheel):
- PortAudio (sounddevice) lists the "JACK Audio Connection Kit" host API only if a server answered when
  PortAudio was initialised, i.e. at `import sounddevice`. A server started later is seen after
  `portaudio_rescan()` (sd._terminate(); sd._initialize()), which must not run while a stream is open.
- PortAudio aborts the process (pa_jack.c Terminate: Assertion `err == 0') when Pa_Terminate runs after
  its JACK server died - including sounddevice's atexit handler. A process whose PortAudio used JACK and
  whose server was killed must skip it: `atexit.unregister(sd._exit_handler)`; tests that kill jackd
  while PortAudio uses it belong in a subprocess (the daemon as `synthmatch run ...`), not in pytest's.
- python-rtmidi's wheel bundles libjack (1.9.22); it talks to the system jackd2 fine. Handling of its
  clients after a server death: bridge/outputs/midiports.py (retire()).
- jackd2 restarts under the same name after SIGKILL (stale /dev/shm entries are reused).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Callable

from synthmatch.bridge.outputs import midiports

JACK_TOOLS = ("jackd", "jack_lsp", "jack_connect", "jack_midi_dump")


def missing_tools() -> list[str]:
    return [t for t in JACK_TOOLS if shutil.which(t) is None]


NAME_POOL = 6  # server names a machine's test runs share (see claim_name)
REGISTRY = Path("/dev/shm/jack-shm-registry")


def claim_name(prefix: str = "synthmatch-test") -> tuple[str, IO]:
    """A server name from a fixed pool, held by an flock until the returned file is closed.

    jackd2 registers every server in /dev/shm/jack-shm-registry, which has 8 slots; a server that dies
    by SIGKILL (the kill tests, a test run killed by a timeout) keeps its slot until a server of the
    same name starts again. Unique names would leak a slot each time until no server can start ("Too
    many servers already active"); names from a small pool are reused, so their stale slots are
    reclaimed. The lock keeps concurrent test runs on one machine from sharing a name.
    """
    for k in range(NAME_POOL):
        lock = open(Path(tempfile.gettempdir()) / f"{prefix}-{k}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return f"{prefix}-{k}", lock
    raise JackError(f"all {NAME_POOL} JACK test server names ({prefix}-N) are held by other test runs")


class JackError(RuntimeError):
    pass


class JackXrun(JackError):
    """MIDI went missing while jackd reported an xrun (a client that had not finished its cycle).

    The test servers run without realtime scheduling (--no-realtime): on a loaded machine a client
    thread can be descheduled for longer than a period, and JACK drops the MIDI of the cycle it missed.
    That is the machine, not the code under test; jack-marked tests are re-run when it happens
    (tests/bridge/conftest.py). MIDI lost with no xrun in the log stays a plain failure.
    """


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies (killed by a timeout, crashed),
    so no orphaned jackd outlives it (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class JackServer:
    """jackd --no-realtime -d dummy under a private server name; start/stop/kill/restart, ports, connect."""

    TRY_S = 5.0  # one try of a command-line tool (jack_lsp, jack_connect), s

    # 1024 frames = 21 ms per cycle: a client must stall that long to miss one (an xrun loses that
    # cycle's MIDI); at 256 frames, under load, the test logs showed 10-30 xruns per run of the suite
    def __init__(self, name: str | None = None, rate: int = 48000, period: int = 1024, log: Path | None = None):
        """name=None claims one from the test pool (claim_name), released by close()."""
        self._name_lock: IO | None = None
        if name is None:
            name, self._name_lock = claim_name()
        self.name, self.rate, self.period = name, rate, period
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocess clients (jack_lsp, a daemon under test)."""
        return {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}

    def start(self, timeout: float = 10.0) -> None:
        if self.running():
            return
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            ["jackd", "--no-realtime", "-n", self.name, "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
            preexec_fn=_die_with_parent,
        )
        if self.log:
            out.close()
        deadline = time.monotonic() + timeout
        while not midiports.jack_server_alive(self.name):  # socket probe: silent, ~0.1 ms
            if self.proc.poll() is not None:
                tail = self._log_tail()
                hint = ""
                if "Too many servers" in tail:
                    hint = (
                        f"\njackd's registry ({REGISTRY}) is full of servers that died without "
                        "unregistering: with no jackd running (pgrep jackd), remove it "
                        f"(rm {REGISTRY}) and run again"
                    )
                raise JackError(f"jackd -n {self.name} exited with {self.proc.returncode}{hint}{tail}")
            if time.monotonic() > deadline:
                self.kill()
                raise JackError(f"jackd -n {self.name} did not come up within {timeout} s")
            time.sleep(0.01)
        # the socket accepts before the engine is fully registered: wait for the system ports
        while "system:capture_1" not in self.ports():
            if time.monotonic() > deadline:
                raise JackError(f"jackd -n {self.name} has no system ports after {timeout} s" + self._log_tail())
            time.sleep(0.05)
        self.starts += 1

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and bool(midiports.jack_server_alive(self.name))

    def stop(self, timeout: float = 5.0) -> None:
        """Clean shutdown (SIGTERM, SIGKILL after `timeout`)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Crash the server (SIGKILL): clients get no shutdown notice, its socket file stays behind."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None

    def restart(self, crash: bool = True, down_s: float = 0.0) -> None:
        """Kill (crash=True) or stop the server, stay down `down_s` seconds, start it again."""
        self.kill() if crash else self.stop()
        if down_s:
            time.sleep(down_s)
        self.start()

    def _run(self, *args: str, check: bool = True, timeout: float = 30.0) -> str:
        """Run a JACK command-line tool against this server.

        A tool can stall for seconds while the server handles another client's open or close (seen
        once in CI: jack_lsp blocked past 10 s), so each try is cut at TRY_S and retried until
        `timeout`; the queries are read-only and jack_connect is idempotent, so retrying is safe.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = subprocess.run(list(args), capture_output=True, text=True, env=self.env, timeout=self.TRY_S)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise JackError(f"{' '.join(args)} did not answer within {timeout} s" + self._log_tail()) from None
        if check and r.returncode != 0:
            raise JackError(f"{' '.join(args)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
        return r.stdout

    def log_mark(self) -> int:
        """Where the jackd log ends now (for xruns_since)."""
        return Path(self.log).stat().st_size if self.log and Path(self.log).exists() else 0

    def xruns_since(self, mark: int) -> list[str]:
        """The xrun lines jackd logged after `mark` ("JackEngine::XRun: client = X was not finished")."""
        if not self.log or not Path(self.log).exists():
            return []
        with open(self.log, "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        return [line for line in text.splitlines() if "XRun" in line or "not finished" in line]

    def missed(self, what: str, mark: int) -> JackError | TimeoutError:
        """The error for MIDI that did not arrive: JackXrun if jackd logged an xrun after `mark`."""
        xruns = self.xruns_since(mark)
        if xruns:
            return JackXrun(f"{what}; jackd reported xruns meanwhile:\n" + "\n".join(xruns[-10:]))
        return TimeoutError(what + self._log_tail())

    def wait_until(self, pred: Callable[[], bool], what: str, mark: int, timeout: float = 5.0) -> None:
        """Wait for pred() to hold (e.g. MIDI sent since `mark` arrived); else raise missed(what, mark)."""
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise self.missed(what, mark)
            time.sleep(0.01)

    def _log_tail(self, n: int = 20) -> str:
        if not self.log or not Path(self.log).exists():
            return ""
        lines = Path(self.log).read_text(errors="replace").splitlines()[-n:]
        return f"; jackd log ({self.log}):\n" + "\n".join(lines)

    def ports(self, midi: bool | None = None) -> list[str]:
        """Port names (jack_lsp); midi=True only MIDI ports, False only audio ports."""
        if midi is None:
            return self._run("jack_lsp", "-s", self.name, check=False).split("\n")[:-1]
        out = self._run("jack_lsp", "-s", self.name, "-t", check=False).split("\n")
        ports, kinds = out[0::2], out[1::2]
        return [p for p, k in zip(ports, kinds) if ("midi" in k) == midi]

    def connections(self) -> set[tuple[str, str]]:
        """(source, destination) pairs, each listed once."""
        pairs, port = set(), None
        for line in self._run("jack_lsp", "-s", self.name, "-c", check=False).split("\n"):
            if not line:
                continue
            if line.startswith((" ", "\t")):
                pairs.add(tuple(sorted((port, line.strip()))))
            else:
                port = line
        return pairs

    def connect(self, src: str, dst: str) -> None:
        self._run("jack_connect", "-s", self.name, src, dst)

    def settle(self, cycles: int = 3) -> None:
        """Wait a few process cycles: a new client, port or connection takes effect at a cycle boundary,
        and MIDI sent before that goes nowhere."""
        time.sleep(cycles * self.period / self.rate)

    def wait_for_port(self, name: str, timeout: float = 15.0, present: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while (name in self.ports()) != present:
            if time.monotonic() > deadline:
                raise JackError(
                    f"port {name} {'never appeared' if present else 'did not go away'}; "
                    f"ports: {self.ports()}" + self._log_tail()
                )
            time.sleep(0.05)  # each poll is a client open/close on the server: keep them sparse

    def close(self) -> None:
        """Stop the server and give its pool name back."""
        self.stop()
        if self._name_lock is not None:
            self._name_lock.close()
            self._name_lock = None

    def __enter__(self) -> "JackServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def portaudio_rescan() -> None:
    """Make sounddevice/PortAudio enumerate again (e.g. see a JACK server started after import).

    Only with no stream open. Safe only while PortAudio's previous JACK server (if any) is alive.
    """
    import sounddevice as sd

    sd._terminate()
    sd._initialize()


_DUMP_LINE = re.compile(r"^\s*(\d+):((?: [0-9a-f]{2})+)(?= |$)")  # "frame: xx xx xx", whole hex tokens


class _Collector:
    """Raw MIDI messages gathered by a receiver thread; `port` names the receiving JACK port."""

    port: str

    def __init__(self, server: JackServer) -> None:
        self.server = server
        self.messages: list[bytes] = []
        self._lock = threading.Lock()
        self._log_mark = server.log_mark()

    def _add(self, message: bytes) -> None:
        with self._lock:
            self.messages.append(message)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[bytes]:
        """The first `n` messages (raises after `timeout` with what arrived)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.messages) >= n:
                    return list(self.messages[:n])
                got = list(self.messages)
            if time.monotonic() > deadline:
                raise self.server.missed(f"{self.port}: {len(got)} of {n} MIDI messages: {got}", self._log_mark)
            time.sleep(0.01)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()


class MidiDump(_Collector):
    """`jack_midi_dump -a CLIENT` as a subprocess: its input port is "<client>:input".

    Lines look like "  16128: b0 0e 40 control change (channel  0): ..."; `messages` holds the raw bytes of
    each event, in arrival order, and `stamps` beside each (the wall time its line was read, s; its JACK
    frame: absolute with -a).
    """

    def __init__(self, server: JackServer, client: str = "dump"):
        super().__init__(server)
        self.client, self.port = client, f"{client}:input"
        self.stamps: list[tuple[float, int]] = []
        cmd = ["jack_midi_dump", "-a", client]
        if shutil.which("stdbuf"):
            cmd = ["stdbuf", "-oL"] + cmd  # line-buffer its stdout so events arrive as they happen
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=server.env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        server.wait_for_port(self.port)

    def _read(self) -> None:
        for line in self.proc.stdout:
            m = _DUMP_LINE.match(line)
            if m:
                with self._lock:
                    self.stamps.append((time.time(), int(m.group(1))))
                self._add(bytes.fromhex(m.group(2)))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)

    def __enter__(self) -> "MidiDump":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MidiReceiver(_Collector):
    """An rtmidi JACK input in this process, virtual port "<client>:<port>"; collects raw messages."""

    def __init__(self, server: JackServer, client: str = "receiver", port: str = "in"):
        import rtmidi

        super().__init__(server)
        self.port = f"{client}:{port}"
        self._rt = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, client)
        self._rt.ignore_types(sysex=False, timing=True, active_sense=True)
        self._rt.open_virtual_port(port)
        self._start_generation = server.starts
        # polled, not a callback: RtMidi calls callbacks from the JACK process thread, which would then
        # wait for pytest's GIL, miss its cycle and lose the events of that cycle (seen under CPU load)
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.wait(0.002):
            while (m := self._rt.get_message()) is not None:
                self._add(bytes(m[0]))

    def close(self) -> None:
        if self._rt is None:
            return
        self._stop.set()
        self._reader.join(1)
        # a server restarted since we opened means our client is dead: never touch it again
        dead = self.server.starts != self._start_generation or not self.server.running()
        midiports.retire(self._rt, server_dead=dead)
        self._rt = None

    def __enter__(self) -> "MidiReceiver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
