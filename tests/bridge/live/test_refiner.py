"""bridge.refiner: the daemon follows a snapshot with a refined one, computed in a second process."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from synthmatch.bridge.audio.onset import OnsetSettings, offline_onsets
from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.live.refiner import Refiner, RefinerError
from tests.bridge.daemon_util import SHUTDOWN_S, SR, bridge_cmd, exit_counters, notes_file, sigterm_bridge

N = 64000


@pytest.fixture(scope="module")
def c():
    return contract_mod.default()


def test_each_snapshot_is_followed_by_its_refinement_unless_a_newer_one_came_first(c, tiny_onnx, tmp_path):
    """Three notes through `synthmatch bridge --fast`: three network snapshots at once, then the refined
    follow-up of the newest only (the first two were superseded before their search finished), equal to
    training.refine on the same window, and closer to it than the network's snapshot."""
    torch = pytest.importorskip("torch")  # the module runs without torch: the next test needs its absence
    from synthmatch.bridge.engines import load_engine
    from synthmatch.training.metrics import multiscale_spectral_distance
    from synthmatch.training.refine import RefineConfig, refine
    from synthmatch.training.synth import ReferenceSynth

    path = tmp_path / "three.wav"
    x = notes_file(path, c, [8000, 8000 + 5 * SR + 123, 8000 + 10 * SR + 777], 16 * SR)
    r = subprocess.run(
        bridge_cmd(
            "--input",
            f"file:{path}",
            "--fast",
            "--mode",
            "trigger",
            "--model",
            str(tiny_onnx),
            "--print",
            "--no-control",
            "--refine-passes",
            "1",
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    lines = [json.loads(s) for s in r.stdout.splitlines()]
    assert [u["mode"] for u in lines] == ["trigger"] * 3 + ["trigger+refined"], r.stdout
    counters = exit_counters(r.stderr)
    assert counters["refined"] == 1 and counters["refine_ms_p50"] > 0

    onset = offline_onsets(x, OnsetSettings(), SR)[2]
    window = x[onset : onset + N][None]
    engine = load_engine(tiny_onnx, backend="onnxruntime", contract=c, threads=1)
    net = np.clip(engine.infer(window), 0, 1)
    engine.close()
    sent_net, sent_refined = (np.array([u["values"][n] for n in c.names], np.float32) for u in lines[2:])
    np.testing.assert_allclose(sent_net, net[0], atol=1e-5)  # print rounds to 5 digits
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the refinement process
    try:
        offline, before, after = refine(c, window, net, RefineConfig(passes=1))
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(sent_refined, offline[0], atol=1e-5)
    with torch.no_grad():
        audio = ReferenceSynth(c).render(torch.from_numpy(np.stack([net[0], sent_refined])))
    d = multiscale_spectral_distance(torch.from_numpy(window).repeat(2, 1), audio).numpy()
    assert d[1] < d[0], d


def test_without_torch_the_refiner_says_how_to_install_it(c, tmp_path, monkeypatch):
    fake = tmp_path / "no_torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'torch'\")\n")
    monkeypatch.syspath_prepend(str(fake.parent))  # a spawned child starts with the parent's sys.path
    with pytest.raises(RefinerError, match=r"No module named 'torch'.*pip install 'synthmatch\[train\]'"):
        Refiner(c, passes=1, ready_timeout=60)


def test_config_rejects_negative_passes(c, tiny_onnx):
    r = subprocess.run(
        bridge_cmd("--model", str(tiny_onnx), "--check", "--set", "refine.passes=-1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "refine.passes = -1" in r.stderr, r.stderr


def test_sigterm_with_a_search_in_flight_exits_at_once_and_leaves_no_child(c, tiny_onnx, tmp_path):
    path = tmp_path / "one.wav"
    notes_file(path, c, [1600], 6 * SR)
    p = subprocess.Popen(
        bridge_cmd(
            "--input",
            f"file:{path}",
            "--mode",
            "trigger",
            "--model",
            str(tiny_onnx),
            "--print",
            "--no-control",
            "--refine-passes",
            "3",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert json.loads(p.stdout.readline())["mode"] == "trigger"  # real time: ~4 s; its search starts now
        time.sleep(0.3)
        children = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
        assert children, "no refinement process"
        elapsed, _, counters = sigterm_bridge(p)
    finally:
        if p.poll() is None:
            p.kill()
    assert elapsed < SHUTDOWN_S, f"shutdown took {elapsed:.2f} s"
    assert counters["refined"] == 0  # it was still searching
    deadline = time.monotonic() + 2.0  # an orphan would outlive its parent; a closed child is gone
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in children), children
