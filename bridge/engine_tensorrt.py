"""The "tensorrt" backend: an fp16 TensorRT 10 engine built from the exported ONNX file, cached on disk.

Build (once per model file, TensorRT version, GPU and precision; `engine_cache_key`):
  trt.Builder -> create_network(0) (TensorRT 10 networks are always explicit-batch) -> OnnxParser ->
  builder config with BuilderFlag.FP16, the log-mel front-end ("/frontend/..." layers), LayerNorm and
  softmax pinned to fp32 (layer.precision + output types, BuilderFlag.PREFER_PRECISION_CONSTRAINTS: the
  DFT power spectrum overflows fp16 and normalisation statistics lose too much in it) and one
  optimization profile for batch 1..MAX_BATCH (opt 1: live inference is batch 1).
The serialized plan is written atomically to <cache_dir>/<model stem>-<key>.engine and deserialized
with trt.Runtime; a cached plan that no longer deserializes is rebuilt.

Execution: preallocated device buffers for the largest batch, bound once with
context.set_tensor_address; each call sets the input shape, copies in, runs execute_async_v3 on a
private stream and copies out. Device memory and the stream are torch CUDA tensors/streams (torch is on
every machine with this backend's GPU stack; it avoids a cuda-python dependency). No CUDA graph: a
TensorRT launch is already a single enqueue of prebuilt kernels.

tensorrt and torch are imported inside functions only: the pure `engine_cache_key` works without them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from bridge.atomic import write_atomic
from bridge.engine import MAX_BATCH, BackendError, BackendUnavailable, Engine
from bridge.modelfile import INPUT_NAME, OUTPUT_NAME, ModelMeta

if TYPE_CHECKING:  # real signatures from tensorrt-stubs for mypy; at run time imported lazily
    import tensorrt as trt

log = logging.getLogger("synthmatch.engine")

PRECISIONS = ("fp16", "fp32")
FP32_NAME_MARK = "frontend"  # ONNX node names of the front-end: "/frontend/Conv", "/frontend/Log", ...


def engine_cache_key(trt_version: str, gpu_name: str, compute_capability: tuple[int, int], precision: str,
                     model_sha256: str, max_batch: int = MAX_BATCH) -> str:
    """Key of a built engine: a plan is only valid for the same TensorRT, GPU model, precision and model
    bytes (and profile). 20 hex chars of sha256 over those inputs."""
    blob = json.dumps({"trt": trt_version, "gpu": gpu_name, "sm": list(compute_capability),
                       "precision": precision, "model": model_sha256, "max_batch": max_batch, "layout": 1},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _import_trt() -> ModuleType:
    try:
        import tensorrt
    except ImportError:
        raise BackendUnavailable("tensorrt: the tensorrt Python package is not installed "
                                 "(pip install tensorrt, matching the CUDA driver)") from None
    if not hasattr(tensorrt, "Builder"):  # only type stubs (tensorrt-stubs) on the path: a namespace package
        raise BackendUnavailable("tensorrt: only type stubs are installed, not the TensorRT runtime")
    return tensorrt


def _import_torch_cuda() -> Any:
    try:
        import torch
    except ImportError:
        raise BackendUnavailable("tensorrt: needs torch (CUDA build) for device buffers") from None
    if not torch.cuda.is_available():
        raise BackendUnavailable(f"tensorrt: torch {torch.__version__} sees no CUDA GPU")
    return torch


def _pin_fp32(network: trt.INetworkDefinition) -> int:
    """Ask for fp32 in the front-end, LayerNorm and softmax layers; returns how many layers were pinned."""
    import tensorrt as trt

    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.CONSTANT:
            continue
        wanted = (FP32_NAME_MARK in layer.name
                  or layer.type in (trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX))
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not wanted or any(t.dtype != trt.DataType.FLOAT for t in outputs):
            continue  # shape/index layers (int32/int64) must keep their types
        layer.precision = trt.DataType.FLOAT
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.DataType.FLOAT)
        pinned += 1
    return pinned


def build_plan(path: Path, meta: ModelMeta, precision: str, max_batch: int) -> bytes:
    """Parse the ONNX file and build a serialized engine. Raises BackendError with the parser's errors."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"tensorrt: cannot parse {path}: {errors}")
    config = builder.create_builder_config()
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
        pinned = _pin_fp32(network)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        log.debug("tensorrt: %d layers pinned to fp32", pinned)
    profile = builder.create_optimization_profile()
    n = meta.num_samples
    profile.set_shape(INPUT_NAME, trt.Dims2(1, n), trt.Dims2(1, n), trt.Dims2(max_batch, n))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendError(f"tensorrt: building an engine for {path} failed (see the TensorRT log above)")
    return bytes(plan)


class TensorRTEngine(Engine):
    name = "tensorrt"

    def __init__(self, path: str | Path, meta: ModelMeta, cache_dir: str | Path, precision: str = "fp16",
                 max_batch: int = MAX_BATCH):
        super().__init__(meta)
        if precision not in PRECISIONS:
            raise ValueError(f"tensorrt precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        _import_trt()  # BackendUnavailable when absent
        import tensorrt as trt

        torch = _import_torch_cuda()
        path = Path(path)
        device = torch.device("cuda")
        props = torch.cuda.get_device_properties(device)
        key = engine_cache_key(trt.__version__, props.name, (props.major, props.minor), precision,
                               file_sha256(path), max_batch)
        self.cache_file = Path(cache_dir) / f"{path.stem}-{key}.engine"
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = None
        if self.cache_file.is_file():
            engine = self._runtime.deserialize_cuda_engine(self.cache_file.read_bytes())
            if engine is None:
                log.warning("tensorrt: cached engine %s does not load; rebuilding", self.cache_file)
        if engine is None:
            plan = build_plan(path, meta, precision, max_batch)
            write_atomic(self.cache_file, plan)
            engine = self._runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise BackendError(f"tensorrt: the engine just built for {path} does not deserialize")
        for name in (INPUT_NAME, OUTPUT_NAME):
            if engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise BackendError(f"tensorrt: tensor {name!r} of {path} is not float32")
        self._engine: trt.ICudaEngine | None = engine
        self._context: trt.IExecutionContext | None = engine.create_execution_context()
        self._torch, self.max_batch = torch, max_batch
        # one buffer each for the largest batch; a batch b uses the first b rows (row-major, contiguous)
        self._in = torch.empty((max_batch, meta.num_samples), dtype=torch.float32, device=device)
        self._out = torch.empty((max_batch, meta.num_params), dtype=torch.float32, device=device)
        self._context.set_tensor_address(INPUT_NAME, self._in.data_ptr())
        self._context.set_tensor_address(OUTPUT_NAME, self._out.data_ptr())
        self._stream = torch.cuda.Stream(device)
        self.detail = f"{props.name} {precision} trt {trt.__version__} cache {self.cache_file.name}"
        self._run(np.zeros((1, meta.num_samples), np.float32))  # warm-up: lazy kernel loading

    def _run(self, audio: np.ndarray) -> np.ndarray:
        torch, context = self._torch, self._context
        if context is None:
            raise BackendError("tensorrt: engine used after close()")
        outs = []
        for start in range(0, audio.shape[0], self.max_batch):
            chunk = torch.from_numpy(audio[start:start + self.max_batch])
            b = chunk.shape[0]
            if not context.set_input_shape(INPUT_NAME, (b, self.meta.num_samples)):
                raise BackendError(f"tensorrt: batch {b} is outside the engine's profile 1..{self.max_batch}")
            with torch.cuda.stream(self._stream):
                self._in[:b].copy_(chunk)
                if not context.execute_async_v3(self._stream.cuda_stream):
                    raise BackendError("tensorrt: execute_async_v3 failed (see the TensorRT log)")
                out = self._out[:b].to("cpu")
            self._stream.synchronize()
            outs.append(out.numpy())
        return np.concatenate(outs)

    def close(self) -> None:
        self._context = None
        self._engine = None
