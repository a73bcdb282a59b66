"""Exported model files: metadata round trip, contract refusal with a fix, clear errors for broken files."""

from __future__ import annotations

import dataclasses
import shutil

import onnx
import pytest

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.contract import DEFAULT_CONTRACT
from synthmatch.bridge.core.modelfile import ContractMismatch, ModelError, check_contract, read_meta
from synthmatch.bridge.core.tomlfile import tomllib
from synthmatch.bridge.engines import load_engine

C = contract_mod.default()


def _contract(edit) -> contract_mod.Contract:
    """The repository contract with `edit(data)` applied to its parsed TOML."""
    with open(DEFAULT_CONTRACT, "rb") as f:
        data = tomllib.load(f)
    edit(data)
    return contract_mod.from_dict(data, source="edited.toml")


def test_metadata_round_trip(tiny_onnx):
    meta = read_meta(tiny_onnx)
    assert meta.path == str(tiny_onnx)
    assert meta.names == C.names and meta.num_params == 16
    assert meta.contract_hash == C.hash and meta.contract == C.hashed_content()
    assert (meta.sample_rate, meta.num_samples) == (16000, 64000)
    assert meta.model_config["kind"] == "ast" and meta.model_config["dim"] == 128
    assert meta.summary["step"] == 0 and meta.version and len(meta.export_id) == 16
    check_contract(meta, C)  # no exception
    # the values are JSON text under synthmatch.* keys, readable by any ONNX tool
    props = {p.key: p.value for p in onnx.load(str(tiny_onnx), load_external_data=False).metadata_props}
    assert props["synthmatch.contract_hash"] == f'"{C.hash}"'


def test_mismatched_contract_says_which_side_to_change(tiny_onnx):
    other = _contract(lambda d: d["param"][9].update(max=12000.0))  # filter1_cutoff range
    with pytest.raises(ContractMismatch) as e:
        check_contract(read_meta(tiny_onnx), other)
    msg = str(e.value)
    assert C.hash in msg and other.hash in msg and str(tiny_onnx) in msg and "edited.toml" in msg
    assert "param filter1_cutoff" in msg and "re-export" in msg and "--contract" in msg
    with pytest.raises(ContractMismatch):  # the engine refuses before it builds anything
        load_engine(tiny_onnx, "onnxruntime", contract=other)


def test_mismatched_rate_and_names(tiny_onnx):
    meta = read_meta(tiny_onnx)
    faster = _contract(lambda d: (d["audio"].update(sample_rate=22050), d["frontend"].update(n_fft=1024)))
    with pytest.raises(ContractMismatch, match="64000 samples at 16000 Hz.*88200 at 22050 Hz"):
        check_contract(meta, faster)
    renamed = dataclasses.replace(meta, names=tuple(reversed(meta.names)))
    with pytest.raises(ContractMismatch, match="predicts parameters \\(reverb_mix"):
        check_contract(renamed, C)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="model file not found") as e:
        read_meta(tmp_path / "nope.onnx")
    assert str(tmp_path / "nope.onnx") in str(e.value)


@pytest.mark.parametrize("keep", [0, 7, 0.5, -40, -3])
def test_truncated_file(tiny_onnx, tmp_path, keep):
    data = tiny_onnx.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(data[:n])
    with pytest.raises(ModelError) as e:
        read_meta(bad)
    msg = str(e.value)
    assert str(bad) in msg and ("re-export" in msg or "download" in msg)
    with pytest.raises(ModelError):
        load_engine(bad, "onnxruntime")


def test_garbage_and_foreign_onnx(tiny_onnx, tmp_path):
    bad = tmp_path / "noise.onnx"
    bad.write_bytes(b"\x08\x07" + bytes(range(256)) * 50)
    with pytest.raises(ModelError, match="noise.onnx"):
        read_meta(bad)
    # a valid ONNX model without synthmatch metadata (exported by something else)
    proto = onnx.load(str(tiny_onnx))
    del proto.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(proto, str(foreign))
    with pytest.raises(ModelError, match="no synthmatch metadata"):
        read_meta(foreign)


def test_cli_export_errors_are_usage_errors(tmp_path, tiny_onnx, capsys):
    from synthmatch.bridge.cli import main

    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "none.pt" in capsys.readouterr().err
    shutil.copy(tiny_onnx, tmp_path / "copy.onnx")
    assert read_meta(tmp_path / "copy.onnx").export_id == read_meta(tiny_onnx).export_id


def test_an_older_format_is_refused_with_what_to_do(tiny_onnx, tmp_path):
    """A format-1 file (log-mel only, before models carried their front-end) is refused by name."""
    proto = onnx.load(str(tiny_onnx))
    for p in proto.metadata_props:
        if p.key == "synthmatch.format":
            p.value = "1"
    old = tmp_path / "old.onnx"
    onnx.save(proto, str(old))
    with pytest.raises(ModelError, match=r"format 1.*models/default\.onnx.*synthmatch export") as e:
        read_meta(old)
    assert str(old) in str(e.value)
    with pytest.raises(ModelError, match="format 1"):
        load_engine(old, "onnxruntime", contract=C)


def test_the_shipped_model_resolves_pitch_and_carries_its_front_end():
    from synthmatch.bridge.core.modelfile import FORMAT

    meta = read_meta(DEFAULT_CONTRACT.parents[1] / "models" / "default.onnx")
    assert meta.format == FORMAT and meta.model_config["frontend"] == "mel+cqt"
    assert meta.model_config["head"] == "pitch-cls" and meta.model_config["cqt"]["bins_per_octave"] >= 24
    # its pitch head's top classes (the matcher's extra starts): three per oscillator
    rows = ("osc1_pitch", "osc2_pitch", "osc3_pitch")
    assert meta.extra_outputs == {"pitch_top": rows, "pitch_prob": rows}
    assert meta.extra_shapes == {"pitch_top": (3, 3), "pitch_prob": (3, 3)}


def test_extra_outputs_are_read_from_the_metadata_and_checked_against_the_graph(tiny_onnx, tmp_path):
    """Files without the key (every export before the pitch head's extras) have none; a key naming an
    output the graph lacks, or rows that are not parameters, is refused naming the file."""
    assert read_meta(tiny_onnx).extra_outputs == {}
    for value, why in (('{"pitch_top": ["osc1_pitch"]}', "not a graph output"), ('{"params": [1]}', "")):
        proto = onnx.load(str(tiny_onnx))
        for p in proto.metadata_props:
            if p.key == "synthmatch.extra_outputs":
                p.value = value
        bad = tmp_path / "bad.onnx"
        onnx.save(proto, str(bad))
        with pytest.raises(ModelError, match=f"{bad}.*extra_outputs.*{why}"):
            read_meta(bad)
    proto = onnx.load(str(tiny_onnx))
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key != "synthmatch.extra_outputs"]
    del proto.metadata_props[:]
    for k, v in keep:
        proto.metadata_props.add(key=k, value=v)
    old = tmp_path / "old.onnx"
    onnx.save(proto, str(old))
    assert read_meta(old).extra_outputs == {}
