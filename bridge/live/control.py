"""Remote control of the daemon: an OSC server (here) and a MIDI footswitch (footswitch.py), both feeding
one bounded queue.

Neither touches daemon state: they turn incoming messages into `ControlCommand`s in a `CommandQueue`
that the daemon drains from its own loop. Malformed input (unknown address, wrong argument count or
types, datagrams that are not OSC: bad sizes or alignment, bundles nested deeper than MAX_DEPTH,
addresses or strings that are not UTF-8) is ignored with a rate-limited warning and counted in
`ControlServer.stats` (the daemon reports them under "control" in /synthmatch/status).

No flood of datagrams can flood the log: warnings (malformed input, a full queue) go through
core.ratelimit with a count of those suppressed; while the server runs, the lines commands cause in the
daemon's log (one per command: "values frozen", "mode a -> b", ...) are summarised by a
ratelimit.SummaryFilter on its logger (a burst, then one per SUMMARY_S carrying the count), and the
server logs its own traffic as one line per SUMMARY_S in which commands came.

OSC addresses (UDP, bound to 127.0.0.1 by default):
  /synthmatch/trigger            no args, or one number (non-zero fires; 0 = a button's release, ignored)
  /synthmatch/freeze  1|0        int, float or OSC true/false: hold the current values / release
  /synthmatch/mode    s          "trigger" | "continuous" | "manual" (checked against `modes`)
  /synthmatch/status             reply to the sender's address and port: /synthmatch/status <JSON string>
The reply comes from `status` (a callable the daemon passes, returning a JSON-able dict, called on the
server thread, so it must only read); without one, status requests are queued (reply_to set) and the
daemon answers with `ControlServer.send_status`.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import math
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from synthmatch.bridge.core.ratelimit import LimitedLog, RateLimiter, SummaryFilter, suppressed_note
from synthmatch.bridge.live.oscdecode import MAX_DATAGRAM, OscError, decode

log = logging.getLogger("synthmatch.control")

LOG_CHARS = 300  # a warning about a datagram shows at most this much of it
SUMMARY_S = 10.0  # a flood's lines are summarised once per this many seconds
QUIET = ("synthmatch.bridge",)  # loggers that write a line per command (the daemon's apply)

PREFIX = "/synthmatch"
KINDS = ("trigger", "freeze", "mode", "status")


@dataclass(frozen=True)
class ControlCommand:
    kind: str  # one of KINDS
    value: bool | str | None = None  # freeze: bool; mode: the mode name; else None
    source: str = "osc"  # "osc" | "midi"
    reply_to: tuple[str, int] | None = None  # status without a provider: where to send the reply
    t: float = field(default_factory=time.monotonic)  # when it arrived (time.monotonic() s)


@dataclass
class ControlStats:
    received: int = 0  # datagrams / MIDI messages seen
    accepted: int = 0  # commands queued (or status answered)
    malformed: int = 0  # wrong args, not OSC (bad sizes, alignment, nesting, UTF-8), unknown address
    dropped: int = 0  # queue full, or status requests beyond STATUS_MAX_HZ
    errors: int = 0  # handling a datagram raised (a bug; the server goes on)
    replies: int = 0  # status replies sent


class CommandQueue:
    """Bounded FIFO of ControlCommands; when full, new commands are dropped (and counted), never block."""

    def __init__(self, maxsize: int = 64):
        self._q: queue.Queue[ControlCommand] = queue.Queue(maxsize)
        self.dropped = 0
        self._full_log = LimitedLog(log, burst=3, per_s=1.0 / SUMMARY_S)

    def put(self, cmd: ControlCommand) -> bool:
        try:
            self._q.put_nowait(cmd)
            return True
        except queue.Full:
            self.dropped += 1
            self._full_log.warning("control queue full (%d): dropped %s", self._q.maxsize, cmd.kind)
            return False

    def get(self, timeout: float | None = None) -> ControlCommand | None:
        """The next command, waiting up to `timeout` s (None: do not wait); None if there is none."""
        try:
            return self._q.get(timeout=timeout) if timeout else self._q.get_nowait()
        except queue.Empty:
            return None

    def drain(self) -> list[ControlCommand]:
        out = []
        while (cmd := self.get()) is not None:
            out.append(cmd)
        return out

    def __len__(self) -> int:
        return self._q.qsize()


def _truthy(arg: Any) -> bool | None:
    """OSC 1/0, 1.0/0.0, T/F -> bool; anything else (NaN and infinities included) None (malformed)."""
    if isinstance(arg, bool):
        return arg
    if isinstance(arg, (int, float)) and math.isfinite(arg):
        return arg != 0
    return None


class ControlServer:
    """OSC control server on its own thread. `address` is the bound (host, port) (port 0 -> any free).

    The thread reads one datagram at a time from a socket with a timeout, so close() never waits on
    more than one poll interval; every datagram is decoded by `decode` (bounded) and any error in
    handling it is counted, never raised. Warnings about bad input are rate-limited (LOG_BURST, then
    one a second with the number suppressed) so a flood cannot fill the log. quiet: loggers whose
    per-command lines are summarised while the server runs (default QUIET, the daemon's).
    """

    POLL_S = 0.1  # socket timeout: how often the thread checks for close()
    LOG_BURST = 10  # malformed-input warnings logged in a row before rate limiting
    STATUS_MAX_HZ = 50.0  # status replies per second at most; requests beyond are dropped (counted)

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9001,
        commands: CommandQueue | None = None,
        status: Callable[[], dict] | None = None,
        modes: Sequence[str] | None = None,
        quiet: Sequence[str] = QUIET,
    ):
        self.commands = commands if commands is not None else CommandQueue()
        self.status, self.modes = status, tuple(modes) if modes else None
        self.stats = ControlStats()
        self._limiter = RateLimiter(self.LOG_BURST, 1.0)
        self._quiet = tuple(quiet)
        self._summary = SummaryFilter(burst=3, interval_s=SUMMARY_S)
        self._told = ControlStats()  # stats as of the last traffic summary
        self._told_t = time.monotonic()
        self._status_t = -math.inf
        try:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        except OSError as e:
            from synthmatch.bridge.core.errors import UsageError

            raise UsageError(
                f"control server: cannot create a UDP socket ({e}); set control.enabled = false "
                "to run without remote control"
            ) from None
        try:
            self._sock.bind((host, port))
        except (OSError, OverflowError) as e:
            self._sock.close()
            raise _listen_error(host, port, e) from None
        self._sock.settimeout(self.POLL_S)
        self.address: tuple[str, int] = self._sock.getsockname()[:2]
        if not ipaddress.ip_address(self.address[0]).is_loopback:
            log.warning(
                "control: listening on %s: any machine that reaches this one can trigger, freeze and "
                'switch the daemon; set control.host = "127.0.0.1" unless that is intended',
                self.address[0],
            )
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def _serve(self) -> None:
        """The server thread: one datagram at a time until close()."""
        while not self._closed.is_set():
            try:
                data, sender = self._sock.recvfrom(65536)
            except socket.timeout:
                self._traffic()
                continue
            except OSError:  # socket closed under us (close()), or an ICMP error from a reply
                if self._closed.wait(0.01):
                    return
                continue
            self._traffic()
            try:
                self.handle_datagram(data, sender)
            except Exception as e:  # noqa: BLE001 - the server must survive any datagram
                self.stats.errors += 1
                self._warn(f"control: error handling a datagram from {sender[0]}:{sender[1]}: {type(e).__name__}: {e}")

    def handle_datagram(self, data: bytes, sender: tuple[str, int]) -> None:
        """Decode one datagram and act on each message in it (malformed: counted and logged)."""
        self.stats.received += 1
        if len(data) > MAX_DATAGRAM:
            return self._malformed(sender, f"{len(data)} bytes: larger than {MAX_DATAGRAM}")
        try:
            messages = decode(data)
        except OscError as e:
            return self._malformed(sender, f"not an OSC message or bundle ({e})")
        for address, args in messages:
            self._handle(address, args, sender)

    def _warn(self, text: str) -> None:
        """log.warning, at most LOG_BURST in a row, then one a second (saying how many were suppressed).
        Text from the network is shown escaped and cut (no forged log lines, no 8 kB addresses)."""
        text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text[:LOG_CHARS])
        ok, suppressed = self._limiter.allow()
        if ok:
            log.warning("%s%s", text, suppressed_note(suppressed))

    def _traffic(self, final: bool = False) -> None:
        """Every SUMMARY_S (and at close), one INFO line of the commands and datagrams since the last,
        if more came than a person sends by hand (a burst of the summary filter)."""
        now = time.monotonic()
        if not final and now - self._told_t < SUMMARY_S:
            return
        s, t = self.stats, self._told
        received = s.received - t.received
        if received > self._summary.burst:
            log.info(
                "control: %d datagrams in %.0f s: %d commands taken, %d dropped, %d malformed",
                received,
                now - self._told_t,
                s.accepted - t.accepted,
                s.dropped - t.dropped,
                s.malformed - t.malformed,
            )
        self._told = ControlStats(**vars(s))
        self._told_t = now

    def _malformed(self, sender, why: str) -> None:
        self.stats.malformed += 1
        self._warn(f"control: ignored message from {sender[0]}:{sender[1]}: {why}")

    def _queue(self, cmd: ControlCommand) -> None:
        if self.commands.put(cmd):
            self.stats.accepted += 1
        else:
            self.stats.dropped += 1

    def _handle(self, address: str, args: list, sender: tuple[str, int]) -> None:
        kind = address[len(PREFIX) + 1 :] if address.startswith(PREFIX + "/") else None
        if kind not in KINDS:
            return self._malformed(
                sender, f"unknown address {address} (known: {', '.join(f'{PREFIX}/{k}' for k in KINDS)})"
            )
        if kind == "trigger":
            if len(args) > 1 or (args and _truthy(args[0]) is None):
                return self._malformed(sender, f"{address} takes no argument or one number, got {args!r}")
            if args and not _truthy(args[0]):
                return  # button release
            return self._queue(ControlCommand("trigger"))
        if kind == "freeze":
            on = _truthy(args[0]) if len(args) == 1 else None
            if on is None:
                return self._malformed(sender, f"{address} takes one 1/0 argument, got {args!r}")
            return self._queue(ControlCommand("freeze", on))
        if kind == "mode":
            if len(args) != 1 or not isinstance(args[0], str):
                return self._malformed(sender, f"{address} takes one string, got {args!r}")
            if self.modes and args[0] not in self.modes:
                return self._malformed(sender, f"{address} {args[0]!r}: modes are {', '.join(self.modes)}")
            return self._queue(ControlCommand("mode", args[0]))
        # status
        if args:
            return self._malformed(sender, f"{address} takes no arguments, got {args!r}")
        now = time.monotonic()
        if now - self._status_t < 1.0 / self.STATUS_MAX_HZ:  # a flood of requests: answer some, count the rest
            self.stats.dropped += 1
            return
        self._status_t = now
        if self.status is None:
            return self._queue(ControlCommand("status", reply_to=(sender[0], sender[1])))
        self.stats.accepted += 1
        self.send_status((sender[0], sender[1]), self.status())

    def send_status(self, reply_to: tuple[str, int], status: dict) -> None:
        """Send /synthmatch/status <JSON string> to reply_to from the server's own socket."""
        from pythonosc.osc_message_builder import OscMessageBuilder

        msg = OscMessageBuilder(f"{PREFIX}/status")
        msg.add_arg(json.dumps(status, default=str), OscMessageBuilder.ARG_TYPE_STRING)
        try:
            self._sock.sendto(msg.build().dgram, reply_to)
            self.stats.replies += 1
        except OSError as e:
            self._warn(f"control: status reply to {reply_to} failed: {e}")

    def start(self) -> "ControlServer":
        for name in self._quiet:
            logging.getLogger(name).addFilter(self._summary)
        self._thread = threading.Thread(target=self._serve, name="synthmatch-control", daemon=True)
        self._thread.start()
        log.info("control: OSC on %s:%d", *self.address)
        return self

    def close(self) -> None:
        """Stop the thread (it notices within POLL_S; a daemon thread, never waited on longer) and
        release the port. Idempotent."""
        self._closed.set()
        if self._thread is not None:
            self._thread.join(2 * self.POLL_S + 0.5)
            self._thread = None
            self._traffic(final=True)
            for name in self._quiet:
                logging.getLogger(name).removeFilter(self._summary)
            pending = sum(self._summary.pending().values())
            if pending:
                log.info("control: %d log lines caused by commands were suppressed", pending)
        self._sock.close()

    def __enter__(self) -> "ControlServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def _listen_error(host: str, port: int, e: Exception):
    """The UsageError for a control address that cannot be bound, with advice that fits the cause."""
    from synthmatch.bridge.core.errors import UsageError

    if isinstance(e, OSError) and e.errno == errno.EADDRINUSE:
        fix = (
            "another program (or a second synthmatch bridge) uses it: run without the control server "
            "(--no-control), or give it a free port (--set control.port=9002; 0 = any free port)"
        )
    elif (
        isinstance(e, OSError)
        and e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)
        or isinstance(e, socket.gaierror)
    ):
        fix = (
            f"{host} is not an address of this machine: set control.host to 127.0.0.1 (or to this "
            "machine's own LAN address to accept remote control)"
        )
    elif isinstance(e, OSError) and e.errno == errno.EACCES:
        fix = "ports below 1024 need privileges: set control.port to 1024..65535"
    else:
        fix = "check control.host and control.port"
    return UsageError(f"control server cannot listen on {host}:{port} ({e}); {fix}")
