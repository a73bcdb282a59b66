"""The engine's call on a window (bridge/live/inference.py) alone, on a scripted engine: values clipped
and counted, the tap, rejected outputs, engine errors counted and logged rate-limited, ENGINE_FAILURES_MAX
in a row switching to the fallback engine once, or giving up with one line naming the backend. The same
behaviour through the whole daemon with a real engine: test_faults.py."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from synthmatch.bridge.live.inference import ENGINE_FAILURES_MAX, EngineGaveUp, Inference
from synthmatch.bridge.live.report import Counters

N = 64000
WINDOW = np.zeros(N, np.float32)


class Scripted:
    """An engine answering from a script: an array (returned with `extras`) or an exception (raised)."""

    def __init__(self, *script, name: str = "scripted", extras=None):
        self.script, self.name, self.extras, self.calls = list(script), name, extras or {}, []

    def answer(self, window: np.ndarray, note):
        self.calls.append(note)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        return np.asarray(step, np.float32), self.extras


class Notes:
    """NoteStage's seam: infer_full(engine, window, note) -> (values, extras)."""

    def infer_full(self, engine, window, note):
        return engine.answer(window, note)


def ok(x: float = 0.5) -> np.ndarray:
    return np.full(16, x, np.float32)


def test_an_answer_is_clipped_counted_timed_and_tapped():
    taps = []
    engine = Scripted(ok(1.0000001), extras={"pitch_top": np.ones((3, 3))})
    inf = Inference(engine, Notes(), Counters(), window_tap=lambda s, w, v: taps.append((s, w, v)))
    values = inf.run(123, WINDOW, note=60)
    assert values is not None and values.dtype == np.float32 and values.max() == 1.0  # clipped
    assert engine.calls == [60] and inf.c.inferences == 1 and len(inf.c.infer_ms) == 1
    assert taps[0][0] == 123 and taps[0][1] is WINDOW and taps[0][2].max() > 1.0  # the raw output
    assert set(inf.extras) == {"pitch_top"}


@pytest.mark.parametrize("bad", [np.nan, 1.5, -0.2], ids=["NaN", "above", "below"])
def test_a_rejected_output_is_counted_and_not_returned(bad, caplog):
    out = ok()
    out[3] = bad
    inf = Inference(Scripted(out), Notes(), Counters())
    with caplog.at_level(logging.WARNING, "synthmatch.bridge"):
        assert inf.run(0, WINDOW) is None
    assert inf.c.bad_outputs == 1 and inf.c.inferences == 1  # the engine answered; the answer was not usable
    assert "inference: output rejected (1 so far)" in caplog.text


def test_an_engine_error_loses_the_window_not_the_extras_and_a_success_resets_the_count(caplog):
    engine = Scripted(ok(), RuntimeError("first line\nsecond line"), RuntimeError("again"), ok(), extras={"x": 1})
    inf = Inference(engine, Notes(), Counters())
    assert inf.run(0, WINDOW) is not None
    with caplog.at_level(logging.WARNING, "synthmatch.bridge"):
        assert inf.run(0, WINDOW) is None and inf.run(0, WINDOW) is None
    assert inf.c.engine_errors == 2 and inf.failures_in_row == 2 and inf.extras == {"x": 1}
    assert inf.run(0, WINDOW) is not None and inf.failures_in_row == 0 and inf.c.engine_errors == 2
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == (
        "inference failed on scripted (1 so far, 1 in a row): RuntimeError: first line; window dropped"
    )  # one line: the message's first


def test_engine_warnings_are_rate_limited(caplog):
    inf = Inference(Scripted(*([RuntimeError("x"), ok()] * 20)), Notes(), Counters())  # never 2 in a row
    with caplog.at_level(logging.WARNING, "synthmatch.bridge"):
        for _ in range(40):
            inf.run(0, WINDOW)
    assert inf.c.engine_errors == 20 and inf.c.inferences == 20
    assert len(caplog.records) == 5  # a burst of 5, then one every 30 s


def test_failures_in_a_row_give_up_naming_the_backend_and_the_last_error():
    inf = Inference(Scripted(OSError("device lost"), name="cuda"), Notes(), Counters())
    for _ in range(ENGINE_FAILURES_MAX - 1):
        assert inf.run(0, WINDOW) is None
    with pytest.raises(EngineGaveUp) as e:
        inf.run(0, WINDOW)
    says = str(e.value)
    assert says.startswith(f"inference failed {ENGINE_FAILURES_MAX} times in a row on the cuda backend")
    assert "(last: OSError: device lost)" in says and "--backend" in says and "\n" not in says


def test_failures_in_a_row_switch_to_the_fallback_once():
    opened = []
    spare = Scripted(ok(0.25), name="onnxruntime")

    def fallback():
        opened.append(spare)
        return spare

    inf = Inference(Scripted(RuntimeError("x"), name="cuda"), Notes(), Counters(), fallback=fallback)
    for _ in range(ENGINE_FAILURES_MAX):
        assert inf.run(0, WINDOW) is None
    assert inf.engine is spare and opened == [spare] and inf.fallback is None
    assert inf.failures_in_row == 0 and inf.c.engine_fallbacks == 1 and inf.c.engine_errors == ENGINE_FAILURES_MAX
    assert inf.run(0, WINDOW)[0] == 0.25
    spare.script = [RuntimeError("the spare fails too")]
    for _ in range(ENGINE_FAILURES_MAX - 1):
        inf.run(0, WINDOW)
    with pytest.raises(EngineGaveUp, match="on the onnxruntime backend"):  # no second fallback
        inf.run(0, WINDOW)
    assert opened == [spare]


def test_a_fallback_that_does_not_open_gives_up_naming_both():
    def broken():
        raise OSError("no such library")

    inf = Inference(Scripted(RuntimeError("x"), name="cuda"), Notes(), Counters(), fallback=broken)
    for _ in range(ENGINE_FAILURES_MAX - 1):
        inf.run(0, WINDOW)
    with pytest.raises(EngineGaveUp) as e:
        inf.run(0, WINDOW)
    assert "on the cuda backend" in str(e.value) and "the fallback did not open: OSError: no such library" in str(
        e.value
    )
    assert inf.c.engine_fallbacks == 0
