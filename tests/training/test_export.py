"""Export: torch vs ONNX Runtime (and vs the cuda backend's torch program) parity for every model kind,
metadata, the torch program's structure and pairing, the CLI, loud parity failures."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from synthmatch.bridge.cli import main as cli
from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.modelfile import read_meta
from synthmatch.bridge.engines import load_engine
from synthmatch.training.export import (
    PARITY_TOL,
    ExportError,
    export_model,
    parity_audio,
    torch_program,
    write_torch_artifact,
)
from synthmatch.training.model.checkpoint import save_checkpoint
from synthmatch.training.model.models import MODEL_CONFIGS, build_model, patch_grid, resolve_config
from synthmatch.training.synths.reference import ReferenceSynth

C = contract_mod.default()

# Every preset at a size that exports in about a second; the preset's own patch/stride/kind are kept, so
# "ast-paper" keeps its overlapping 16x16/6 patching (576 patches) with a 1-layer, 48-wide encoder.
SMALL = {
    "ast-paper": {"depth": 1, "dim": 48, "heads": 4, "head_hidden": 32},
    "ast-small": {"depth": 1, "dim": 48, "heads": 3, "head_hidden": 32},
    "ast-tiny": {"depth": 2, "dim": 32, "heads": 2, "head_hidden": 32},
    "mlp": {"head_hidden": 32},
    "cnn": {"channels": [4, 8, 8], "head_hidden": 16},
    "ast-tiny-cqt": {"depth": 1, "dim": 32, "heads": 2, "head_hidden": 32},
    "ast-tiny-notes": {"depth": 1, "dim": 32, "heads": 2, "head_hidden": 32},
    "ast-tiny-perf": {"depth": 1, "dim": 32, "heads": 2, "head_hidden": 32},
}


def test_every_preset_is_covered():
    assert set(SMALL) == set(MODEL_CONFIGS)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_export_parity(name, tmp_path):
    cfg = resolve_config({"base": name, **SMALL[name]})
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = build_model(cfg, C)
    if cfg.kind == "cnn":  # make BatchNorm's running stats non-trivial so eval-mode BN is really exported
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / f"{name}.onnx"
    result = export_model(model, C, path, cfg.to_dict(), {"step": 7})
    assert result.max_abs_diff < PARITY_TOL and result.path == path and result.weights_path == path.with_suffix(".pt")
    # the cuda backend's torch program, checked by export through that backend on the CPU
    assert result.program_path == path.with_suffix(".pt2") and result.program_max_abs_diff < PARITY_TOL
    assert result.meta.model_config == cfg.to_dict()
    if name == "ast-paper":  # structurally the paper's model: 9 x 64 overlapping patches
        assert patch_grid(cfg, C) == (9, 64) and tuple(cfg.stride) == (6, 6)
    # independent check on synth sounds at a batch size the trace never saw
    audio = ReferenceSynth(C).render(torch.rand(5, 16, generator=torch.Generator().manual_seed(3))).numpy()
    if model.num_samples < audio.shape[1]:  # a performance model: a window from the held part
        audio = np.ascontiguousarray(audio[:, 8000 : 8000 + model.num_samples])
    with torch.no_grad():
        ref = model(torch.from_numpy(audio)).numpy()
    with load_engine(path, "onnxruntime", performance=bool(cfg.window_s)) as engine:
        got = engine.infer(audio)
    assert np.abs(got - ref).max() < PARITY_TOL
    assert result.meta.num_samples == model.num_samples and result.meta.carries == cfg.carries


def test_a_performance_model_carries_its_window_and_outputs_and_is_refused_in_the_other_role(tmp_path):
    """Its metadata says its window (0.4 s) and what it answers for; the daemon's loader takes it only as
    the performance model, and a full model only as the full one, each refusal one line naming the fix."""
    from synthmatch.bridge.core.modelfile import ModelError

    paths = {}
    for name in ("ast-tiny-perf", "ast-tiny-notes"):
        cfg = resolve_config({"base": name, **SMALL[name]})
        paths[name] = tmp_path / f"{name}.onnx"
        export_model(build_model(cfg, C), C, paths[name], cfg.to_dict(), {}, weights=False, check=False)
    meta = read_meta(paths["ast-tiny-perf"])
    assert meta.num_samples == 6400 and meta.window_s == pytest.approx(0.4)
    assert "filter1_cutoff" in meta.carried and "env_attack" not in meta.carried and len(meta.carried) == 13
    assert read_meta(paths["ast-tiny-notes"]).carried == tuple(C.names)
    with pytest.raises(ModelError, match="a performance model .* use it as the bridge's continuous.model"):
        load_engine(paths["ast-tiny-perf"], "onnxruntime")
    with pytest.raises(ModelError, match="a full model .* use it as the bridge's model"):
        load_engine(paths["ast-tiny-notes"], "onnxruntime", performance=True)


def test_pitch_heads_top_classes_are_exported_and_equal_across_torch_onnxruntime_and_the_program(tmp_path):
    """A pitch-cls model's extra outputs: "pitch_top" and "pitch_prob" (B, 3 oscillators, TOP_K) after
    "params", listed in the metadata, the same from torch, ONNX Runtime and model.pt2 (the cuda backend
    on the CPU); column 0 is decode's pitch, probabilities best first."""
    from synthmatch.bridge.engines.cuda import TorchEngine
    from synthmatch.training.export import _outputs
    from synthmatch.training.model.heads import TOP_K

    cfg = resolve_config({"base": "ast-tiny-notes", **SMALL["ast-tiny-notes"]})
    with torch.random.fork_rng():
        torch.manual_seed(5)
        model = build_model(cfg, C).eval()
        with torch.no_grad():  # random weights score every class alike: spread them so the order is clear
            [*_, last] = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
            last.weight.mul_(40.0), last.bias.normal_(0.0, 3.0)
    path = tmp_path / "m.onnx"
    result = export_model(model, C, path, cfg.to_dict(), {})
    rows = ("osc1_pitch", "osc2_pitch", "osc3_pitch")
    assert result.meta.extra_outputs == {"pitch_top": rows, "pitch_prob": rows}
    assert result.meta.extra_shapes == {"pitch_top": (3, TOP_K), "pitch_prob": (3, TOP_K)}
    outs = onnx.load(str(path)).graph.output
    assert [o.name for o in outs] == ["params", "pitch_top", "pitch_prob"]
    assert [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in outs[1:]] == [
        ["batch", 3, TOP_K]
    ] * 2
    assert result.max_abs_diff < PARITY_TOL and result.program_max_abs_diff < PARITY_TOL
    audio = ReferenceSynth(C).render(torch.rand(5, 16, generator=torch.Generator().manual_seed(6))).numpy()
    notes = np.array([36, 48, 60, 72, 84], np.float32)
    with torch.no_grad():
        ref_values, ref_top, ref_prob = (
            t.numpy() for t in _outputs(model, torch.from_numpy(audio), torch.from_numpy(notes))
        )
    assert np.all(np.diff(ref_prob, axis=-1) < -1e-3)  # no near-ties: the class order is defined
    pitches = [C.names.index(r) for r in rows]
    np.testing.assert_array_equal(ref_top[..., 0], ref_values[:, pitches])  # column 0 is decode's answer
    assert np.all(ref_prob.sum(-1) <= 1 + 1e-6) and np.all(ref_prob > 0)
    with load_engine(path, "onnxruntime") as ort, TorchEngine(path, result.meta, device="cpu") as program:
        for engine in (ort, program):
            values, extras = engine.infer_full(audio, notes)
            assert list(extras) == ["pitch_top", "pitch_prob"]
            np.testing.assert_allclose(values, ref_values, atol=PARITY_TOL)
            np.testing.assert_allclose(extras["pitch_top"], ref_top, atol=PARITY_TOL)
            np.testing.assert_allclose(extras["pitch_prob"], ref_prob, atol=PARITY_TOL)
            np.testing.assert_array_equal(engine.infer(audio, notes), values)  # infer: the values alone


def test_a_model_without_the_pitch_head_has_no_extras(tiny_onnx):
    """An mse model exports "params" alone; infer_full returns no extras, and its metadata says so."""
    assert [o.name for o in onnx.load(str(tiny_onnx)).graph.output] == ["params"]
    meta = read_meta(tiny_onnx)
    assert meta.extra_outputs == {} and meta.extra_shapes == {}
    with load_engine(tiny_onnx, "onnxruntime") as engine:
        values, extras = engine.infer_full(parity_audio(C, 2))
        assert extras == {} and values.shape == (2, 16)


def test_graph_io_and_dynamic_batch(tiny_onnx):
    proto = onnx.load(str(tiny_onnx))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "audio" and out.name == "params"
    in_dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert in_dims == ["batch", 64000] and out_dims == ["batch", 16]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.opset_import[0].version == 17
    assert any(n.name.startswith("/frontend/") for n in proto.graph.node)  # front-end inside the graph


def _autocast_off_at(gm, op, off: tuple = ()) -> set[frozenset]:
    """For each call of `op` in a program's graph, the devices autocast is off for."""
    found = set()
    for node in gm.graph.nodes:
        if node.target is op:
            found.add(frozenset(off))
        if node.target is torch.ops.higher_order.wrap_with_autocast:
            device, _, enabled, _, body = node.args[:5]
            found |= _autocast_off_at(getattr(gm, body.target), op, off + (() if enabled else (device,)))
    return found


def test_torch_program_keeps_the_front_end_in_fp32_and_the_batch_dynamic():
    cfg = resolve_config({"base": "ast-tiny-notes", **SMALL["ast-tiny-notes"]})
    with torch.random.fork_rng():
        torch.manual_seed(4)
        model = build_model(cfg, C).eval()
    program = torch_program(model, C)
    # mel and constant-Q front-ends (conv1d) and both patch embeddings (conv2d: oneDNN's bf16 convolution
    # gave NaN on AMX CPUs) run where autocast is off, for the CPU and CUDA alike
    for op in (torch.ops.aten.conv1d.default, torch.ops.aten.conv2d.default):
        assert _autocast_off_at(program.graph_module, op) == {frozenset({"cpu", "cuda"})}
    inputs = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    assert inputs == ["audio", "note"] and program.example_inputs is None  # no pickled sample inputs
    (batch,) = program.range_constraints.values()
    assert (batch.lower, batch.upper) == (1, 32)
    audio = torch.from_numpy(parity_audio(C, 5))
    notes = torch.tensor([36.0, 48.0, 60.0, 72.0, 84.0])
    run = program.module()
    with torch.no_grad():
        ref = model(audio, notes)
        # a pitch-cls model: the values, then its top pitch classes and their probabilities
        assert torch.allclose(run(audio, notes)[0], ref, atol=1e-6)
        assert torch.allclose(run(audio[:1], notes[:1])[0], ref[:1], atol=1e-6)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = run(audio, notes)
    assert all(t.dtype == torch.float32 for t in low) and (low[0] - ref).abs().mean() < 2e-2


def test_torch_artifact_is_bound_to_its_onnx_file(tiny_onnx, tmp_path):
    """write_torch_artifact pairs a program with an existing export, only for the weights it came from."""
    import shutil

    cfg = resolve_config("ast-tiny")
    onnx_path = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, onnx_path)
    with pytest.raises(ExportError, match="export id .* but these weights are"):
        write_torch_artifact(build_model(cfg, C), onnx_path, C)  # other random weights
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the fixture's weights
        model = build_model(cfg, C)
    path = write_torch_artifact(model, onnx_path, C)
    assert path == onnx_path.with_suffix(".pt2")
    with load_engine(onnx_path, "onnxruntime") as engine:
        ref = engine.infer(parity_audio(C, 2))
    from synthmatch.bridge.engines.cuda import TorchEngine

    with TorchEngine(onnx_path, read_meta(onnx_path), device="cpu") as engine:
        assert np.abs(engine.infer(parity_audio(C, 2)) - ref).max() < PARITY_TOL


class _TraceFrozenBranch(nn.Module):
    """Control flow on the batch size: the tracer freezes the batch-2 branch, so batch 3 disagrees."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, 16)

    def forward(self, audio):
        y = torch.sigmoid(self.lin(audio[:, :64]))
        return y if audio.shape[0] == 2 else y * 0.5


def test_parity_failure_is_loud(tmp_path):
    with pytest.raises(ExportError, match="parity check failed.*must not be used"):
        export_model(_TraceFrozenBranch(), C, tmp_path / "bad.onnx", {"kind": "test"}, weights=False)


def test_cli_export_from_checkpoint(tmp_path, capsys):
    cfg = resolve_config({"base": "ast-tiny", **SMALL["ast-tiny"]})
    model = build_model(cfg, C)
    ckpt = save_checkpoint(
        tmp_path / "run" / "best.pt",
        model=model,
        model_config=cfg,
        contract=C,
        step=1234,
        train_config={"data": {"train": "data/train", "n": 100000}, "lr": 3e-4},
        metrics={"test": {"param_mae": 0.11}, "val_loss": 0.02},
    )
    out = tmp_path / "models" / "default.onnx"
    assert cli(["export", "--checkpoint", str(ckpt), "--out", str(out), "--opset", "17"]) == 0
    text = capsys.readouterr().out
    assert "parity torch vs onnxruntime: max abs diff" in text and "OK" in text and C.hash in text
    meta = read_meta(out)
    assert meta.summary["step"] == 1234 and meta.summary["checkpoint"] == "best.pt"
    assert meta.summary["data"] == {"train": "data/train", "n": 100000}
    assert meta.summary["metrics"]["test"] == {"param_mae": 0.11}
    assert out.with_suffix(".pt").is_file() and out.with_suffix(".pt2").is_file()
    assert "torch program for the cuda backend" in text and "parity torch vs torch program" in text
    assert cli(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.bin")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err


def test_cli_export_embeds_its_test_eval_and_notes(tmp_path, capsys):
    cfg = resolve_config({"base": "ast-tiny", **SMALL["ast-tiny"]})
    ckpt = save_checkpoint(tmp_path / "best.pt", model=build_model(cfg, C), model_config=cfg, contract=C, step=7)
    cache = tmp_path / "cache"
    common = ["--split", "test", "--size", "2", "--cache-dir", str(cache), "--examples", "1"]
    assert cli(["eval", "--checkpoint", str(ckpt), "--out", str(tmp_path / "ev"), "--device", "cpu", *common]) == 0
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    out = tmp_path / "m.onnx"
    assert (
        cli(
            [
                "export",
                "--checkpoint",
                str(ckpt),
                "--out",
                str(out),
                "--no-weights",
                "--test-eval",
                str(tmp_path / "ev" / "eval.json"),
                "--note",
                "hardware=2-core CPU, 3 s",
            ]
        )
        == 0
    )
    meta = read_meta(out)
    assert not out.with_suffix(".pt").exists() and not out.with_suffix(".pt2").exists()  # --no-weights
    assert meta.summary["test_metrics"]["param_mse"] == report["param_mse"]
    assert meta.summary["test_metrics"]["per_param_mse"] == report["param_mse_per_param"]
    assert meta.summary["hardware"] == "2-core CPU, 3 s"
    # an eval of something else is refused, naming why
    other = save_checkpoint(tmp_path / "other.pt", model=build_model(cfg, C), model_config=cfg, contract=C, step=8)
    capsys.readouterr()
    assert (
        cli(
            [
                "export",
                "--checkpoint",
                str(other),
                "--out",
                str(out),
                "--no-weights",
                "--test-eval",
                str(tmp_path / "ev" / "eval.json"),
            ]
        )
        == 2
    )
    assert "not " + str(other) in capsys.readouterr().err
    assert cli(["export", "--checkpoint", str(ckpt), "--out", str(out), "--note", "no-equals-sign"]) == 2


def test_parity_audio_is_fixed():
    a, b = parity_audio(C, 3), parity_audio(C, 3)
    assert a.shape == (3, 64000) and a.dtype == np.float32 and np.array_equal(a, b)
