"""Models: shapes, ranges, gradients, parameter counts and config handling."""

from __future__ import annotations

import pytest
import torch

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.training.model.models import (
    MODEL_CONFIGS,
    ModelConfig,
    build_model,
    count_params,
    patch_grid,
    resolve_config,
)

C = contract_mod.default()


def _audio(n: int, samples: int = C.audio.num_samples) -> torch.Tensor:
    """n short sounds: decaying tones of different pitch (real signals, not noise)."""
    t = torch.arange(samples) / C.audio.sample_rate
    f0 = torch.tensor([220.0, 523.0, 90.0, 1500.0][:n])[:, None]
    return (0.5 * torch.sin(2 * torch.pi * f0 * t) * torch.exp(-t / 0.8)).float()


@pytest.mark.parametrize("name", [n for n in MODEL_CONFIGS if n != "ast-paper"])
def test_forward_backward(name):
    torch.manual_seed(0)
    model = build_model(name, C)
    y = model(_audio(2, model.num_samples))
    assert y.shape == (2, len(C.params)) and y.dtype == torch.float32
    assert bool(((y >= 0) & (y <= 1)).all())
    ((y - 0.25) ** 2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    # the two inputs differ, so must the predictions
    assert not torch.allclose(y[0], y[1])


def test_ast_paper_size_and_grid():
    cfg = MODEL_CONFIGS["ast-paper"]
    assert patch_grid(cfg, C) == (9, 64)  # 576 patches on 64 x 398, as in the paper
    model = build_model(cfg, C)
    assert 80e6 < count_params(model) < 95e6
    assert model.pos_embed.shape == (1, 1 + 576, 768)


def test_grid_follows_contract():
    import dataclasses

    short = dataclasses.replace(C, audio=dataclasses.replace(C.audio, duration_s=2.0))
    assert short.num_frames == 198
    assert patch_grid(MODEL_CONFIGS["ast-paper"], short) == (9, (198 - 16) // 6 + 1)
    y = build_model("ast-tiny", short)(torch.zeros(1, short.audio.num_samples))
    assert y.shape == (1, 16)


def test_autocast_keeps_frontend_fp32():
    torch.manual_seed(0)
    model = build_model("ast-tiny", C).eval()
    x = _audio(2)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x)
    assert (y.float() - ref).abs().max() < 0.02


def _low_precisions() -> list[tuple[str, torch.dtype]]:
    """Every (device, dtype) autocast this machine offers: bf16 on the CPU; bf16 and fp16 on a GPU."""
    kinds = [("cpu", torch.bfloat16)]
    if torch.cuda.is_available():
        kinds += [("cuda", torch.bfloat16), ("cuda", torch.float16)]
    return kinds


@pytest.mark.parametrize("device,dtype", _low_precisions())
def test_patch_embeddings_stay_fp32_and_finite_under_autocast(device, dtype):
    """oneDNN's bf16 convolution returned NaN from finite input on AMX-BF16 CPUs for the constant-Q patch
    embedding (and so every output): both embeddings run in fp32 whatever the autocast, so their outputs
    are fp32 here on any CPU or GPU, and the model's outputs finite and near fp32's."""
    torch.manual_seed(0)
    model = build_model("ast-tiny-notes", C).eval().to(device)
    seen: dict[str, torch.dtype] = {}

    def record(name: str):
        def hook(module, inputs, out) -> None:
            seen[name] = out.dtype

        return hook

    for name in ("patch_embed", "cqt_embed"):
        getattr(model, name).register_forward_hook(record(name))
    x, notes = (0.9 * _audio(4)).to(device), torch.tensor([48.0, 60.0, 36.0, 84.0], device=device)
    with torch.no_grad():
        ref = model(x, notes)
        seen.clear()
        with torch.autocast(device, dtype=dtype):
            y = model(x, notes)
    assert seen == {"patch_embed": torch.float32, "cqt_embed": torch.float32}
    assert bool(torch.isfinite(y).all()) and (y.float() - ref).abs().max() < 0.05


def test_config_overrides_and_errors():
    cfg = resolve_config({"base": "ast-tiny", "depth": 2, "patch": [8, 8], "stride": [8, 8]})
    assert cfg.depth == 2 and cfg.patch == (8, 8) and cfg.dim == MODEL_CONFIGS["ast-tiny"].dim
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown key 'depht'"):
        resolve_config({"base": "ast-tiny", "depht": 2})
    with pytest.raises(ValueError, match="unknown model 'ast-huge'"):
        resolve_config("ast-huge")
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig("ast", dim=100, heads=3)
