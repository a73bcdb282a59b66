"""synthmatch as a user installs it: the built wheel in .venv-runtime (`bash scripts/setup.sh --dev`), no
extras, so no torch, run by that venv's own `synthmatch` from a directory outside the repository; then the
runtime's tests (tests/bridge, jack ones aside) in that venv, where those needing torch skip."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from synthmatch.bridge.core.contract import PARAM_NAMES
from synthmatch.bridge.core.tomlfile import tomllib

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-runtime"
PYTHON = VENV / "bin" / "python"
SYNTHMATCH = VENV / "bin" / "synthmatch"
# the environment of a user's shell: nothing that would put the repository or another venv on the path
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
TRAIN_HINT = "pip install 'synthmatch[train]'"
MIN_RUNTIME_PASSED = 100  # tests/bridge without torch: 139 passed when this was written

pytestmark = pytest.mark.skipif(
    not SYNTHMATCH.exists(), reason=".venv-runtime missing (the built wheel, no torch): bash scripts/setup.sh --dev"
)

# Run by the runtime venv's python: what is importable there, the installed files and their RECORD hashes.
PROBE = r"""
import importlib.util, json, sys
from importlib import metadata, resources
import synthmatch.bridge
dist = metadata.distribution("synthmatch")
print(json.dumps({
    "importable": {m: importlib.util.find_spec(m) is not None
                   for m in ("bridge", "training", "configs", "models", "torch")},
    "distributions": sorted(d.metadata["Name"].lower() for d in metadata.distributions()),
    "bridge_file": synthmatch.bridge.__file__,
    "direct_url": json.loads(dist.read_text("direct_url.json") or "{}"),
    "data": {f"{pkg}/{name}": resources.files(pkg).joinpath(name).is_file()
             for pkg, name in json.loads(sys.argv[1])},
    "files": {str(f): f.hash.value for f in dist.files if f.hash and f.parts[0] == "synthmatch"},
}))
"""
PACKAGE_DATA = [
    ("synthmatch.configs", "contract.toml"),
    ("synthmatch.configs", "bridge.toml"),
    ("synthmatch.models", "default.onnx"),
    ("synthmatch.models", "performance.onnx"),
]


def run(cmd, cwd, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def outside(tmp_path) -> Path:
    """An empty working directory outside the repository (no configs/ or models/ to fall back on)."""
    assert ROOT not in tmp_path.parents
    return tmp_path


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    r = run([PYTHON, "-c", PROBE, json.dumps(PACKAGE_DATA)], cwd=tmp_path_factory.mktemp("probe"))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def record_hash(path: Path) -> str:
    """A file's hash as a wheel's RECORD writes it: urlsafe base64 of the sha256, unpadded."""
    return base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()


def stale_files(installed_files: dict) -> list[str]:
    """Where .venv-runtime's synthmatch differs from this tree: installed files changed or gone here, and
    modules here it lacks. Paths map through pyproject's package-dir (synthmatch/bridge/x.py <- bridge/x.py)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {pkg.replace(".", "/") + "/": d + "/" for pkg, d in setuptools["package-dir"].items()}

    def source(installed_path: str) -> Path:
        prefix = max((p for p in dirs if installed_path.startswith(p)), key=len, default="")
        return ROOT / (dirs.get(prefix, "") + installed_path[len(prefix) :])

    stale = [source(p) for p, h in installed_files.items() if not source(p).is_file() or record_hash(source(p)) != h]
    installed_sources = {source(p) for p in installed_files}
    for pkg in setuptools["packages"]:
        stale += [f for f in source(pkg.replace(".", "/") + "/").glob("*.py") if f not in installed_sources]
    return sorted(str(f.relative_to(ROOT)) for f in stale)


@pytest.fixture(scope="module")
def current(installed):
    """Skips a test when .venv-runtime holds older code than the tree (test_the_wheel_is_this_tree fails)."""
    if stale_files(installed["files"]):
        pytest.skip("the wheel in .venv-runtime is older than the tree: bash scripts/setup.sh --dev")


def test_the_wheel_is_this_tree(installed):
    stale = stale_files(installed["files"])
    assert not stale, (
        f"the wheel in .venv-runtime is older than the tree ({', '.join(stale[:5])}): bash scripts/setup.sh --dev"
    )


def test_only_synthmatch_is_installed_and_its_data_travels_with_it(installed):
    assert installed["importable"] == dict.fromkeys(("bridge", "training", "configs", "models", "torch"), False)
    assert "torch" not in installed["distributions"] and "synthmatch" in installed["distributions"]
    assert Path(installed["bridge_file"]).is_relative_to(VENV)  # the installed copy, not the repository's
    assert installed["direct_url"].get("url", "").endswith(".whl"), installed["direct_url"]  # a wheel, not editable
    assert all(installed["data"].values()), installed["data"]


def test_params_prints_the_16_parameters(outside, current):
    r = run([SYNTHMATCH, "params"], cwd=outside)
    assert r.returncode == 0, r.stderr
    header, _, *rows = r.stdout.splitlines()
    assert Path(header.split()[1]).is_relative_to(VENV), header  # the contract is the package's data
    assert [row.split()[1] for row in rows] == list(PARAM_NAMES)
    assert [int(row.split()[0]) for row in rows] == list(range(16))


def three_tones(path: Path, sr: int = 44100) -> list[int]:
    """A 6 s 16-bit WAV at 44.1 kHz (the daemon resamples it): three plucked tones of 5 harmonics at
    A3, E4, C4, 2 s apart, each decaying at 26 dB/s. Returns their MIDI notes."""
    notes = [57, 64, 60]
    t = np.arange(6 * sr) / sr
    x = np.zeros_like(t)
    for k, note in enumerate(notes):
        f0, start = 440.0 * 2 ** ((note - 69) / 12), 0.3 + 2.0 * k
        tt = np.clip(t - start, 0, None)
        tone = sum(np.sin(2 * np.pi * f0 * h * tt) / h for h in range(1, 6)) * np.exp(-3.0 * tt)
        x += 0.3 * tone * (t >= start)
    sf.write(path, x.astype(np.float32), sr, subtype="PCM_16")
    return notes


def test_bridge_matches_three_notes_with_the_shipped_model(outside, current):
    notes = three_tones(outside / "tones.wav")
    r = run(
        [SYNTHMATCH, "bridge", "--input", "file:tones.wav", "--print", "--mode", "trigger", "--fast", "--no-control"],
        cwd=outside,
    )
    assert r.returncode == 0, r.stderr
    updates = [json.loads(line) for line in r.stdout.splitlines()]
    assert [u["mode"] for u in updates] == ["trigger"] * len(notes), r.stdout
    assert [u["note"]["midi"] for u in updates] == notes
    values = np.array([[u["values"][n] for n in PARAM_NAMES] for u in updates])  # (3, 16), the names in order
    assert all(list(u["values"]) == list(PARAM_NAMES) for u in updates)
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    assert np.abs(values - values[0]).max() > 1e-3, values  # the model hears the difference between notes


TRAINING_COMMANDS = [
    ["match", "tones.wav"],
    ["render", "--random", "--out", "x.wav"],
    ["demo"],
    ["export", "--checkpoint", "a.pt", "--out", "a.onnx"],
    ["train", "--config", "a.toml", "--out", "run"],
    ["dataset", "verify", "data"],
    ["eval", "--baseline", "mean"],
]  # valid arguments: argparse would exit 2 on its own


@pytest.mark.parametrize("args", TRAINING_COMMANDS, ids=lambda a: a[0])
def test_training_commands_without_torch_say_how_to_install_it(outside, current, args):
    three_tones(outside / "tones.wav")
    r = run([SYNTHMATCH, *args], cwd=outside, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr  # one line
    assert r.stderr.startswith(f"synthmatch {args[0]}: ") and "torch" in r.stderr and TRAIN_HINT in r.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["tones.wav"]  # refused before doing anything


def test_runtime_tests_pass_in_the_runtime_venv(tmp_path, current):
    """tests/bridge run by the runtime venv against the installed wheel: torch-needing tests skip (tiny_onnx,
    tiny_notes_onnx and the synth helpers importorskip it); the rest must pass, and enough must run."""
    r = run(
        [
            PYTHON,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            tmp_path / "t",
            "tests/bridge",
            "-m",
            "not jack",
        ],
        cwd=ROOT,
        timeout=420,
    )
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", summary)) else 0
    assert passed >= MIN_RUNTIME_PASSED, summary
