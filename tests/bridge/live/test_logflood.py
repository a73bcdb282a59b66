"""Logs that cannot flood (issue 22, item 6): 20,000 control datagrams against a running `synthmatch
bridge` leave fewer than 50 log lines; the limiter pieces in bridge/core/ratelimit.py on their own."""

from __future__ import annotations

import logging
import signal
import socket
import time

import pytest
from pythonosc.osc_message_builder import OscMessageBuilder

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.ratelimit import LimitedLog, RateLimiter, SummaryFilter
from synthmatch.bridge.live.control import CommandQueue, ControlCommand
from tests.bridge.daemon_util import SR, exit_counters, notes_file
from tests.bridge.live.test_hostile import Bridge, _status

FLOOD = 20_000
MAX_LINES = 50


def osc(address: str, *args: tuple[str, object]) -> bytes:
    m = OscMessageBuilder(address)
    for tag, v in args:
        m.add_arg(v, tag)
    return m.build().dgram


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "long.wav"
    notes_file(path, contract_mod.default(), [4000 + 2 * SR * k for k in range(10)], 20 * SR)
    return path


def test_a_20000_datagram_flood_leaves_fewer_than_50_log_lines(tiny_onnx, notes):
    b = Bridge(
        *("--input", f"file:{notes}", "--model", str(tiny_onnx), "--mode", "continuous", "--print"),
        *("--set", "control.port=0", "--set", "log.interval_s=0"),
    )
    try:
        port = int(b.wait_for(r"control: OSC on 127\.0\.0\.1:(\d+)").group(1))
        b.wait_for("bridge running")
        before = len(b.err)
        kinds = [
            osc("/synthmatch/freeze", ("i", 1)),
            osc("/synthmatch/freeze", ("i", 0)),
            osc("/synthmatch/trigger"),  # continuous mode: "trigger ignored" in the daemon, per command
            osc("/synthmatch/mode", ("s", "manual")),
            osc("/synthmatch/mode", ("s", "continuous")),
            b"not osc at all",
        ]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(FLOOD):
            s.sendto(kinds[i % len(kinds)], ("127.0.0.1", port))
            if i % 100 == 99:
                time.sleep(0.005)  # the receive buffer keeps up: the daemon sees (nearly) all of them
        s.close()
        st = _status(port)
        b.signal(signal.SIGTERM)
    finally:
        if b.p.poll() is None:
            b.p.kill()
    assert b.p.returncode == 0, b.stderr
    counters = exit_counters(b.stderr)
    assert counters["control_received"] > 0.8 * FLOOD, counters
    assert st["counters"]["control_commands"] > 100, st  # the daemon applied many: their lines were summarised
    lines = b.err[before:]
    print(f"{len(lines)} log lines under a {FLOOD}-datagram flood")
    assert len(lines) < MAX_LINES, f"{len(lines)} log lines:\n{''.join(lines)}"
    assert any("suppressed" in ln for ln in lines), "".join(lines)


def test_rate_limiter_counts_what_it_refused():
    t = [0.0]
    lim = RateLimiter(burst=3, per_s=1.0, clock=lambda: t[0])
    assert [lim.allow()[0] for _ in range(5)] == [True, True, True, False, False]
    t[0] = 1.0
    assert lim.allow() == (True, 2)  # the line let through carries the count
    assert lim.suppressed_total == 2


def test_summary_filter_passes_rare_lines_and_summarises_a_burst(caplog):
    t = [0.0]
    logger = logging.getLogger("synthmatch.test.summary")
    f = SummaryFilter(burst=2, interval_s=10.0, clock=lambda: t[0])
    logger.addFilter(f)
    try:
        with caplog.at_level(logging.INFO, logger="synthmatch.test.summary"):
            for _ in range(100):
                logger.info("values %s", "frozen")
            logger.info("another line")
            t[0] = 10.0
            logger.info("values %s", "released")
    finally:
        logger.removeFilter(f)
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == ["values frozen", "values frozen", "another line", "values released (98 similar lines suppressed)"]


def test_a_full_control_queue_warns_a_few_times_with_a_count(caplog):
    q = CommandQueue(maxsize=1)
    with caplog.at_level(logging.WARNING, logger="synthmatch.control"):
        for _ in range(1000):
            q.put(ControlCommand("trigger"))
    assert q.dropped == 999
    assert 1 <= len(caplog.records) <= 3


def test_limited_log_says_how_many_it_suppressed_at_the_end(caplog):
    lim = LimitedLog(logging.getLogger("synthmatch.test.limited"), burst=1, per_s=0.001)
    with caplog.at_level(logging.WARNING, logger="synthmatch.test.limited"):
        for _ in range(10):
            lim.warning("send failed: %s", "x")
        lim.flush()
    assert [r.getMessage() for r in caplog.records] == ["send failed: x", "9 more similar lines suppressed"]
