"""The inference engine: ONNX Runtime results, backend choice and fallback, the torch backend's program
file (parity, stale and hostile files). tests/bridge/engines/test_engine_tensorrt.py builds real TensorRT-RTX
engines; tests/test_typecheck.py checks the TensorRT backend against its stubs."""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.modelfile import ModelError, read_meta
from synthmatch.bridge.engines import (
    BackendError,
    BackendUnavailable,
    choose,
    load_engine,
    nvidia_driver_absent,
)
from synthmatch.bridge.engines.ort import OnnxRuntimeEngine

ROOT = Path(__file__).resolve().parents[3]
C = contract_mod.default()
# the shipped performance model's answers across crops of one held patch (normalised units): median and
# largest per-parameter standard deviation (scripts/eval_perf.py on 32 test patches: median 0.009). The
# largest is an oscillator's pitch class: one crop of five an octave off is a deviation of 0.1
CROP_SPREAD_MEDIAN, CROP_SPREAD_MAX = 0.02, 0.15


def _audio(batch: int, seed: int = 0) -> np.ndarray:
    """Decaying harmonic tones at different pitches + a little noise: (batch, 64000) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(C.audio.num_samples) / C.audio.sample_rate
    rows = [
        sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * 0.3 * np.exp(-2 * t)
        + 0.01 * rng.standard_normal(t.size)
        for f0 in 110 * 2 ** (np.arange(batch) / 5)
    ]
    return np.stack(rows).astype(np.float32)


def test_onnxruntime_engine_infers(tiny_onnx):
    with load_engine(tiny_onnx, "onnxruntime", contract=C, threads=1) as engine:
        assert engine.name == "onnxruntime" and engine.meta.names == C.names
        audio = _audio(4)
        out = engine.infer(audio)
        assert out.shape == (4, 16) and out.dtype == np.float32
        assert np.all((out >= 0) & (out <= 1)) and np.all(np.isfinite(out))
        assert np.ptp(out, axis=0).max() > 1e-6  # different sounds, different predictions (random init: ~0.5)
        # batching does not change a row's result
        np.testing.assert_allclose(engine.infer(audio[2:3])[0], out[2], atol=1e-5)
        assert engine.infer(np.zeros((0, 64000), np.float32)).shape == (0, 16)
        with pytest.raises(ValueError, match=r"shape \(batch, 64000\)"):
            engine.infer(audio[:, :16000])
        with pytest.raises(ValueError):
            engine.infer(audio[0])  # 1-D: the caller must say batch 1
        # float64 input is converted
        np.testing.assert_allclose(engine.infer(audio[:1].astype(np.float64)), out[:1], atol=1e-6)


def test_torch_backend_matches_onnxruntime_on_cpu(tiny_onnx):
    """The "cuda" backend's code path (model.pt2, a torch.export program loaded with torch alone), run on
    the CPU: fp32 matches ONNX Runtime; bf16 autocast runs and stays close (its front-end kept in fp32)."""
    from synthmatch.bridge.engines.cuda import TorchEngine

    meta = read_meta(tiny_onnx)
    ort = OnnxRuntimeEngine(tiny_onnx, meta)
    audio = _audio(3, seed=1)
    ref = ort.infer(audio)
    with TorchEngine(tiny_onnx, meta, device="cpu") as torch_engine:
        assert torch_engine.precision == "fp32" and not torch_engine.use_graphs
        assert np.abs(torch_engine.infer(audio) - ref).max() < 1e-4
        np.testing.assert_allclose(torch_engine.infer(audio[1:2])[0], torch_engine.infer(audio)[1], atol=1e-5)
    with TorchEngine(tiny_onnx, meta, device="cpu", precision="bf16") as bf16:
        diff = np.abs(bf16.infer(audio) - ref).max()
        assert bf16.detail == "cpu bf16" and 0 < diff < 2e-2  # really in bf16, and close


def test_shipped_models_torch_program_matches_onnxruntime():
    """models/default.pt2 belongs to models/default.onnx (same export id) and computes it, note input
    included: fp32 within 1e-4 of ONNX Runtime, bf16 autocast close on average."""
    pytest.importorskip("torch")  # the runtime venv has none: the cuda backend is then unavailable
    from synthmatch.bridge.engines.cuda import TorchEngine

    onnx_path = ROOT / "models" / "default.onnx"
    meta = read_meta(onnx_path)
    assert meta.takes_note
    audio = _audio(6, seed=2)
    notes = np.array([36, 48, 60, 60, 72, 84], np.float32)
    ref = OnnxRuntimeEngine(onnx_path, meta, threads=1).infer(audio, notes)
    with TorchEngine(onnx_path, meta, device="cpu") as engine:
        assert np.abs(engine.infer(audio, notes) - ref).max() < 1e-4
    with TorchEngine(onnx_path, meta, device="cpu", precision="bf16") as engine:
        assert np.abs(engine.infer(audio, notes) - ref).mean() < 5e-3  # front-end in bf16 would be ~2e-2


def test_shipped_model_returns_its_pitch_heads_top_classes():
    """models/default.onnx has the extra outputs (three pitch classes per oscillator and their
    probabilities); infer_full returns them, infer the same values alone; the .pt2 program agrees."""
    onnx_path = ROOT / "models" / "default.onnx"
    meta = read_meta(onnx_path)
    assert list(meta.extra_outputs) == ["pitch_top", "pitch_prob"]
    audio = _audio(4, seed=5)
    notes = np.array([36, 55, 60, 79], np.float32)
    with OnnxRuntimeEngine(onnx_path, meta, threads=1) as engine:
        values, extras = engine.infer_full(audio, notes)
        np.testing.assert_array_equal(values, engine.infer(audio, notes))
    top, prob = extras["pitch_top"], extras["pitch_prob"]
    assert top.shape == prob.shape == (4, 3, 3) and top.dtype == prob.dtype == np.float32
    pitches = [C.names.index(n) for n in meta.extra_outputs["pitch_top"]]
    np.testing.assert_allclose(top[..., 0], values[:, pitches], atol=1e-6)  # the answer is the top class
    assert np.all(np.diff(prob, axis=-1) <= 0) and np.all(prob > 0) and np.all(prob.sum(-1) <= 1 + 1e-5)
    assert np.all((top >= 0) & (top <= 1))
    if importlib.util.find_spec("torch") is None:  # the runtime venv: no cuda backend
        return
    from synthmatch.bridge.engines.cuda import TorchEngine

    with TorchEngine(onnx_path, meta, device="cpu") as engine:
        got_values, got = engine.infer_full(audio, notes)
    assert np.abs(got_values - values).max() < 1e-4
    assert all(np.abs(got[k] - extras[k]).max() < 1e-4 for k in extras)


def test_torch_program_moves_to_another_device_whole(tiny_notes_onnx):
    """What the GPU path does after loading (move_to_device_pass), checked here on the meta device: every
    weight, kernel and device baked into the graph (torch.arange in the note shift) moves, so nothing
    stays on the CPU to mix with GPU tensors."""
    import torch
    from torch.export.passes import move_to_device_pass

    from synthmatch.bridge.engines.cuda import load_program

    run = move_to_device_pass(load_program(tiny_notes_onnx, read_meta(tiny_notes_onnx)), "meta").module()
    graphs = [m for m in run.modules() if isinstance(m, torch.fx.GraphModule)]
    baked = {str(n.kwargs["device"]) for g in graphs for n in g.graph.nodes if "device" in n.kwargs}
    assert baked == {"meta"} and {t.device.type for t in [*run.parameters(), *run.buffers()]} == {"meta"}
    with torch.inference_mode():
        out = run(torch.zeros(4, C.audio.num_samples, device="meta"), torch.full((4,), 60.0, device="meta"))
    values, top, prob = out  # a pitch-cls model: the values, then its top pitch classes and their probabilities
    assert all(t.device.type == "meta" and t.dtype == torch.float32 for t in out)
    assert tuple(values.shape) == (4, 16) and tuple(top.shape) == tuple(prob.shape) == (4, 3, 3)


def _rewrite(src: Path, dst: Path, edit) -> None:
    """Copy the zip archive src to dst, member by member through edit(name, data) -> bytes | None (drop)."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            data = edit(info.filename[len(root) + 1 :], zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
        extra = edit("<add>", b"")
        if extra:
            zout.writestr(f"{root}/{extra[0]}", extra[1])


def _json_edit(member: str, change):
    import json

    def edit(name, data):
        if name != member:
            return None if name == "<add>" else data
        doc = json.loads(data)
        change(doc)
        return json.dumps(doc).encode()

    return edit


def test_torch_backend_refuses_a_missing_or_stale_program(tiny_onnx, tmp_path):
    from synthmatch.bridge.engines.cuda import TorchEngine

    model = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, model)
    meta = read_meta(model)
    with pytest.raises(BackendUnavailable, match=r"no torch program .*m\.pt2 .*`synthmatch export`"):
        TorchEngine(model, meta, device="cpu")
    _rewrite(
        tiny_onnx.with_suffix(".pt2"),
        model.with_suffix(".pt2"),
        _json_edit("extra/synthmatch.json", lambda d: d.update(export_id="0123456789abcdef")),
    )
    with pytest.raises(ModelError, match="export id 0123456789abcdef.* does not belong to .*synthmatch export") as e:
        TorchEngine(model, meta, device="cpu")
    assert "\n" not in str(e.value)


def _set_first(key: str, value):
    """A change to a parsed models/model.json: the first string under `key` (depth first) becomes value."""

    def change(doc):
        stack = [doc]
        while stack:
            node = stack.pop()
            items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
            for k, v in items:
                if k == key and isinstance(v, str):
                    node[k] = value
                    return
                if k == key and isinstance(v, list) and v and isinstance(v[0], str):
                    v[0] = value
                    return
                stack.append(v)
        raise AssertionError(f"no {key} in the program")

    return change


def _pickled_weight(doc):
    doc["config"][next(iter(doc["config"]))]["use_pickle"] = True


HOSTILE = {
    "pickled weight": _json_edit("data/weights/model_weights_config.json", _pickled_weight),
    "pickled sample inputs": lambda n, d: b"\x80\x02N." if n == "data/sample_inputs/model.pt" else _keep(n, d),
    "shared library": lambda n, d: ("data/aotinductor/model/model.so", b"\x7fELF") if n == "<add>" else d,
    "node target": _json_edit("models/model.json", _set_first("target", "torch.os.system")),
    "attribute of aten": _json_edit("models/model.json", _set_first("target", "torch.ops.aten.__dict__.get")),
    "guard code": _json_edit("models/model.json", lambda d: d.update(guards_code=["__import__('os').getcwd()"])),
    "sympy expression": _json_edit("models/model.json", _set_first("expr_str", "__import__('os').getcwd()")),
    "control character": _json_edit("models/model.json", _set_first("torch_fn", "x\rimport os")),
    "argument name": _json_edit("models/model.json", _set_first("forward_arg_names", "a=__import__('os')")),
}


def _keep(name, data):
    return None if name == "<add>" else data


@pytest.mark.parametrize("what", sorted(HOSTILE))
def test_torch_program_check_refuses_what_export_does_not_write(tiny_onnx, tmp_path, monkeypatch, what):
    """model.pt2 is read with zipfile + json and refused before torch.export.load sees it when it holds a
    pickle, a shared library, code for eval/exec, or a node target outside the ATen operators."""
    import torch

    from synthmatch.bridge.engines.cuda import TorchEngine

    model = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, model)
    _rewrite(tiny_onnx.with_suffix(".pt2"), model.with_suffix(".pt2"), HOSTILE[what])

    def never(*a, **k):
        raise AssertionError("torch.export.load was reached")

    monkeypatch.setattr(torch.export, "load", never)
    with pytest.raises(ModelError, match="not a torch program written by `synthmatch export`"):
        TorchEngine(model, read_meta(model), device="cpu")


def test_auto_picks_onnxruntime_here_and_logs_one_line(tiny_onnx, caplog):
    if not nvidia_driver_absent():
        pytest.skip("this machine has an NVIDIA driver: auto may pick a GPU backend")
    with caplog.at_level(logging.INFO, logger="synthmatch.engine"):
        engine = load_engine(tiny_onnx)  # default: auto, repository contract
    lines = [r for r in caplog.records if r.name == "synthmatch.engine"]
    assert engine.name == "onnxruntime" and len(lines) == 1 and lines[0].levelno == logging.INFO
    msg = lines[0].getMessage()
    assert "onnxruntime" in msg and "tensorrt unavailable" in msg and "cuda unavailable" in msg


def test_explicit_missing_backend_raises(tiny_onnx):
    if importlib.util.find_spec("tensorrt") is not None and not nvidia_driver_absent():
        pytest.skip("TensorRT and a GPU may be present")
    with pytest.raises(BackendUnavailable, match="tensorrt: .*--backend onnxruntime"):
        load_engine(tiny_onnx, "tensorrt")
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        load_engine(tiny_onnx, "gpu")


def test_fallback_when_a_backend_fails_to_build(tiny_onnx, tmp_path, caplog):
    """A backend that is present but cannot build the model falls back, with one WARNING line."""
    from synthmatch.bridge.engines import _open_onnxruntime, _open_tensorrt
    from synthmatch.bridge.engines.cuda import TorchEngine

    model = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, model)
    model.with_suffix(".pt2").write_bytes(b"PK\x03\x04 not a torch file")  # damaged torch program
    meta = read_meta(model)
    candidates = [
        ("tensorrt", partial(_open_tensorrt, cache_dir=tmp_path)),
        ("cuda", partial(TorchEngine, device="cpu")),  # the torch backend, really built
        ("onnxruntime", _open_onnxruntime),
    ]
    with caplog.at_level(logging.INFO, logger="synthmatch.engine"):
        engine = choose(model, meta, candidates)
    lines = [r for r in caplog.records if r.name == "synthmatch.engine"]
    assert engine.name == "onnxruntime" and len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "cuda failed to build" in lines[0].getMessage() and "m.pt2" in lines[0].getMessage()
    # nothing opens -> BackendError listing every reason
    with pytest.raises(BackendError, match="no inference backend.*cuda failed to build"):
        choose(model, meta, candidates[:2])
    # a working cuda candidate is taken before onnxruntime
    with_weights = choose(tiny_onnx, read_meta(tiny_onnx), [("cuda", partial(TorchEngine, device="cpu"))])
    assert with_weights.name == "cuda"


def test_a_backend_whose_outputs_go_non_finite_on_a_loud_tone_is_skipped_or_refused(tiny_onnx, monkeypatch, caplog):
    """The fault seen on AMX CPUs: the torch backend in bf16 fine on silence, NaN on sound. Its load check
    plays a loud tone too, so "auto" falls back with one WARNING and an explicit --backend cuda is refused
    in one line; onnxruntime (the fp32 reference) keeps the silent check alone."""
    pytest.importorskip("torch")
    from synthmatch.bridge import engines
    from synthmatch.bridge.engines import ModelOutputError, _checked, _open_onnxruntime
    from synthmatch.bridge.engines.cuda import TorchEngine

    class NanOnSound(TorchEngine):
        def _run(self, audio, notes):
            out = super()._run(audio, notes)
            return np.where(np.abs(audio).max(1, keepdims=True) > 0, np.nan, out)

    faulty = partial(NanOnSound, device="cpu", precision="bf16")
    meta = read_meta(tiny_onnx)
    with caplog.at_level(logging.INFO, logger="synthmatch.engine"):
        engine = choose(tiny_onnx, meta, [("cuda", _checked(faulty)), ("onnxruntime", _checked(_open_onnxruntime))])
    lines = [r.getMessage() for r in caplog.records if r.name == "synthmatch.engine"]
    assert engine.name == "onnxruntime" and len(lines) == 1
    assert "cuda failed its load check" in lines[0] and "on a loud tone 16 of 16 outputs are not finite" in lines[0]
    monkeypatch.setitem(engines.OPENERS, "cuda", lambda p, m, **_: faulty(p, m))
    with pytest.raises(ModelOutputError, match="loud tone.*cuda backend.*--backend onnxruntime"):
        load_engine(tiny_onnx, "cuda")


def test_runtime_modules_do_not_import_torch(tiny_onnx):
    code = (
        "import sys, numpy as np\n"
        "import synthmatch.bridge.engines, synthmatch.bridge.engines.tensorrt\n"
        "import synthmatch.bridge.engines.cuda, synthmatch.bridge.core.modelfile\n"
        f"e = synthmatch.bridge.engines.load_engine({str(tiny_onnx)!r}, 'onnxruntime')\n"
        "assert e.infer(np.zeros((1, 64000), np.float32)).shape == (1, 16)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_check_gpu_script_without_gpu_says_so():
    import json
    import os

    if not nvidia_driver_absent():
        pytest.skip("this machine has an NVIDIA driver: check_gpu.py would really run")
    pytest.importorskip("torch")  # without it the script's reason is that torch is missing, not the GPU
    r = subprocess.run(
        [sys.executable, "scripts/check_gpu.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["gpu"] is False and "CUDA" in report["reason"]


def test_cuda_graph_batch_buckets():
    from synthmatch.bridge.engines.cuda import graph_batch

    sizes = {b: graph_batch(b) for b in range(1, 33)}
    assert all(b <= g <= 32 and g & (g - 1) == 0 for b, g in sizes.items())
    assert set(sizes.values()) == {1, 2, 4, 8, 16, 32} and sizes[1] == 1 and sizes[17] == 32


def test_shipped_performance_model_answers_a_held_patch_alike_whichever_crop_it_reads():
    """models/performance.onnx (issue 19) on five 0.4 s windows of one held reference-synth patch (ending
    1.0-2.9 s into the note: the sustain): the answers for what it carries agree within a tolerance, and
    two different patches are told apart by more than that."""
    from synthmatch.bridge.match.synth import Synth

    onnx_path = ROOT / "models" / "performance.onnx"
    meta = read_meta(onnx_path)
    assert meta.performance and meta.num_samples == 6400 and len(meta.carried) == 13
    carried = [C.names.index(n) for n in meta.carried]
    patches = np.random.default_rng(11).uniform(0.15, 0.85, (2, 16)).astype(np.float32)
    audio = Synth(C).render(patches, 55)
    ends = np.linspace(1.0, 2.9, 5) * C.audio.sample_rate
    crops = np.stack([audio[k, int(e) - 6400 : int(e)] for k in range(2) for e in ends])
    with OnnxRuntimeEngine(onnx_path, meta, threads=1) as engine:
        got = engine.infer(crops, np.full(10, 55, np.float32))[:, carried].reshape(2, 5, -1)
    spread = got.std(axis=1)  # (2 patches, 13): across the crops of one patch
    assert np.median(spread) <= CROP_SPREAD_MEDIAN and spread.max() <= CROP_SPREAD_MAX, spread
    apart = np.abs(got[0].mean(0) - got[1].mean(0))
    assert np.median(apart) > 2 * CROP_SPREAD_MEDIAN, apart
