"""The contract: normalised <-> physical maps, the hash, and clear errors for malformed files."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.contract import PARAM_NAMES, ContractError

SOURCE = contract_mod.DEFAULT_CONTRACT.read_text()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "contract.toml"
    path.write_text(text)
    return path


def test_default_contract_loads_with_the_papers_16_names():
    c = contract_mod.default()
    assert c.names == PARAM_NAMES
    assert c.audio.num_samples == 64000
    assert (c.win_length, c.hop_length, c.num_frames) == (400, 160, 398)


@pytest.mark.parametrize("param", contract_mod.default().params, ids=lambda p: p.name)
def test_round_trip_normalised_physical_normalised(param):
    v = np.linspace(0.0, 1.0, 101)
    physical = param.to_physical(v)
    assert np.allclose(param.to_normalised(physical), v, atol=1e-12)
    assert np.isclose(param.to_physical(0.0), param.min) and np.isclose(param.to_physical(1.0), param.max)
    assert np.all(np.diff(physical) > 0)  # monotonic
    assert np.isclose(param.to_normalised(float(param.to_physical(0.3))), 0.3)  # plain floats too


def test_pitch_is_unison_at_one_half_and_cutoff_is_exponential():
    c = contract_mod.default()
    assert c.param("osc1_pitch").to_physical(0.5) == 0.0
    cut = c.param("filter1_cutoff")
    assert np.isclose(cut.to_physical(0.5), np.sqrt(cut.min * cut.max))  # geometric mean


def test_round_trip_on_torch_tensors():
    torch = pytest.importorskip("torch")
    p = contract_mod.default().param("env_decay")
    v = torch.rand(10, dtype=torch.float64)
    assert torch.allclose(p.to_normalised(p.to_physical(v)), v)


def test_hash_is_stable_and_tracks_what_models_depend_on(tmp_path):
    base = contract_mod.default().hash
    assert contract_mod.load(write(tmp_path, SOURCE)).hash == base
    changed_range = SOURCE.replace("max = 8000.0", "max = 7000.0", 1)
    assert contract_mod.load(write(tmp_path, changed_range)).hash != base
    changed_frontend = SOURCE.replace("n_mels = 64", "n_mels = 80")
    assert contract_mod.load(write(tmp_path, changed_frontend)).hash != base
    # presentation and sampling do not change what a prediction means
    cosmetic = SOURCE.replace('massive = "OSC1 PITCH"', 'massive = "OSC 1 PITCH"').replace("cc = 14", "cc = 102")
    assert contract_mod.load(write(tmp_path, cosmetic)).hash == base


def second_row_start(text: str) -> int:
    return text.index("[[param]]", text.index("[[param]]") + 1)


MALFORMED = {
    "unknown key": (SOURCE.replace('curve = "linear"', 'curve = "linear"\ncolour = "red"', 1), "colour"),
    "duplicate name": (SOURCE.replace('name = "osc1_position"', 'name = "osc1_pitch"'), "duplicate"),
    "range inverted": (SOURCE.replace("min = 60.0\nmax = 8000.0", "min = 8000.0\nmax = 60.0"), "inverted"),
    "wrong count": (SOURCE[: second_row_start(SOURCE)], "wrong count"),
    "bad curve": (SOURCE.replace('curve = "log"', 'curve = "cubic"', 1), "curve"),
    "bad sampling": (SOURCE.replace('sample = { dist = "uniform" }', 'sample = { dist = "gauss" }', 1), "sample"),
    "not toml": (SOURCE + "\n[[param\n", "not valid TOML"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_contract_raises_naming_file_and_key(tmp_path, case):
    text, needle = MALFORMED[case]
    path = write(tmp_path, text)
    with pytest.raises(ContractError) as err:
        contract_mod.load(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_cli_exits_2_with_the_message(tmp_path):
    path = write(tmp_path, MALFORMED["duplicate name"][0])
    run = subprocess.run(
        [sys.executable, "-m", "synthmatch.bridge.cli", "params", "--contract", str(path)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert str(path) in run.stderr and "duplicate" in run.stderr and "Traceback" not in run.stderr


def test_values_from_dict_lists_valid_names():
    c = contract_mod.default()
    assert c.values_from_dict(dict.fromkeys(c.names, 0.25)) == [0.25] * 16
    with pytest.raises(ContractError, match="unknown parameter.*cutoff.*Valid names: osc1_pitch"):
        c.values_from_dict({**dict.fromkeys(c.names, 0.5), "cutoff": 0.1})
    with pytest.raises(ContractError, match=r"must be a normalised number in \[0, 1\]"):
        c.values_from_dict({**dict.fromkeys(c.names, 0.5), "reverb_mix": 1.5})


def test_importing_the_runtime_does_not_import_torch():
    runtime = ("core.contract", "core.frontend", "audio.input", "engines", "outputs", "live.daemon", "cli")
    modules = ", ".join(f"synthmatch.bridge.{m}" for m in runtime)
    code = f"import {modules}, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
