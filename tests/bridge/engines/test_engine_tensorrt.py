"""The TensorRT backend with real TensorRT-RTX engines, built on this machine (no GPU needed to build):
the shipped model and an exported ast-paper, the parsed network against the model's embedded contract,
the engine cache (keys, header, rebuilds), the `synthmatch engine build` command and the error paths,
including the one line a machine without a GPU gets at run time.

The ast-paper here is the paper's architecture (16x16 patches, stride 6, 576 patches, 768 wide, 12
heads) at depth 1: the full 12-layer export takes ~26 s on 2 cores (346 MB), its build ~4 s more."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

trt = pytest.importorskip("tensorrt_rtx")  # bash scripts/setup.sh --dev installs tensorrt-rtx-cu12

from synthmatch.bridge.cli import main as cli  # noqa: E402
from synthmatch.bridge.core.modelfile import INPUT_NAME, NOTE_NAME, OUTPUT_NAME, read_meta  # noqa: E402
from synthmatch.bridge.engines import BackendError, BackendUnavailable, load_engine, nvidia_driver_absent  # noqa: E402
from synthmatch.bridge.engines.tensorrt import TensorRTEngine  # noqa: E402
from synthmatch.bridge.engines.tensorrt_build import (  # noqa: E402
    FLAVOURS,
    HEADER_MAGIC,
    EngineSpec,
    cache_file,
    check_runnable,
    ensure_engine,
    network_io,
    parse,
)

ROOT = Path(__file__).resolve().parents[3]
DEFAULT = ROOT / "models" / "default.onnx"
RTX = FLAVOURS["tensorrt-rtx"]
AST_PAPER_DEPTH1 = {"base": "ast-paper", "depth": 1}


@pytest.fixture(scope="module")
def ast_paper(tmp_path_factory) -> Path:
    """An exported ast-paper (depth 1, random weights, seed 0), parity-checked by export."""
    torch = pytest.importorskip("torch")
    from synthmatch.bridge.core import contract
    from synthmatch.training.export import export_model
    from synthmatch.training.model.models import build_model, resolve_config

    c = contract.default()
    cfg = resolve_config(AST_PAPER_DEPTH1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(cfg, c).eval()
    path = tmp_path_factory.mktemp("ast_paper") / "ast-paper.onnx"
    export_model(model, c, path, cfg.to_dict(), {"note": "random weights (test)"}, weights=False)
    return path


def _contract_io(meta) -> dict:
    """What the metadata says: float32 audio (batch, num_samples) and, for a model told the note, float32
    notes (batch,); a float32 output (batch, params), then the extra outputs it declares (batch, rows, k)."""
    inputs = [(INPUT_NAME, (-1, meta.num_samples), "float32")] + [(NOTE_NAME, (-1,), "float32")] * meta.takes_note
    extras = [(name, (-1, *meta.extra_shapes[name]), "float32") for name in meta.extra_outputs]
    return {"inputs": inputs, "outputs": [(OUTPUT_NAME, (-1, len(meta.names)), "float32"), *extras]}


def _copy_with_meta(src: Path, dst: Path, **changes) -> Path:
    """`src` with some synthmatch.* metadata values replaced (JSON), written to `dst`."""
    import onnx

    proto = onnx.load(str(src))
    for p in proto.metadata_props:
        key = p.key.removeprefix("synthmatch.")
        if key in changes:
            p.value = json.dumps(changes[key])
    onnx.save(proto, str(dst))
    return dst


def _assert_well_formed(plan: bytes) -> None:
    """The runtime's own check of a serialized plan: not malformed, not from another version. Without a
    CUDA driver it still says INVALID (it cannot read the GPU), with no diagnostic bit set."""
    validity, diagnostics = trt.Runtime(trt.Logger(trt.Logger.ERROR)).get_engine_validity(plan)
    bad = int(trt.EngineInvalidityDiagnostics.MALFORMED_ENGINE) | int(trt.EngineInvalidityDiagnostics.VERSION_MISMATCH)
    assert not int(diagnostics) & bad, (validity, diagnostics)
    if nvidia_driver_absent():
        assert validity == trt.EngineValidity.INVALID and int(diagnostics) == 0


@pytest.mark.parametrize("which", ["default", "ast-paper"])
def test_engine_is_built_from_the_model_and_cached(which, ast_paper, tmp_path):
    path = DEFAULT if which == "default" else ast_paper
    meta = read_meta(path)
    logger = trt.Logger(trt.Logger.WARNING)
    _builder, network, _parser = parse(RTX, trt, path, logger)
    assert network_io(network) == _contract_io(meta)

    built = ensure_engine(path, "tensorrt-rtx", cache_dir=tmp_path)
    assert built.build_s is not None and built.file.parent == tmp_path
    assert built.spec.flavour == "tensorrt-rtx" and built.spec.flavour_version == trt.__version__
    assert built.spec.precision == "fp32" and built.spec.targets == ("default",)
    assert built.spec.num_samples == meta.num_samples and built.spec.export_id == meta.export_id
    # the fp32 weights are inside the plan: at least half the ONNX file's size
    assert built.size > path.stat().st_size / 2
    _assert_well_formed(built.plan)
    data = built.file.read_bytes()
    assert data.startswith(HEADER_MAGIC) and data.endswith(built.plan)
    header = json.loads(data[len(HEADER_MAGIC) : data.index(b"\n", len(HEADER_MAGIC))])
    assert header["spec"] == built.spec.to_json() and header["plan_bytes"] == built.size

    again = ensure_engine(path, "rtx", cache_dir=tmp_path)  # found, not rebuilt
    assert again.build_s is None and again.file == built.file and again.plan == built.plan
    assert sorted(p.name for p in tmp_path.iterdir()) == [built.file.name]


def test_cache_key_covers_every_field():
    base = EngineSpec(
        "tensorrt-rtx", "1.7.1.116", "0.1.0", "ab" * 32, "c7557209ebec47a1", "fp32", ("default",), 64000, 32
    )
    key = base.key()
    assert key == EngineSpec(**base.__dict__).key() and len(key) == 20
    changes = dict(
        flavour="tensorrt",
        flavour_version="1.6.1.120",
        synthmatch_version="0.2.0",
        model_sha256="cd" * 32,
        export_id="0123456789abcdef",
        precision="fp16",
        targets=("sm89", "NVIDIA GeForce RTX 4090"),
        num_samples=48000,
        max_batch=16,
    )
    keys = {EngineSpec(**{**base.__dict__, k: v}).key() for k, v in changes.items()}
    assert len(keys) == len(changes) and key not in keys


def test_a_changed_model_gets_its_own_engine_and_a_foreign_one_is_rebuilt(tmp_path, caplog):
    a = ensure_engine(DEFAULT, cache_dir=tmp_path)
    other = _copy_with_meta(DEFAULT, tmp_path / "default.onnx", summary={"note": "retrained"})
    b = ensure_engine(other, cache_dir=tmp_path)
    assert b.build_s is not None and b.spec.model_sha256 != a.spec.model_sha256 and b.file != a.file
    # an engine of model A under the name model B's spec expects is refused by its header and rebuilt
    shutil.copy(a.file, b.file)
    with caplog.at_level(logging.WARNING, logger="synthmatch.engine"):
        rebuilt = ensure_engine(other, cache_dir=tmp_path)
    assert rebuilt.build_s is not None
    assert "was built for another model_sha256" in caplog.text and "rebuilding" in caplog.text
    assert json.loads(b.file.read_bytes().split(b"\n")[1])["spec"]["model_sha256"] == b.spec.model_sha256


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda d: d[:-1000], "truncated or damaged"),
        (lambda d: d[:-10] + bytes(10), "truncated or damaged"),
        (lambda d: b"\x00" * 64, "not a synthmatch engine file"),
        (lambda d: HEADER_MAGIC + b"{not json\n" + d[-100:], "damaged header"),
    ],
)
def test_a_damaged_cache_file_is_rebuilt(damage, why, tmp_path, caplog):
    good = ensure_engine(DEFAULT, cache_dir=tmp_path)
    good.file.write_bytes(damage(good.file.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="synthmatch.engine"):
        again = ensure_engine(DEFAULT, cache_dir=tmp_path)
    assert again.build_s is not None and why in caplog.text
    assert good.file.read_bytes().endswith(again.plan) and len(again.plan) == good.size


def test_engine_build_command(tmp_path, capsys):
    assert cli(["engine", "build", "--model", str(DEFAULT), "--cache-dir", str(tmp_path)]) == 0
    line = capsys.readouterr().out.strip()
    files = list(tmp_path.glob("default-tensorrt-rtx-*.engine"))
    assert len(files) == 1 and str(files[0]) in line and "built in" in line and "\n" not in line
    assert cli(["engine", "build", "--model", str(DEFAULT), "--cache-dir", str(tmp_path)]) == 0
    assert "cached" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "{tmp}/missing.onnx"], "missing.onnx: model file not found"),
        (["--precision", "fp16"], "an fp16 engine needs an fp16 export"),
    ],
)
def test_engine_build_command_errors_in_one_line(argv, message, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert cli(["engine", "build", "--cache-dir", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("synthmatch engine: error: ") and message in err and err.count("\n") == 1
    assert not list(tmp_path.glob("*.engine"))


def test_a_model_whose_graph_disagrees_with_its_metadata_is_refused(tmp_path):
    meta = read_meta(DEFAULT)
    lying = _copy_with_meta(DEFAULT, tmp_path / "lying.onnx", num_samples=meta.num_samples + 1)
    with pytest.raises(BackendError, match="the parsed network has .* its metadata says"):
        ensure_engine(lying, cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.engine"))


def test_without_a_gpu_running_says_so_in_one_line(tmp_path, caplog):
    if not nvidia_driver_absent():
        pytest.skip("this machine has an NVIDIA driver")
    built = ensure_engine(DEFAULT, cache_dir=tmp_path)
    runtime = trt.Runtime(trt.Logger(trt.Logger.INTERNAL_ERROR))
    with pytest.raises(BackendUnavailable) as e:  # the runtime's validity check, on the real plan
        check_runnable(RTX, runtime, built.plan, None)
    assert str(e.value).startswith("tensorrt-rtx: cannot run engines on this machine") and "\n" not in str(e.value)
    with pytest.raises(BackendUnavailable, match="malformed engine"):
        check_runnable(RTX, runtime, b"\x01" * 4096, None)
    with pytest.raises(BackendUnavailable, match=r"^tensorrt-rtx: no CUDA GPU visible to torch"):
        TensorRTEngine(DEFAULT, read_meta(DEFAULT), cache_dir=tmp_path, flavour="tensorrt-rtx")
    with pytest.raises(BackendUnavailable, match=r"^tensorrt-rtx: no NVIDIA GPU driver.*--backend onnxruntime"):
        load_engine(DEFAULT, "tensorrt-rtx", cache_dir=tmp_path)
    # auto moves on, in order, in one line
    with caplog.at_level(logging.INFO, logger="synthmatch.engine"):
        engine = load_engine(DEFAULT, "auto", cache_dir=tmp_path)
    engine.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "synthmatch.engine"]
    assert engine.name == "onnxruntime" and len(lines) == 1
    order = [lines[0].index(f"{b} unavailable") for b in ("tensorrt", "tensorrt-rtx", "cuda")]
    assert order == sorted(order)


def test_cache_file_names_the_model_and_flavour(tmp_path):
    built = ensure_engine(DEFAULT, cache_dir=tmp_path)
    assert built.file == cache_file(tmp_path, DEFAULT, built.spec)
    assert built.file.name == f"{DEFAULT.stem}-tensorrt-rtx-{built.spec.key()}.engine"
