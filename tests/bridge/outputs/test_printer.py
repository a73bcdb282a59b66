"""The print sink (issue 22, item 6): a reader that closes the pipe ends the daemon cleanly (exit 0), each
update meanwhile counted as a send failure, one warning in all."""

from __future__ import annotations

import subprocess
import time

import pytest

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.outputs.printer import OutputClosed, PrintSink
from tests.bridge.daemon_util import SR, bridge_cmd, exit_counters, notes_file


class BrokenStream:
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        pass


def test_a_closed_pipe_is_a_send_failure_and_calls_on_closed_once(caplog):
    closed = []
    sink = PrintSink(contract_mod.default(), stream=BrokenStream(), on_closed=lambda: closed.append(1))
    for _ in range(3):
        with pytest.raises(OutputClosed):  # an OSError: the daemon counts it in send_failures
            sink.send([0.5] * 16)
    assert closed == [1] and sink.closed
    assert sink.stats.errors == 3 and sink.stats.sent == 0
    assert len([r for r in caplog.records if "closed the pipe" in r.getMessage()]) == 1


def test_bridge_print_into_a_closed_pipe_exits_0_at_once(tmp_path, tiny_onnx):
    audio = tmp_path / "long.wav"
    notes_file(audio, contract_mod.default(), [4000 + 2 * SR * k for k in range(10)], 20 * SR)
    p = subprocess.Popen(
        bridge_cmd("--input", f"file:{audio}", "--model", str(tiny_onnx), "--mode", "continuous", "--print"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout.readline().startswith("{")  # one update read, then the reader goes away
        p.stdout.close()
        t0 = time.monotonic()
        err = p.stderr.read()
        p.wait(15)
    finally:
        if p.poll() is None:
            p.kill()
    assert time.monotonic() - t0 < 10, "kept running for the rest of the 20 s file"
    assert p.returncode == 0, err
    assert exit_counters(err)["send_failures"] >= 1
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.count("closed the pipe; stopping") == 1, err
