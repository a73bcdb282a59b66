"""The "tensorrt" and "tensorrt-rtx" backends: a cached engine (engines/tensorrt_build.py) run on the first
CUDA GPU.

Execution: preallocated device buffers for the largest batch, bound once with set_tensor_address; each
call copies in, enqueues (execute_async_v3 on a private stream, or the CUDA graph replaying it) and
copies out. Device memory and streams are torch CUDA tensors/streams (torch is on every machine with
this backend's GPU stack; it avoids a cuda-python dependency).

tensorrt, tensorrt_rtx and torch are imported inside functions only; `trt` below is for mypy, as in
engines/tensorrt_build.py.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from synthmatch.bridge.core.atomic import write_atomic
from synthmatch.bridge.core.modelfile import (
    INPUT_NAME,
    NOTE_NAME,
    OUTPUT_NAME,
    ModelMeta,
)
from synthmatch.bridge.engines.base import MAX_BATCH, BackendError, Engine
from synthmatch.bridge.engines.tensorrt_build import (
    BuiltEngine,
    Flavour,
    Gpu,
    check_runnable,
    current_gpu,
    dtype_name,
    ensure_engine,
    flavour_named,
    import_flavour,
    import_torch_cuda,
)

CHECK_RTX = False  # mypy only (--always-true/--always-false CHECK_RTX): which flavour `trt` names below
if TYPE_CHECKING:
    if CHECK_RTX:
        import tensorrt_rtx as trt
    else:
        import tensorrt as trt

log = logging.getLogger("synthmatch.engine")


class TensorRTEngine(Engine):
    """An engine of either flavour on the first CUDA GPU, built (or found cached) at start."""

    def __init__(
        self,
        path: str | Path,
        meta: ModelMeta,
        cache_dir: str | Path,
        flavour: str = "tensorrt",
        precision: str | None = None,
        max_batch: int = MAX_BATCH,
    ):
        super().__init__(meta)
        self.flavour = flavour_named(flavour)
        self.name = self.flavour.name
        lib = import_flavour(self.flavour)  # BackendUnavailable when absent
        torch = import_torch_cuda(self.flavour)
        gpu = current_gpu(torch)
        built = ensure_engine(path, flavour, cache_dir, precision, max_batch, gpu=gpu, meta=meta)
        self.cache_file = built.file
        engine = self._deserialize(lib, built, gpu)
        self._engine: trt.ICudaEngine | None = engine
        self._rt_cache = RuntimeCache(self.flavour, built.file, gpu)
        self._context: trt.IExecutionContext | None = self._make_context(engine)
        self._torch, self.max_batch, self._batch = torch, max_batch, 0
        device = torch.device("cuda")
        # one buffer each for the largest batch; a batch b uses the first b rows (row-major, contiguous)
        self._in = torch.empty((max_batch, meta.num_samples), dtype=torch.float32, device=device)
        self._out = torch.empty((max_batch, meta.num_params), dtype=torch.float32, device=device)
        # the model's extra outputs (pitch head's top classes): every output needs an address, so bound always
        self._extras = {
            name: torch.empty((max_batch, *meta.extra_shapes[name]), dtype=torch.float32, device=device)
            for name in meta.extra_outputs
        }
        self._context.set_tensor_address(INPUT_NAME, self._in.data_ptr())
        self._note = torch.full((max_batch,), float(meta.reference_note), dtype=torch.float32, device=device)
        if meta.takes_note:
            self._context.set_tensor_address(NOTE_NAME, self._note.data_ptr())
        self._context.set_tensor_address(OUTPUT_NAME, self._out.data_ptr())
        for name, buf in self._extras.items():
            self._context.set_tensor_address(name, buf.data_ptr())
        self._stream = torch.cuda.Stream(device)
        # TensorRT: CUDA graphs captured here per batch size; TensorRT-RTX replays its own
        self._graphs: dict[int, Any] | None = None if self.flavour.jit else {}
        self.detail = (
            f"{gpu.name} {built.spec.precision} {self.name} {built.spec.flavour_version} cache {built.file.name}"
        )
        self._run(
            np.zeros((1, meta.num_samples), np.float32),  # warm-up: JIT / lazy kernel loading
            np.full(1, meta.reference_note, np.float32) if meta.takes_note else None,
        )
        self._rt_cache.save()

    def _deserialize(self, lib: ModuleType, built: BuiltEngine, gpu: Gpu) -> trt.ICudaEngine:
        self._runtime: trt.Runtime = lib.Runtime(lib.Logger(lib.Logger.WARNING))
        check_runnable(self.flavour, self._runtime, built.plan, gpu)
        engine: trt.ICudaEngine | None = self._runtime.deserialize_cuda_engine(built.plan)
        if engine is None:
            raise BackendError(
                f"{self.name}: the engine {built.file} does not deserialize on {gpu.name} "
                f"(see the TensorRT log above); delete it to rebuild, or use --backend cuda"
            )
        names = (INPUT_NAME, OUTPUT_NAME, *((NOTE_NAME,) if self.meta.takes_note else ()), *self.meta.extra_outputs)
        for name in names:
            if dtype_name(engine.get_tensor_dtype(name)) != "float32":
                raise BackendError(f"{self.name}: tensor {name!r} of {built.file} is not float32")
        return engine

    def _make_context(self, engine: trt.ICudaEngine) -> trt.IExecutionContext:
        return self._rtx_context(engine) if self.flavour.jit else engine.create_execution_context()

    def _rtx_context(self, engine: Any) -> Any:
        """TensorRT-RTX: a context with the runtime cache attached and built-in CUDA graphs on."""
        import tensorrt_rtx as rtx

        eng: rtx.ICudaEngine = engine
        config = eng.create_runtime_config()
        self._rt_cache.attach(config)
        try:
            config.cuda_graph_strategy = rtx.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
        except (AttributeError, TypeError) as e:  # older TensorRT-RTX: run without graphs
            log.warning("%s: no built-in CUDA graphs (%s)", self.name, e)
        self._runtime_config = config  # kept for the context's lifetime
        return eng.create_execution_context(config)

    def _enqueue(self, b: int) -> None:
        context = self._context
        assert context is not None
        if self._graphs is not None:
            graph = self._graphs.get(b) or self._capture(b)
            if graph is not None:
                graph.replay()
                return
        if not context.execute_async_v3(self._stream.cuda_stream):
            raise BackendError(f"{self.name}: execute_async_v3 failed (see the TensorRT log)")

    def _capture(self, b: int) -> Any:
        """TensorRT: capture one enqueue at batch b into a CUDA graph (after one plain run: TensorRT does
        deferred work on the first enqueue of a shape). Any failure turns graphs off for this engine."""
        torch, context = self._torch, self._context
        assert context is not None and self._graphs is not None
        try:
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("execute_async_v3 failed")
            self._stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self._stream):
                context.execute_async_v3(self._stream.cuda_stream)
        except Exception as e:  # capture unsupported by this engine/driver: plain enqueues are correct too
            log.warning(
                "%s: CUDA graph capture failed (%s: %s); running without graphs", self.name, type(e).__name__, e
            )
            self._graphs = None
            return None
        self._graphs[b] = graph
        return graph

    def _run(self, audio: np.ndarray, notes: np.ndarray | None) -> np.ndarray:
        return self._run_full(audio, notes)[0]

    def _run_full(self, audio: np.ndarray, notes: np.ndarray | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        torch, context = self._torch, self._context
        if context is None:
            raise BackendError(f"{self.name}: engine used after close()")
        outs: list[list[np.ndarray]] = []  # per chunk: values, then the extras
        for start in range(0, audio.shape[0], self.max_batch):
            chunk = torch.from_numpy(audio[start : start + self.max_batch])
            b = chunk.shape[0]
            if b != self._batch:  # set only on change: an unchanged shape keeps the captured graphs valid
                ok = context.set_input_shape(INPUT_NAME, (b, self.meta.num_samples))
                if notes is not None:
                    ok = context.set_input_shape(NOTE_NAME, (b,)) and ok
                if not ok:
                    raise BackendError(f"{self.name}: batch {b} is outside the engine's profile 1..{self.max_batch}")
                self._batch = b
            with torch.cuda.stream(self._stream):
                self._in[:b].copy_(chunk)
                if notes is not None:
                    self._note[:b].copy_(torch.from_numpy(notes[start : start + b]))
                self._enqueue(b)
                got = [t[:b].to("cpu") for t in (self._out, *self._extras.values())]
            self._stream.synchronize()
            outs.append([t.numpy() for t in got])
        values, *extras = (np.concatenate(parts) for parts in zip(*outs))
        return values, dict(zip(self._extras, extras))

    def close(self) -> None:
        if self._context is not None:
            self._rt_cache.save()
        self._graphs = None
        self._context = None
        self._engine = None


class RuntimeCache:
    """TensorRT-RTX's JIT results for one engine on one GPU, kept in <engine>-<gpu>.rtcache beside the
    engine so the next start skips the compilation. A file that does not load is ignored (and replaced)."""

    def __init__(self, flavour: Flavour, engine_file: Path, gpu: Gpu):
        tag = hashlib.sha256(f"{gpu.name}/{gpu.sm}".encode()).hexdigest()[:8]
        self.file = engine_file.with_name(f"{engine_file.stem}-{gpu.sm}-{tag}.rtcache")
        self.flavour, self._saved = flavour, b""
        self._cache: Any = None  # rtx.IRuntimeCache once attached

    def attach(self, config: Any) -> None:
        import tensorrt_rtx as rtx

        rc: rtx.IRuntimeConfig = config
        cache: rtx.IRuntimeCache = rc.create_runtime_cache()
        if self.file.is_file():
            blob = self.file.read_bytes()
            if cache.deserialize(blob):
                self._saved = blob
            else:
                log.warning("%s: runtime cache %s does not load; starting a new one", self.flavour.name, self.file)
                cache.reset()
        if not rc.set_runtime_cache(cache):
            log.warning("%s: the runtime cache was refused; JIT results will not be kept", self.flavour.name)
            return
        self._cache = cache

    def save(self) -> None:
        """Write the cache when it changed (after the warm-up, at close). Failing to write costs only time."""
        if self._cache is None:
            return
        try:
            blob = bytes(memoryview(self._cache.serialize()))
            if blob and blob != self._saved:
                write_atomic(self.file, blob)
                self._saved = blob
        except Exception as e:  # a full disk or read-only cache dir must not stop inference
            log.warning("%s: could not save the runtime cache %s (%s)", self.flavour.name, self.file, e)
