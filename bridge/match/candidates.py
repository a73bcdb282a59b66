"""Starting candidates from the network's own uncertainty: the pitch head's runner-up classes.

The pitch-cls head scores every semitone of each oscillator's range; a model exported with it returns each
oscillator's TOP_K most probable classes and their probabilities as extra outputs (bridge.core.modelfile
PITCH_TOP_NAME, PITCH_PROB_NAME; (rows, k) per window, row r for the parameter
meta.extra_outputs[PITCH_TOP_NAME][r]). Where the head is torn between two pitches (an octave, a fifth:
what a harmonic-rich sound leaves ambiguous) its answer takes the winner alone; these candidates let the
matcher (bridge/match/search.py, `extra=`) judge the others by synthesis:

    starts = pitch_candidates(values, extras, engine.meta)   # [(16,), ...], maybe empty
    matcher.match(window, note, values, extra=starts)

1. the combination of all oscillators' top classes (decode's answer, so it adds nothing to a model's own
   values; it does where the values were changed after the network, e.g. pinned or smoothed);
2. per oscillator, each runner-up class (2nd, 3rd) whose probability is at least MIN_PROB, substituted
   into the answer alone;
3. the runner-ups together: every oscillator that has one at its best runner-up class (an octave error
   usually moves all three oscillators at once), when at least two have one.

Duplicates (a class clamped to the range's end, the answer itself) are left out. A model without the
extra outputs (or a backend that does not return them) gives no candidates: the matcher then starts from
the network's answer and its own variants alone. Imports numpy and core only.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from synthmatch.bridge.core.modelfile import PITCH_PROB_NAME, PITCH_TOP_NAME, ModelMeta

# A runner-up class is tried when the head gives it at least this probability. Measured with the shipped
# model on 512 patches of the test split (C4; 1023 audible oscillators, gain >= 1/3): the top class is the
# true one for 55 %, the 2nd for 19 %, the 3rd for 7 %. At 0.05 the 2nd class is tried for 94 % of the
# oscillators it is true for (0.1: 76 %, 0.2: 39 %) and the 3rd for 71 % (0.1: 36 %); the precision is
# about the same at 0.05 and 0.1 (a quarter of the tried 2nd classes are the truth). Time is not what
# limits it: a start costs one fast-distance judgement (~0.5 ms), at most 2 x 3 + 2 of them, and only
# the closest starts seed the search; below 0.05 a class is one the head has as good as ruled out.
MIN_PROB = 0.05
_SAME = 1e-6  # normalised values closer than this are the same candidate


def pitch_candidates(
    values: np.ndarray,
    extras: Mapping[str, np.ndarray],
    meta: ModelMeta,
    min_prob: float = MIN_PROB,
) -> list[np.ndarray]:
    """(16,) network values, one window's extra outputs ({name: (rows, k)}, as NoteStage.infer_full or
    Engine.infer_full's row gives them) and the model's metadata -> extra starting candidates, (16,)
    float32 each, in the order of the module docstring; [] when the extras are absent."""
    top, prob = extras.get(PITCH_TOP_NAME), extras.get(PITCH_PROB_NAME)
    rows = meta.extra_outputs.get(PITCH_TOP_NAME)
    if top is None or prob is None or not rows:
        return []
    top, prob = np.asarray(top, np.float32), np.asarray(prob, np.float32)
    if top.shape != prob.shape or top.shape[0] != len(rows):
        raise ValueError(
            f"pitch candidates: {PITCH_TOP_NAME} {top.shape} and {PITCH_PROB_NAME} {prob.shape} for {len(rows)} rows"
        )
    idx = [meta.names.index(r) for r in rows]
    base = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
    found: list[np.ndarray] = []

    def add(candidate: np.ndarray) -> None:
        if all(np.abs(candidate - c).max() > _SAME for c in [base, *found]):
            found.append(candidate)

    best = base.copy()
    best[idx] = np.clip(top[:, 0], 0.0, 1.0)
    add(best)
    joint, moved = base.copy(), 0
    for r, i in enumerate(idx):
        likely = [k for k in range(1, top.shape[1]) if prob[r, k] >= min_prob]
        for k in likely:
            one = base.copy()
            one[i] = np.clip(top[r, k], 0.0, 1.0)
            add(one)
        if likely:
            joint[i] = np.clip(top[r, likely[0]], 0.0, 1.0)
            moved += 1
    if moved >= 2:
        add(joint)
    return found
