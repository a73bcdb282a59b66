"""Start candidates from the pitch head's extra outputs (bridge/match/candidates.py), on hand-made extras:
which runner-up classes are tried, the joint one, duplicates, and models without extras."""

from __future__ import annotations

import numpy as np
import pytest

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.modelfile import PITCH_PROB_NAME, PITCH_TOP_NAME, ModelMeta
from synthmatch.bridge.match.candidates import MIN_PROB, pitch_candidates

C = contract_mod.default()
ROWS = ("osc1_pitch", "osc2_pitch", "osc3_pitch")
P = [C.names.index(r) for r in ROWS]


def _meta(extras: bool = True) -> ModelMeta:
    outs = {PITCH_TOP_NAME: ROWS, PITCH_PROB_NAME: ROWS} if extras else {}
    return ModelMeta("m.onnx", C.names, C.hash, 16000, 64000, extra_outputs=outs)


def _values() -> np.ndarray:
    v = np.full(16, 0.5, np.float32)
    v[P] = [0.5, 0.6, 0.7]
    return v


def _extras(top, prob) -> dict[str, np.ndarray]:
    return {PITCH_TOP_NAME: np.array(top, np.float32), PITCH_PROB_NAME: np.array(prob, np.float32)}


def test_runner_ups_above_the_threshold_are_substituted_one_oscillator_at_a_time():
    v = _values()
    extras = _extras(
        [[0.5, 0.75, 0.25], [0.6, 0.35, 0.85], [0.7, 0.2, 0.9]],
        [[0.6, 0.3, 0.06], [0.9, 0.04, 0.01], [0.5, 0.2, MIN_PROB]],  # osc2's runner-ups are ruled out
    )
    got = pitch_candidates(v, extras, _meta())
    pitches = [tuple(np.round(c[P], 3)) for c in got]
    assert pitches == [
        (0.75, 0.6, 0.7),  # osc1's 2nd class
        (0.25, 0.6, 0.7),  # osc1's 3rd (0.06 >= MIN_PROB)
        (0.5, 0.6, 0.2),  # osc3's 2nd
        (0.5, 0.6, 0.9),  # osc3's 3rd, at the threshold
        (0.75, 0.6, 0.2),  # the runner-ups together: each oscillator's best one
    ]
    others = [i for i in range(16) if i not in P]
    assert all(c.dtype == np.float32 and c.shape == (16,) and np.array_equal(c[others], v[others]) for c in got)


def test_the_top_classes_combined_are_a_candidate_only_where_they_differ_from_the_answer():
    """decode's answer is the top classes, so a model's own values give no such candidate; values changed
    after the network (pinned, smoothed) do."""
    v = _values()
    extras = _extras([[0.5, 0.75, 0.25], [0.6, 0.35, 0.85], [0.7, 0.2, 0.9]], np.full((3, 3), 0.01))
    assert pitch_candidates(v, extras, _meta()) == []  # nothing probable besides the answer
    moved = v.copy()
    moved[P] = 0.0
    (got,) = pitch_candidates(moved, extras, _meta())
    np.testing.assert_allclose(got[P], [0.5, 0.6, 0.7])


def test_duplicates_and_a_lone_runner_up_give_no_joint_candidate():
    v = _values()
    # osc1's 2nd and 3rd classes clamp to the same value (the range's top); only osc1 has runner-ups
    extras = _extras([[0.5, 1.0, 1.0], [0.6, 0.5, 0.7], [0.7, 0.6, 0.8]], [[0.5, 0.3, 0.2], [1, 0, 0], [1, 0, 0]])
    (got,) = pitch_candidates(v, extras, _meta())
    assert got[P[0]] == 1.0 and np.array_equal(np.delete(got, P[0]), np.delete(v, P[0]))


def test_no_extras_no_candidates():
    """A model without the extra outputs (or a backend that does not return them): the matcher starts
    from the network's answer and its own variants alone."""
    v = _values()
    assert pitch_candidates(v, {}, _meta(extras=False)) == []
    assert pitch_candidates(v, {}, _meta()) == []
    full = _extras(np.full((3, 3), 0.5), np.full((3, 3), 0.3))
    assert pitch_candidates(v, full, _meta(extras=False)) == []  # the metadata does not say which rows


def test_mismatched_extras_are_refused():
    with pytest.raises(ValueError, match="pitch candidates"):
        pitch_candidates(_values(), _extras(np.zeros((2, 3)), np.zeros((2, 3))), _meta())
