"""Refine's judge (bridge/live/judge.py) alone, on a recording matcher: the identity without a matcher or a
budget, what the matcher is handed (the note played, the previous answer, the pitch head's runner-ups as
extra starts), its counters, and a matcher that raises costing nothing but a counted, one-line warning."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.modelfile import PITCH_PROB_NAME, PITCH_TOP_NAME, ModelMeta
from synthmatch.bridge.core.ratelimit import LimitedLog
from synthmatch.bridge.live.judge import Judge
from synthmatch.bridge.live.report import Counters

C = contract_mod.default()
ROWS = ("osc1_pitch", "osc2_pitch", "osc3_pitch")
WINDOW = np.zeros(C.audio.num_samples, np.float32)
log = logging.getLogger("synthmatch.bridge")


class Recording:
    """A matcher answering 0.25 everywhere, at distances 2.0 (the network's) and 1.5, noting each call."""

    def __init__(self, error: Exception | None = None):
        self.error, self.calls = error, []

    def match(self, window, note, values, previous=None, extra=(), budget_ms=0.0):
        self.calls.append(dict(note=note, previous=previous, extra=extra, budget_ms=budget_ms))
        if self.error is not None:
            raise self.error
        return SimpleNamespace(values=np.full(16, 0.25, np.float32), seconds=0.004, network_distance=2.0, distance=1.5)


def engine(extras: bool = False):
    outs = {PITCH_TOP_NAME: ROWS, PITCH_PROB_NAME: ROWS} if extras else {}
    return SimpleNamespace(meta=ModelMeta("m.onnx", C.names, C.hash, 16000, 64000, extra_outputs=outs))


def judge(matcher) -> Judge:
    return Judge(matcher, Counters(), C.audio.note, LimitedLog(log, burst=5, per_s=1 / 30))


def test_without_a_matcher_or_a_budget_the_networks_answer_stands():
    values = np.full(16, 0.5, np.float32)
    assert judge(None).refine(WINDOW, 60, values, 100.0, {}, engine()) is values
    j = judge(Recording())
    assert j.refine(WINDOW, 60, values, 0.0, {}, engine()) is values
    assert j.refine(WINDOW, 60, values, -3.0, {}, engine()) is values  # the hop's share already spent
    assert j.matcher.calls == [] and j.c.refined == 0


def test_the_matcher_is_handed_the_note_the_previous_answer_and_the_runner_ups():
    values, previous = np.full(16, 0.5, np.float32), np.full(16, 0.4, np.float32)
    j = judge(Recording())
    out = j.refine(WINDOW, 64, values, 12.0, {}, engine(), previous=previous)
    assert out[0] == 0.25
    call = j.matcher.calls[0]
    assert call["note"] == 64.0 and call["previous"] is previous and call["extra"] == [] and call["budget_ms"] == 12.0
    j.refine(WINDOW, None, values, 12.0, {}, engine())
    assert j.matcher.calls[1]["note"] == float(C.audio.note)  # no note heard: the contract's
    top = np.array([[0.5, 0.75, 0.25], [0.5, 0.75, 0.25], [0.5, 0.75, 0.25]], np.float32)
    prob = np.array([[0.6, 0.3, 0.1]] * 3, np.float32)
    j.refine(WINDOW, 60, values, 12.0, {PITCH_TOP_NAME: top, PITCH_PROB_NAME: prob}, engine(extras=True))
    assert len(j.matcher.calls[2]["extra"]) > 0  # the pitch head's runner-ups as extra starts
    c = j.c
    assert c.refined == 3 and list(c.refine_ms) == [4.0] * 3
    assert list(c.refine_before) == [2.0] * 3 and list(c.refine_after) == [1.5] * 3


def test_a_matcher_that_raises_costs_one_counted_warning_not_the_answer(caplog):
    values = np.full(16, 0.5, np.float32)
    j = judge(Recording(RuntimeError("bad\nsecond line")))
    with caplog.at_level(logging.WARNING, "synthmatch.bridge"):
        assert j.refine(WINDOW, 60, values, 12.0, {}, engine()) is values
    assert j.c.refine_errors == 1 and j.c.refined == 0
    assert caplog.records[0].getMessage() == (
        "matching failed (1 so far): RuntimeError: bad; the network's answer is sent"
    )


def test_extras_that_do_not_fit_the_model_are_a_matcher_failure_not_a_crash():
    values = np.full(16, 0.5, np.float32)
    j = judge(Recording())
    bad = {PITCH_TOP_NAME: np.zeros((2, 3), np.float32), PITCH_PROB_NAME: np.zeros((2, 3), np.float32)}
    assert j.refine(WINDOW, 60, values, 12.0, bad, engine(extras=True)) is values
    assert j.c.refine_errors == 1 and j.matcher.calls == []
