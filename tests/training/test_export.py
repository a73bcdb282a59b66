"""Export: torch vs ONNX Runtime parity for every model kind, metadata, the CLI, loud parity failures."""

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
from synthmatch.training.checkpoint import save_checkpoint
from synthmatch.training.export import PARITY_TOL, ExportError, export_model, parity_audio
from synthmatch.training.models import MODEL_CONFIGS, build_model, patch_grid, resolve_config
from synthmatch.training.synth import ReferenceSynth

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
    assert result.meta.model_config == cfg.to_dict()
    if name == "ast-paper":  # structurally the paper's model: 9 x 64 overlapping patches
        assert patch_grid(cfg, C) == (9, 64) and tuple(cfg.stride) == (6, 6)
    # independent check on synth sounds at a batch size the trace never saw
    audio = ReferenceSynth(C).render(torch.rand(5, 16, generator=torch.Generator().manual_seed(3))).numpy()
    with torch.no_grad():
        ref = model(torch.from_numpy(audio)).numpy()
    with load_engine(path, "onnxruntime") as engine:
        got = engine.infer(audio)
    assert np.abs(got - ref).max() < PARITY_TOL


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
    assert out.with_suffix(".pt").is_file()
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
