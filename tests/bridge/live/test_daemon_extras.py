"""The daemon hands the matcher the pitch head's runner-up classes (bridge/match/candidates.py) as extra
starts, from the model's extra outputs; a model without them still works, with fewer candidates.
Torch-free: the notes come from bridge/match/synth.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthmatch.bridge.core import audiofile
from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.engines import load_engine
from synthmatch.bridge.live.daemon import Daemon
from synthmatch.bridge.match.search import Matcher
from synthmatch.bridge.match.synth import Synth
from tests.bridge.daemon_util import SR, make_config, run_daemon

C = contract_mod.default()
SHIPPED = Path(__file__).resolve().parents[3] / "models" / "default.onnx"
GAP = 6 * SR


class SpyMatcher(Matcher):
    """The real matcher, noting the extra starts of every call."""

    def __init__(self, contract):
        super().__init__(contract)
        self.seen: list[list[np.ndarray]] = []

    def match(self, *args, **kw):
        self.seen.append(list(kw.get("extra", ())))
        return super().match(*args, **kw)


@pytest.fixture(scope="module")
def three_notes(tmp_path_factory):
    """Three audible patches at C4, G3 and E5 (the note told to the model moves its pitch classes)."""
    rng = np.random.default_rng(11)
    v = rng.random((3, 16)).astype(np.float32)
    for name in ("osc1_gain", "filter1_cutoff"):
        v[:, C.names.index(name)] = 0.6 + 0.4 * v[:, C.names.index(name)]
    v[:, C.names.index("env_attack")] *= 0.3
    synth = Synth(C)
    x = np.zeros(GAP * 3 + SR, np.float32)
    for i, note in enumerate((60, 55, 76)):
        a = synth.render(v[i : i + 1], note)[0]
        x[SR // 2 + i * GAP : SR // 2 + i * GAP + a.size] += a
    path = tmp_path_factory.mktemp("extras") / "three.wav"
    audiofile.write(path, x, SR)
    return path


def _run(model, path) -> tuple[list[dict], SpyMatcher, Daemon]:
    cfg = make_config(C, mode="trigger", input={"source": f"file:{path}", "fast": True}, refine={"budget_ms": 30.0})
    matcher = SpyMatcher(C)
    with load_engine(model, backend="onnxruntime", contract=C, threads=1) as engine:
        d, _, lines = run_daemon(cfg, C, engine, timeout=120, matcher=matcher)
    return [line for line in lines if "values" in line], matcher, d


def test_a_model_without_the_extra_outputs_still_refines_with_fewer_candidates(tiny_onnx, three_notes):
    lines, matcher, d = _run(tiny_onnx, three_notes)
    assert len(lines) == 3 and d.c.refined == 3 and d.c.refine_errors == 0
    assert matcher.seen == [[], [], []]  # no starts from the network beyond its answer


def test_the_shipped_model_gives_the_matcher_its_pitch_runner_ups(three_notes):
    lines, matcher, d = _run(SHIPPED, three_notes)
    assert len(lines) == 3 and d.c.refined == 3 and d.c.refine_errors == 0
    assert len(matcher.seen) == 3 and any(matcher.seen)
    pitches = [C.names.index(n) for n in ("osc1_pitch", "osc2_pitch", "osc3_pitch")]
    others = [i for i in range(16) if i not in pitches]
    for starts in matcher.seen:
        assert all(s.shape == (16,) and s.dtype == np.float32 for s in starts)
        # each start moves pitches only: the other parameters are the network's answer (equal to each other)
        assert all(np.array_equal(s[others], starts[0][others]) for s in starts)
