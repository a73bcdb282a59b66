"""Sound-matching models: raw audio (B, num_samples) -> 16 normalised parameters (B, 16) in [0, 1].

Every model starts with the log-mel front-end (training/frontend.py), so an ONNX export takes raw audio
and carries the front-end in its graph. Three kinds:

- "ast": Audio Spectrogram Transformer (Bruford et al., DAFx 2024, after Gong et al. 2021). The log-mel
  (n_mels x frames) is cut into (possibly overlapping) patches by a strided conv, a class token and
  learned positional embeddings are added, a pre-norm transformer encoder runs, and a 3-layer MLP head
  reads the class token. "ast-paper" is the paper's ViT-Base-sized model (~86M parameters).
- "mlp": the paper's 5-layer MLP baseline on the flattened log-mel.
- "cnn": the paper's 5-layer CNN baseline (conv-BN-ReLU-pool stages, global average pool, MLP head).

All shapes (patch grid, flattened size) are derived from the contract's n_mels and num_frames.
Attention uses F.scaled_dot_product_attention, which exports to ONNX opset 17 as plain MatMul/Softmax.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bridge.contract import Contract
from training.frontend import LogMel

KINDS = ("ast", "mlp", "cnn")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters. Fields a kind does not use are ignored by it (and still stored)."""

    kind: str = "ast"
    # ast: patch and stride as (mel bins, frames); dim = token width; depth = encoder layers
    patch: tuple[int, int] = (16, 16)
    stride: tuple[int, int] = (6, 6)
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    # head: `head_layers` linear layers of width head_hidden (ast, cnn); mlp: hidden width of every layer
    head_hidden: int = 512
    head_layers: int = 3
    dropout: float = 0.0
    # cnn: output channels of the conv stages (one 3x3 conv + BN + ReLU + 2x2 max-pool each)
    channels: tuple[int, ...] = (16, 32, 64, 128, 256)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"model kind {self.kind!r} is not one of {', '.join(KINDS)}")
        for name in ("patch", "stride"):
            v = getattr(self, name)
            if len(v) != 2 or min(v) < 1:
                raise ValueError(f"model {name} = {list(v)} must be two positive ints [mel bins, frames]")
        if self.kind == "ast" and self.dim % self.heads:
            raise ValueError(f"model dim {self.dim} must be divisible by heads {self.heads}")
        if self.depth < 1 or self.head_layers < 1 or not self.channels:
            raise ValueError("model depth, head_layers and channels must be at least 1 / non-empty")

    @classmethod
    def from_dict(cls, d: dict, where: str = "model") -> ModelConfig:
        """Build from a plain dict (TOML table, checkpoint). Unknown keys raise ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(known))}")
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)

    def to_dict(self) -> dict:
        """Plain dict (tuples as lists) for checkpoints and TOML/JSON."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def replace(self, **overrides: Any) -> ModelConfig:
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        return replace(self, **kw)


MODEL_CONFIGS: dict[str, ModelConfig] = {
    # the paper: 16x16 patches, stride 6 -> 9 x 64 = 576 patches on 64 x 398, ViT-Base encoder
    "ast-paper": ModelConfig("ast", (16, 16), (6, 6), dim=768, depth=12, heads=12),
    # GPU-friendly middle size: 16x16 patches, stride 10 -> 5 x 39 = 195 patches
    "ast-small": ModelConfig("ast", (16, 16), (10, 10), dim=192, depth=6, heads=3, head_hidden=256),
    # CPU-sized: non-overlapping 16x16 patches -> 4 x 24 = 96 patches
    "ast-tiny": ModelConfig("ast", (16, 16), (16, 16), dim=128, depth=4, heads=4, head_hidden=128),
    # baselines: 5 linear layers / 5 conv stages
    "mlp": ModelConfig("mlp", head_hidden=512, head_layers=5, dropout=0.1),
    "cnn": ModelConfig("cnn", channels=(16, 32, 64, 128, 256), head_hidden=256, head_layers=2, dropout=0.1),
}


def patch_grid(config: ModelConfig, contract: Contract) -> tuple[int, int]:
    """(rows, cols) of the AST patch grid over the (n_mels, num_frames) log-mel (no padding)."""
    n_mels, frames = contract.frontend.n_mels, contract.num_frames
    (ph, pw), (sh, sw) = config.patch, config.stride
    if ph > n_mels or pw > frames:
        raise ValueError(f"patch {list(config.patch)} is larger than the log-mel ({n_mels} x {frames})")
    return (n_mels - ph) // sh + 1, (frames - pw) // sw + 1


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    """Linear layers through `sizes`, GELU + dropout between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.GELU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class SoundMatcher(nn.Module):
    """Common shell: front-end in fp32 (even under autocast), then `features`, then a sigmoid."""

    def __init__(self, config: ModelConfig, contract: Contract):
        super().__init__()
        self.config = config
        self.frontend = LogMel(contract)
        self.n_mels, self.n_frames = contract.frontend.n_mels, contract.num_frames
        self.n_out = len(contract.params)

    def features(self, spec: torch.Tensor) -> torch.Tensor:  # (B, n_mels, frames) -> (B, n_out) logits
        raise NotImplementedError

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        # The DFT-as-conv front-end loses quiet bins in bf16/fp16; keep it fp32 under autocast. This is a
        # Python-level branch, so exports (traced without autocast) contain the plain fp32 path only.
        if torch.is_autocast_enabled(audio.device.type):
            with torch.autocast(audio.device.type, enabled=False):
                spec = self.frontend(audio.float())
        else:
            spec = self.frontend(audio)
        return torch.sigmoid(self.features(spec))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, D)
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, H, N, D / H)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, N, D))


class Block(nn.Module):
    """Pre-norm transformer encoder layer (ViT)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class AST(SoundMatcher):
    def __init__(self, config: ModelConfig, contract: Contract):
        super().__init__(config, contract)
        rows, cols = self.grid = patch_grid(config, contract)
        d = config.dim
        self.patch_embed = nn.Conv2d(1, d, kernel_size=config.patch, stride=config.stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + rows * cols, d))  # class token + patches
        self.pos_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(d, config.heads, config.mlp_ratio, config.dropout)
                                    for _ in range(config.depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = _mlp([d] + [config.head_hidden] * (config.head_layers - 1) + [self.n_out], config.dropout)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.weight  # like a linear layer on the flattened patch
        nn.init.trunc_normal_(w, std=1.0 / math.sqrt(w[0].numel()))
        nn.init.zeros_(self.patch_embed.bias)

    def features(self, spec: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(spec.unsqueeze(1))  # (B, D, rows, cols)
        x = x.flatten(2).transpose(1, 2)  # (B, rows * cols, D), row-major over (mel, time)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.pos_drop(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


class MLP(SoundMatcher):
    """head_layers linear layers of width head_hidden on the flattened (n_mels * frames) log-mel."""

    def __init__(self, config: ModelConfig, contract: Contract):
        super().__init__(config, contract)
        n_in = self.n_mels * self.n_frames
        self.net = _mlp([n_in] + [config.head_hidden] * (config.head_layers - 1) + [self.n_out],
                        config.dropout)

    def features(self, spec: torch.Tensor) -> torch.Tensor:
        return self.net(spec.flatten(1))


class CNN(SoundMatcher):
    """len(channels) conv stages (3x3 conv, BN, ReLU, 2x2 max-pool), global average pool, MLP head."""

    def __init__(self, config: ModelConfig, contract: Contract):
        super().__init__(config, contract)
        layers: list[nn.Module] = []
        c_in, h, w = 1, self.n_mels, self.n_frames
        for c in config.channels:
            if min(h, w) < 2:
                raise ValueError(f"cnn: {len(config.channels)} pooling stages shrink the "
                                 f"{self.n_mels} x {self.n_frames} log-mel below 1 x 1; use fewer channels")
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in, h, w = c, h // 2, w // 2
        self.convs = nn.Sequential(*layers)
        self.head = _mlp([c_in] + [config.head_hidden] * (config.head_layers - 1) + [self.n_out],
                         config.dropout)

    def features(self, spec: torch.Tensor) -> torch.Tensor:
        x = self.convs(spec.unsqueeze(1))  # (B, C, h, w)
        return self.head(x.mean(dim=(2, 3)))


_CLASSES = {"ast": AST, "mlp": MLP, "cnn": CNN}


def resolve_config(config: ModelConfig | str | dict) -> ModelConfig:
    """A ModelConfig from a preset name, a ModelConfig, or a dict ({"base": preset, **overrides} or a
    full set of fields). Raises ValueError naming unknown presets or keys."""
    if isinstance(config, ModelConfig):
        return config
    if isinstance(config, str):
        if config not in MODEL_CONFIGS:
            raise ValueError(f"unknown model {config!r}; presets: {', '.join(MODEL_CONFIGS)}")
        return MODEL_CONFIGS[config]
    if isinstance(config, dict):
        d = dict(config)
        base = d.pop("base", None)
        if base is None:
            return ModelConfig.from_dict(d)
        base_cfg = resolve_config(str(base))
        ModelConfig.from_dict({**base_cfg.to_dict(), **d})  # validates keys
        return base_cfg.replace(**d)
    raise TypeError(f"model config must be a preset name, dict or ModelConfig, not {type(config).__name__}")


def build_model(config: ModelConfig | str | dict, contract: Contract) -> SoundMatcher:
    """A fresh model (random init from torch's global RNG) for `contract`."""
    cfg = resolve_config(config)
    return _CLASSES[cfg.kind](cfg, contract)


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
