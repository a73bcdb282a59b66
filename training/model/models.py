"""Sound-matching models: raw audio (B, num_samples) -> 16 normalised parameters (B, 16) in [0, 1].

Every model starts with its front-end (training/model/frontend.py), so an ONNX export takes raw audio and
carries the front-end in its graph. The front-end belongs to the model (its config, stored in checkpoints
and in the ONNX metadata): "mel" is the paper's 64-band log-mel (the contract's [frontend]); "mel+cqt"
adds a constant-Q view (36 bins per octave, ~1 s windows at the bottom) that resolves oscillator pitch.
Views are computed once and kept apart: a model's `body` reads a tuple of views, so training can read
views cached from shards (training.data.featcache) and skip the front-end.

Two heads (training.model.heads): "mse" (16 sigmoids, MSE: the paper's) and "pitch-cls" (each oscillator's
pitch as a class over whole semitones plus a residual, cross-entropy; oscillator pitch and position
weighted by how audible the oscillator is). Both decode to the same 16 normalised values.

Three kinds:

- "ast": Audio Spectrogram Transformer (Bruford et al., DAFx 2024, after Gong et al. 2021). The log-mel
  (n_mels x frames) is cut into (possibly overlapping) patches by a strided conv, a class token and
  learned positional embeddings are added, a pre-norm transformer encoder runs, and a 3-layer MLP head
  reads the class token. "ast-paper" is the paper's ViT-Base-sized model (~86M parameters).
- "mlp": the paper's 5-layer MLP baseline on the flattened log-mel.
- "cnn": the paper's 5-layer CNN baseline (conv-BN-ReLU-pool stages, global average pool, MLP head).

All shapes (patch grid, token counts, flattened size) are derived from the contract and the views.
Attention uses F.scaled_dot_product_attention, which exports to ONNX opset 17 as plain MatMul/Softmax.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from synthmatch.bridge.core.contract import PARAM_NAMES, Contract
from synthmatch.bridge.core.frontend import CQTSpec
from synthmatch.bridge.core.loader import load_dataclass
from synthmatch.bridge.match.held import HELD_FIXED
from synthmatch.training.model.frontend import LogCQT, LogMel
from synthmatch.training.model.heads import HEADS, HarmonicSalience, make_head

KINDS = ("ast", "mlp", "cnn")
FRONTENDS = ("mel", "mel+cqt")


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
    # front-end: "mel" (the paper's) or "mel+cqt"; cqt: CQTSpec fields ({} = its defaults)
    frontend: str = "mel"
    cqt: dict = field(default_factory=dict)
    # ast: constant-Q tokens are (cqt_patch[0] bins x all frames) every cqt_patch[1] bins
    cqt_patch: tuple[int, int] = (24, 6)
    head: str = "mse"  # "mse" | "pitch-cls" (training.model.heads)
    salience: bool = False  # pitch-cls on mel+cqt: add harmonic-sum evidence to the class logits
    # the played note as a second input (ast on mel+cqt): the constant-Q view is shifted so the played
    # note sits where the contract's note does (pitch-relative tokens and salience) and the note's
    # offset is added to the class token (the mel view stays absolute: filters and tables are in Hz)
    note_input: bool = False
    # a performance model (issue 19): reads window_s seconds (0 = the contract's whole window) and is
    # trained on, and answers for, only the parameters in `carries` (() = all of them); the others are
    # still decoded (so every model has 16 outputs) but mean nothing and the daemon takes them elsewhere
    window_s: float = 0.0
    carries: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"model kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.frontend not in FRONTENDS:
            raise ValueError(f"model frontend {self.frontend!r} is not one of {', '.join(FRONTENDS)}")
        if self.head not in HEADS:
            raise ValueError(f"model head {self.head!r} is not one of {', '.join(HEADS)}")
        if self.frontend == "mel+cqt":  # resolve now, so a stored config never depends on code defaults
            try:
                object.__setattr__(self, "cqt", asdict(CQTSpec(**dict(self.cqt))))
            except TypeError as e:
                raise ValueError(f"model cqt: {e}") from None
        elif self.cqt:
            raise ValueError('model cqt settings need frontend = "mel+cqt"')
        if self.salience and (self.head != "pitch-cls" or self.frontend != "mel+cqt"):
            raise ValueError('model salience needs head = "pitch-cls" and frontend = "mel+cqt"')
        if self.note_input and (self.kind != "ast" or self.frontend != "mel+cqt"):
            raise ValueError('model note_input needs kind = "ast" and frontend = "mel+cqt"')
        if self.note_input and self.cqt_spec.bins_per_octave % 12:
            raise ValueError(
                f"model note_input needs whole bins per semitone; cqt bins_per_octave = "
                f"{self.cqt_spec.bins_per_octave} is not a multiple of 12"
            )
        if len(self.cqt_patch) != 2 or min(self.cqt_patch) < 1:
            raise ValueError(f"model cqt_patch = {list(self.cqt_patch)} must be two positive ints [bins, stride]")
        for name in ("patch", "stride"):
            v = getattr(self, name)
            if len(v) != 2 or min(v) < 1:
                raise ValueError(f"model {name} = {list(v)} must be two positive ints [mel bins, frames]")
        if self.kind == "ast" and self.dim % self.heads:
            raise ValueError(f"model dim {self.dim} must be divisible by heads {self.heads}")
        if not 0.0 <= self.window_s:
            raise ValueError(f"model window_s = {self.window_s} must be >= 0 (0: the contract's window)")
        if self.depth < 1 or self.head_layers < 1 or not self.channels:
            raise ValueError("model depth, head_layers and channels must be at least 1 / non-empty")

    @classmethod
    def from_dict(cls, d: dict, where: str = "model") -> ModelConfig:
        """Build from a plain dict (TOML table, checkpoint). Unknown keys and wrong types raise ValueError
        naming them (core.loader); `where` prefixes the message."""
        return load_dataclass(cls, d, "", ValueError, source=where)

    @property
    def cqt_spec(self) -> CQTSpec | None:
        return CQTSpec(**self.cqt) if self.frontend == "mel+cqt" else None

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
    # ast-tiny reading the log-mel and the constant-Q view (0.2's C4-only default), pitch as classes with
    # harmonic-sum evidence; 16 x 32 mel patches (4 x 12 = 48 tokens) + 41 constant-Q tokens: about
    # ast-tiny's 96 tokens and cost
    "ast-tiny-cqt": ModelConfig(
        "ast",
        (16, 32),
        (16, 32),
        dim=128,
        depth=4,
        heads=4,
        head_hidden=128,
        frontend="mel+cqt",
        head="pitch-cls",
        salience=True,
    ),
}
# the shipped default: ast-tiny-cqt told the played note (any note, e.g. MIDI 36-84): pitch-relative
# constant-Q tokens
MODEL_CONFIGS["ast-tiny-notes"] = MODEL_CONFIGS["ast-tiny-cqt"].replace(note_input=True)
# the performance model (issue 19): ast-tiny-notes on a 0.4 s window of a held note, answering for what
# such a window reveals (oscillators and filters; the envelope and reverb come from the trigger answer).
# 16 x 16 mel patches every 8 frames (4 x 3 = 12 tokens on 38 frames) and 41 constant-Q tokens over two
# 0.2 s frames (kernels cut to the window: full Q from ~130 Hz, lower under it); same width and depth as
# the default, so its encoder and head can start from the default's weights
PERF_CARRIES = tuple(n for n in PARAM_NAMES if n not in HELD_FIXED)  # what a held window can tell
MODEL_CONFIGS["ast-tiny-perf"] = MODEL_CONFIGS["ast-tiny-notes"].replace(
    patch=(16, 16),
    stride=(16, 8),
    window_s=0.4,
    cqt={"hop_s": 0.2, "max_window": 6400},
    carries=PERF_CARRIES,
)


def input_samples(config: ModelConfig, contract: Contract) -> int:
    """Samples of audio the model reads: its window_s at the contract's rate, or the contract's window."""
    if not config.window_s:
        return contract.audio.num_samples
    n = int(round(config.window_s * contract.audio.sample_rate))
    if not contract.win_length <= n <= contract.audio.num_samples:
        raise ValueError(
            f"model window_s = {config.window_s} s must hold one STFT window and at most the contract's "
            f"{contract.audio.duration_s:g} s"
        )
    return n


def input_frames(config: ModelConfig, contract: Contract) -> int:
    """STFT frames of the model's input (no centre padding, as contract.num_frames)."""
    return 1 + (input_samples(config, contract) - contract.win_length) // contract.hop_length


def patch_grid(config: ModelConfig, contract: Contract) -> tuple[int, int]:
    """(rows, cols) of the AST patch grid over the (n_mels, frames) log-mel (no padding)."""
    n_mels, frames = contract.frontend.n_mels, input_frames(config, contract)
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


class Views(nn.Module):
    """The front-end: (B, T) audio -> a tuple of views, always (mel (B, n_mels, frames),) first, then
    (cqt (B, n_bins, cqt_frames),) for "mel+cqt". Runs in fp32 even under autocast: the DFT-as-conv
    loses quiet bins in bf16/fp16. A Python-level branch, so exports contain the plain fp32 path."""

    def __init__(self, config: ModelConfig, contract: Contract):
        super().__init__()
        self.mel = LogMel(contract)
        spec = config.cqt_spec
        n = input_samples(config, contract)
        self.cqt = LogCQT(spec, contract.audio.sample_rate, n) if spec else None
        self.shapes: tuple[tuple[int, int], ...] = ((contract.frontend.n_mels, input_frames(config, contract)),)
        # (name, settings) per view: what defines it, so a cache of one view is shared by every model
        self.settings: tuple[tuple[str, dict], ...] = (("mel", contract.hashed_content()["frontend"]),)
        if self.cqt is not None:
            self.shapes += ((self.cqt.n_bins, self.cqt.n_frames),)
            self.settings += (("cqt", asdict(spec)),)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if torch.is_autocast_enabled(audio.device.type):
            with torch.autocast(audio.device.type, enabled=False):
                return self(audio.float())
        return (self.mel(audio),) if self.cqt is None else (self.mel(audio), self.cqt(audio))


class SoundMatcher(nn.Module):
    """Common shell: front-end views -> `body` (raw head outputs) -> the head decodes 16 values."""

    def __init__(self, config: ModelConfig, contract: Contract):
        super().__init__()
        self.config = config
        self.frontend = Views(config, contract)
        self.n_mels, self.n_frames = self.frontend.shapes[0]
        self.num_samples = input_samples(config, contract)
        self.head_out = make_head(config.head, contract, config.carries)
        self.n_raw = self.head_out.n_raw
        self.salience = None
        if config.salience and self.frontend.cqt is not None:
            played = 440.0 * 2.0 ** ((contract.audio.note - 69) / 12)
            self.salience = HarmonicSalience(self.head_out, self.frontend.cqt.freqs, played)
        self.played_note = float(contract.audio.note)  # the note a model told nothing assumes
        if config.note_input:
            cqt = self.frontend.cqt
            self.bins_per_semitone = config.cqt_spec.bins_per_octave // 12
            self.cqt_floor = (math.log(cqt.log_eps) - cqt.mean) / cqt.scale  # silence, normalised

    def body(self, views: tuple[torch.Tensor, ...], note: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError  # views (and, for note_input, (B,) notes) -> (B, n_raw)

    def relative(self, views: tuple[torch.Tensor, ...], note: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Shift the constant-Q view (B, n_bins, frames) by (round(note) - the contract's note) semitones
        so the played note lands on the contract note's bins; bins shifted in from outside the view are
        silence. A gather, so it exports to ONNX as GatherElements."""
        mel, cqt = views
        B, K, T = cqt.shape
        shift = (torch.round(note.float()) - self.played_note).long() * self.bins_per_semitone  # (B,)
        idx = torch.arange(K, device=cqt.device)[None, :] + shift[:, None]  # (B, K) source bins
        inside = (idx >= 0) & (idx < K)
        moved = torch.gather(cqt, 1, idx.clamp(0, K - 1)[:, :, None].expand(B, K, T))
        return mel, torch.where(inside[:, :, None], moved, torch.full_like(moved, self.cqt_floor))

    def raw(self, views: tuple[torch.Tensor, ...], note: torch.Tensor | None = None) -> torch.Tensor:
        if self.config.note_input:
            if note is None:
                note = views[0].new_full((views[0].shape[0],), self.played_note)
            views = self.relative(views, note)
        out = self.body(views, note)
        return out if self.salience is None else out + self.salience(views[1]).to(out.dtype)

    def predict_views(self, views: tuple[torch.Tensor, ...], note: torch.Tensor | None = None) -> torch.Tensor:
        """Cached views (and the (B,) MIDI notes played) -> (B, 16) normalised values, as forward."""
        return self.head_out.decode(self.raw(views, note))

    def loss(
        self, views: tuple[torch.Tensor, ...], target: torch.Tensor, note: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Training loss of the head on (B, 16) normalised targets, computed in fp32."""
        return self.head_out.loss(self.raw(views, note).float(), target)

    def forward(self, audio: torch.Tensor, note: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) audio [, (B,) MIDI notes played: note_input models; default the contract's] -> (B, 16)."""
        return self.predict_views(self.frontend(audio), note)


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
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _embed_fp32(conv: nn.Conv2d, view: torch.Tensor) -> torch.Tensor:
    """A patch embedding (B, H, W) -> (B, D, rows, cols), always in fp32, whatever the caller's autocast.

    Why: under bf16 autocast on CPUs with AMX-BF16 (Sapphire Rapids and newer), oneDNN's bf16 convolution
    returned NaN from finite input for the constant-Q embedding (one input channel, kernel 24 x 8, stride
    6 x 8), and so did every output of the model. In fp32 the same weights are finite everywhere (and
    the embeddings are a small share of the model's work). An explicit region, not a Python-level branch, so that
    torch.export keeps it (a wrap_with_autocast node) and the cuda backend's bf16/fp16 runs honour it."""
    with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
        return conv(view.unsqueeze(1).float())


class AST(SoundMatcher):
    def __init__(self, config: ModelConfig, contract: Contract):
        super().__init__(config, contract)
        rows, cols = self.grid = patch_grid(config, contract)
        d = config.dim
        self.patch_embed = nn.Conv2d(1, d, kernel_size=config.patch, stride=config.stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(d, config.heads, config.mlp_ratio, config.dropout) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(d, eps=1e-6)
        if self.frontend.cqt is not None:  # tokens: (pb bins x all frames) every sb bins
            (n_bins, cqt_frames), (pb, sb) = self.frontend.shapes[1], config.cqt_patch
            if pb > n_bins:
                raise ValueError(f"cqt_patch {pb} bins is larger than the constant-Q view ({n_bins} bins)")
            self.cqt_embed = nn.Conv2d(1, d, kernel_size=(pb, cqt_frames), stride=(sb, cqt_frames))
            self.n_cqt_tokens = (n_bins - pb) // sb + 1
        else:
            self.n_cqt_tokens = 0
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + rows * cols + self.n_cqt_tokens, d))
        self.note_embed = nn.Linear(1, d) if config.note_input else None  # (note - C4) / 2 octaves -> D
        self.head = _mlp([d] + [config.head_hidden] * (config.head_layers - 1) + [self.n_raw], config.dropout)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for conv in (self.patch_embed, getattr(self, "cqt_embed", None)):
            if conv is not None:  # like a linear layer on the flattened patch
                nn.init.trunc_normal_(conv.weight, std=1.0 / math.sqrt(conv.weight[0].numel()))
                nn.init.zeros_(conv.bias)

    def body(self, views: tuple[torch.Tensor, ...], note: torch.Tensor | None = None) -> torch.Tensor:
        x = _embed_fp32(self.patch_embed, views[0])  # (B, D, rows, cols)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        if self.note_embed is not None and note is not None:
            cls = cls + self.note_embed(((note.float() - self.played_note) / 24.0)[:, None, None])
        tokens = [cls, x.flatten(2).transpose(1, 2)]  # row-major (mel, time)
        if self.n_cqt_tokens:
            tokens.append(_embed_fp32(self.cqt_embed, views[1]).flatten(2).transpose(1, 2))  # (B, n_cqt, D)
        x = torch.cat(tokens, dim=1) + self.pos_embed
        x = self.pos_drop(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


class MLP(SoundMatcher):
    """head_layers linear layers of width head_hidden on the flattened views, concatenated."""

    def __init__(self, config: ModelConfig, contract: Contract):
        super().__init__(config, contract)
        n_in = sum(h * w for h, w in self.frontend.shapes)
        self.net = _mlp([n_in] + [config.head_hidden] * (config.head_layers - 1) + [self.n_raw], config.dropout)

    def body(self, views: tuple[torch.Tensor, ...], note: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(torch.cat([v.flatten(1) for v in views], dim=1))


class CNN(SoundMatcher):
    """len(channels) conv stages (3x3 conv, BN, ReLU, 2x2 max-pool), global average pool, MLP head."""

    def __init__(self, config: ModelConfig, contract: Contract):
        super().__init__(config, contract)
        layers: list[nn.Module] = []
        c_in, h, w = 1, self.n_mels, self.n_frames
        for c in config.channels:
            if min(h, w) < 2:
                raise ValueError(
                    f"cnn: {len(config.channels)} pooling stages shrink the "
                    f"{self.n_mels} x {self.n_frames} log-mel below 1 x 1; use fewer channels"
                )
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in, h, w = c, h // 2, w // 2
        self.convs = nn.Sequential(*layers)
        n_feat = c_in
        if self.frontend.cqt is not None:  # 1-d conv stages along frequency, the frames as channels
            c_prev, layers = self.frontend.shapes[1][1], []  # cqt_frames input channels
            for c in config.channels:
                layers += [nn.Conv1d(c_prev, c, 3, padding=1), nn.BatchNorm1d(c), nn.ReLU(), nn.MaxPool1d(2)]
                c_prev = c
            self.cqt_convs = nn.Sequential(*layers)
            n_feat += c_prev
        self.head = _mlp([n_feat] + [config.head_hidden] * (config.head_layers - 1) + [self.n_raw], config.dropout)

    def body(self, views: tuple[torch.Tensor, ...], note: torch.Tensor | None = None) -> torch.Tensor:
        feats = [self.convs(views[0].unsqueeze(1)).mean(dim=(2, 3))]  # (B, C)
        if len(views) > 1:
            feats.append(self.cqt_convs(views[1].transpose(1, 2)).mean(dim=2))  # (B, frames, bins) -> (B, C)
        return self.head(torch.cat(feats, dim=1))


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
