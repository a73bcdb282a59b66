"""The "cuda" backend: the torch model on an NVIDIA GPU in fp16 (or bf16), replayed from CUDA graphs.

The weights come from the file export writes beside the ONNX file (model.onnx -> model.pt: a weights_only
state dict + the model config + the export id also embedded in the ONNX metadata, so a stale pair is
refused). The architecture is rebuilt with training.models.build_model from that config and the contract
content embedded in the ONNX file's metadata.

Precision: torch.autocast in fp16/bf16; the models keep their log-mel front-end in fp32 under autocast
(training/models.py), LayerNorm and softmax run in fp32 under autocast anyway. Each batch size gets
its own CUDA graph, captured on first use (static input/output buffers; replay costs one launch); batch
sizes are rounded up to a power of two so at most six graphs exist.
device="cpu" runs the same code in fp32 without graphs (tests, debugging).

torch and training are imported here only, when this backend is opened.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthmatch.bridge.core.modelfile import WEIGHTS_FORMAT, ModelError, ModelMeta
from synthmatch.bridge.engines.base import MAX_BATCH, BackendError, BackendUnavailable, Engine

PRECISIONS = ("fp16", "bf16", "fp32")


def load_weights(onnx_path: Path, meta: ModelMeta):
    """Read model.pt beside model.onnx (weights_only) and check that it belongs to it. Returns the dict."""
    import torch

    wpath = Path(onnx_path).with_suffix(".pt")
    if not wpath.is_file():
        raise BackendUnavailable(
            f"cuda: no weights file {wpath} beside {onnx_path} (`synthmatch export` writes "
            f"it unless --no-weights; copy it along with the .onnx file)"
        )
    try:
        w = torch.load(wpath, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError/UnpicklingError/EOFError/... for damaged files
        raise ModelError(
            f"{wpath}: unreadable weights file ({type(e).__name__}: {e}); re-export the model or copy model.pt again"
        ) from None
    if not isinstance(w, dict) or w.get("format") != WEIGHTS_FORMAT:
        raise ModelError(f"{wpath}: not a synthmatch weights file (no format = {WEIGHTS_FORMAT!r}); re-export")
    if w.get("export_id") != meta.export_id:
        raise ModelError(
            f"{wpath}: weights (export id {w.get('export_id')}) do not belong to {onnx_path} "
            f"(export id {meta.export_id}); export both again from the same checkpoint"
        )
    return w


def contract_from_meta(meta: ModelMeta):
    """A Contract equivalent (for model building) to the one the model was exported with."""
    from synthmatch.bridge.core import contract as contract_mod

    c = contract_mod.default()
    if c.hash == meta.contract_hash:
        return c
    content = meta.contract
    if not content:
        raise ModelError(f"{meta.path}: no embedded contract content to rebuild the model from; re-export")
    # hashed content lacks the unhashed fields (massive, cc, sample); fill them with neutral values
    data = {
        "audio": content["audio"],
        "frontend": content["frontend"],
        "synth": content["synth"],
        "param": [{**p, "massive": p["name"], "cc": 0, "sample": {"dist": "uniform"}} for p in content["params"]],
    }
    c = contract_mod.from_dict(data, source=f"{meta.path} (embedded contract)")
    if c.hash != meta.contract_hash:
        raise ModelError(f"{meta.path}: embedded contract content does not match its hash; re-export")
    return c


def graph_batch(b: int) -> int:
    """Batch size of the CUDA graph that serves a batch of b: the next power of two (1, 2, 4, ... MAX_BATCH),
    so at most log2(MAX_BATCH) + 1 graphs (each with its own activation memory) are ever captured. Rows
    are independent in eval mode, so the padding rows do not affect the others."""
    return min(1 << max(b - 1, 0).bit_length(), MAX_BATCH)


class TorchEngine(Engine):
    name = "cuda"

    def __init__(
        self, path: str | Path, meta: ModelMeta, device: str = "cuda", precision: str = "fp16", cuda_graphs: bool = True
    ):
        super().__init__(meta)
        try:
            import torch
        except ImportError:
            raise BackendUnavailable("cuda: torch is not installed (pip install torch)") from None
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(
                f"cuda: torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False)"
            )
        w = load_weights(Path(path), meta)
        from synthmatch.training.models import build_model

        try:
            model = build_model(w["model_config"], contract_from_meta(meta))
            model.load_state_dict(w["model_state"])
        except (ValueError, TypeError, KeyError, RuntimeError) as e:
            raise BackendError(
                f"cuda: cannot rebuild the model from {Path(path).with_suffix('.pt')} "
                f"({type(e).__name__}: {e}); re-export with this synthmatch version"
            ) from None
        self._torch = torch
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.precision = precision if self.device.type == "cuda" else "fp32"
        self.use_graphs = cuda_graphs and self.device.type == "cuda"
        self._graphs: dict[int, tuple] = {}  # batch -> (graph, static input, static output)
        self._dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[self.precision]
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        self.detail = f"{name} {self.precision}{' cuda-graphs' if self.use_graphs else ''}"
        if self.device.type == "cuda":
            self._stream = torch.cuda.Stream(self.device)
            self._run(
                np.zeros((1, meta.num_samples), np.float32),
                np.full(1, meta.reference_note, np.float32) if meta.takes_note else None,
            )  # warm-up

    def _forward(self, x, note):
        torch = self._torch
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=self._dtype, enabled=self.precision != "fp32"),
        ):
            return (self.model(x) if note is None else self.model(x, note)).float()

    def _graph(self, batch: int):
        torch = self._torch
        if batch not in self._graphs:
            static_in = torch.zeros(batch, self.meta.num_samples, device=self.device)
            static_note = (
                torch.full((batch,), float(self.meta.reference_note), device=self.device)
                if self.meta.takes_note
                else None
            )
            with torch.cuda.stream(self._stream):
                for _ in range(2):  # warm up on a side stream before capture (cuBLAS handles, autotune)
                    self._forward(static_in, static_note)
            torch.cuda.current_stream(self.device).wait_stream(self._stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self._stream):
                static_out = self._forward(static_in, static_note)
            self._graphs[batch] = (graph, static_in, static_note, static_out)
        return self._graphs[batch]

    def _run(self, audio: np.ndarray, notes: np.ndarray | None) -> np.ndarray:
        torch = self._torch
        outs = []
        for start in range(0, audio.shape[0], MAX_BATCH):
            x = torch.from_numpy(audio[start : start + MAX_BATCH])
            n = None if notes is None else torch.from_numpy(notes[start : start + MAX_BATCH])
            b = x.shape[0]
            if self.use_graphs:
                graph, static_in, static_note, static_out = self._graph(graph_batch(b))
                static_in[:b].copy_(x)  # host -> device into the captured buffer; rows past b are ignored
                if n is not None:
                    static_note[:b].copy_(n)
                graph.replay()
                outs.append(static_out[:b].cpu().numpy())  # .cpu() synchronises
            else:
                outs.append(self._forward(x.to(self.device), None if n is None else n.to(self.device)).cpu().numpy())
        return np.concatenate(outs)

    def close(self) -> None:
        self._graphs.clear()
        self.model = None
