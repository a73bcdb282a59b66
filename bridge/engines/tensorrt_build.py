"""TensorRT engines, either flavour: built ahead of time (no GPU needed for TensorRT-RTX) and cached on disk.

The backend that runs them is engines/tensorrt.py.

Flavours (`FLAVOURS`; every API difference between them is a field of `Flavour`, read in one place):
- "tensorrt"     TensorRT 10/11 (module `tensorrt`, NVIDIA's package index). Weakly typed networks: an fp16
                 engine from the fp32 graph (BuilderFlag.FP16, with the log-mel front-end ("/frontend/..."
                 layers), LayerNorm and softmax pinned to fp32: the DFT power spectrum overflows fp16 and
                 normalisation statistics lose too much in it). The builder needs the GPU the engine is for.
- "tensorrt-rtx" TensorRT-RTX (module `tensorrt_rtx`, PyPI `tensorrt-rtx-cu12`), for RTX-class GPUs.
                 Strongly typed: the engine computes in the graph's own types, so the fp32 export gives an
                 fp32 engine (TF32 matmuls on Ampere and newer). An fp16 engine would need an fp16 graph
                 (export casting the encoder to fp16, the front-end, LayerNorm and softmax left in fp32).
                 It builds without a GPU (for TensorRT-RTX's default targets); at run time its JIT
                 specialises the kernels to the GPU, kept in a runtime cache file, and it captures and
                 replays CUDA graphs itself.

Engines: `ensure_engine` builds one (or finds it cached) for an `EngineSpec`: the model file's sha256
and export id, the synthmatch version, the flavour and its version, the targets (TensorRT: this GPU's
name and compute capability; TensorRT-RTX: its default set), precision and the batch profile 1..MAX_BATCH.
The file <cache_dir>/<model stem>-<flavour>-<key>.engine starts with a one-line JSON header (the spec
and the plan's sha256); a file whose header or plan does not match is rebuilt, never run.
`synthmatch engine build` calls ensure_engine; the daemon's `TensorRTEngine` does at start.

tensorrt, tensorrt_rtx and torch are imported inside functions only. mypy checks the shared code once
against each flavour's signatures (scripts/typecheck.py flips CHECK_RTX), flavour-only code
against its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from synthmatch.bridge.core.atomic import write_atomic
from synthmatch.bridge.core.digest import file_sha256
from synthmatch.bridge.core.modelfile import (
    INPUT_NAME,
    NOTE_NAME,
    OUTPUT_NAME,
    ModelError,
    ModelMeta,
    read_meta,
    synthmatch_version,
)
from synthmatch.bridge.engines.base import MAX_BATCH, BackendError, BackendUnavailable, default_cache_dir

CHECK_RTX = False  # mypy only (--always-true/--always-false CHECK_RTX): which flavour `trt` names below
if TYPE_CHECKING:
    if CHECK_RTX:
        import tensorrt_rtx as trt
    else:
        import tensorrt as trt

log = logging.getLogger("synthmatch.engine")

FP32_NAME_MARK = "frontend"  # ONNX node names of the front-end: "/frontend/Conv", "/frontend/Log", ...
HEADER_MAGIC = b"synthmatch-engine 1\n"  # then one JSON line, then the serialized plan
LAYOUT = 2  # bump when the engine file layout or what goes into a build changes


@dataclass(frozen=True)
class Flavour:
    """Where the two TensorRTs differ. Everything else goes through the same code."""

    name: str  # backend name
    module: str  # Python module
    install: str  # how to get the module
    precisions: tuple[str, ...]  # what a build can make from the fp32 export; the first is the default
    strongly_typed: bool  # engine types = graph types (no FP16 flag, no per-layer precision)
    builds_without_gpu: bool  # the builder runs on a machine without a GPU (ahead of time, in CI)
    jit: bool  # kernels specialised at run time: runtime cache, built-in CUDA graphs, engine validity check


FLAVOURS = {
    "tensorrt": Flavour(
        "tensorrt",
        "tensorrt",
        "pip install tensorrt (NVIDIA's index; matching the CUDA driver)",
        ("fp16", "fp32"),
        strongly_typed=False,
        builds_without_gpu=False,
        jit=False,
    ),
    "tensorrt-rtx": Flavour(
        "tensorrt-rtx",
        "tensorrt_rtx",
        "pip install 'synthmatch[gpu]' (tensorrt-rtx-cu12)",
        ("fp32",),
        strongly_typed=True,
        builds_without_gpu=True,
        jit=True,
    ),
}
ALIASES = {"rtx": "tensorrt-rtx", "trt": "tensorrt"}


def flavour_named(name: str) -> Flavour:
    f = FLAVOURS.get(ALIASES.get(name, name))
    if f is None:
        raise ModelError(f"unknown TensorRT flavour {name!r}; choose {', '.join(FLAVOURS)} (or rtx)")
    return f


@dataclass(frozen=True)
class Gpu:
    name: str
    capability: tuple[int, int]  # compute capability (major, minor)

    @property
    def sm(self) -> str:
        return f"sm{self.capability[0]}{self.capability[1]}"


@dataclass(frozen=True)
class EngineSpec:
    """Everything a built engine depends on. Its key names the cache file; the header must match it."""

    flavour: str
    flavour_version: str
    synthmatch_version: str
    model_sha256: str
    export_id: str
    precision: str
    targets: tuple[str, ...]  # TensorRT: (sm, GPU name) of the build GPU; TensorRT-RTX: ("default",)
    num_samples: int  # input window (samples)
    max_batch: int  # profile 1..max_batch, optimised for 1

    def key(self) -> str:
        """20 hex chars of sha256 over the spec."""
        blob = json.dumps({**asdict(self), "layout": LAYOUT}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def to_json(self) -> dict:
        return {**asdict(self), "targets": list(self.targets)}


def import_flavour(flavour: Flavour) -> ModuleType:
    """The flavour's module, or BackendUnavailable saying what to install."""
    import importlib

    try:
        lib = importlib.import_module(flavour.module)
    except ImportError as e:
        raise BackendUnavailable(
            f"{flavour.name}: the {flavour.module} Python package is not installed or "
            f"does not load ({e}); {flavour.install}"
        ) from None
    if not hasattr(lib, "Builder"):  # only type stubs (tensorrt-stubs) on the path: a namespace package
        raise BackendUnavailable(f"{flavour.name}: only type stubs are installed, not the runtime; {flavour.install}")
    return lib


def import_torch_cuda(flavour: Flavour) -> Any:
    try:
        import torch
    except ImportError:
        raise BackendUnavailable(f"{flavour.name}: needs torch (a CUDA build) for device buffers") from None
    if not torch.cuda.is_available():
        raise BackendUnavailable(
            f"{flavour.name}: no CUDA GPU visible to torch {torch.__version__} (no NVIDIA "
            f"driver, or a CPU build of torch); engines can still be built ahead of time"
        )
    return torch


def current_gpu(torch: Any) -> Gpu:
    props = torch.cuda.get_device_properties(torch.device("cuda"))
    return Gpu(props.name, (props.major, props.minor))


def engine_spec(
    flavour: Flavour,
    lib: ModuleType,
    path: Path,
    meta: ModelMeta,
    precision: str | None,
    max_batch: int,
    gpu: Gpu | None,
) -> EngineSpec:
    """The spec of the engine to build for this model here. TensorRT needs `gpu` (it builds for it)."""
    precision = precision or flavour.precisions[0]
    if precision not in flavour.precisions:
        raise ModelError(
            f"{flavour.name}: precision {precision!r} is not one of {', '.join(flavour.precisions)}"
            + (" (strongly typed: an fp16 engine needs an fp16 export)" if flavour.strongly_typed else "")
        )
    if flavour.builds_without_gpu:
        targets: tuple[str, ...] = ("default",)
    elif gpu is None:
        raise BackendUnavailable(
            f"{flavour.name}: builds engines on the GPU they are for, and none is visible "
            f"here; build on that machine, or use the tensorrt-rtx flavour"
        )
    else:
        targets = (gpu.sm, gpu.name)
    return EngineSpec(
        flavour.name,
        str(lib.__version__),
        synthmatch_version(),
        file_sha256(path),
        meta.export_id,
        precision,
        targets,
        meta.num_samples,
        max_batch,
    )


# ------------------------------------------------------------------------------------------------
# Building


def network_io(network: trt.INetworkDefinition) -> dict[str, list[tuple[str, tuple[int, ...], str]]]:
    """{"inputs": [(name, shape, dtype)], "outputs": [...]} of a parsed network; -1 = dynamic dimension,
    dtype as numpy names it ("float32")."""

    def row(t: trt.ITensor) -> tuple[str, tuple[int, ...], str]:
        shape = t.shape
        return t.name, tuple(shape[i] for i in range(len(shape))), dtype_name(t.dtype)

    return {
        "inputs": [row(network.get_input(i)) for i in range(network.num_inputs)],
        "outputs": [row(network.get_output(i)) for i in range(network.num_outputs)],
    }


def dtype_name(dtype: Any) -> str:
    return {
        "FLOAT": "float32",
        "HALF": "float16",
        "BF16": "bfloat16",
        "INT32": "int32",
        "INT64": "int64",
        "BOOL": "bool",
        "INT8": "int8",
        "UINT8": "uint8",
    }.get(dtype.name, dtype.name.lower())


def expected_io(meta: ModelMeta) -> dict[str, list[tuple[str, tuple[int, ...], str]]]:
    """What the model's embedded contract says the graph takes and returns (dynamic batch)."""
    inputs: list[tuple[str, tuple[int, ...], str]] = [(INPUT_NAME, (-1, meta.num_samples), "float32")]
    if meta.takes_note:
        inputs.append((NOTE_NAME, (-1,), "float32"))
    outputs: list[tuple[str, tuple[int, ...], str]] = [(OUTPUT_NAME, (-1, meta.num_params), "float32")]
    outputs += [(name, (-1, *meta.extra_shapes[name]), "float32") for name in meta.extra_outputs]
    return {"inputs": inputs, "outputs": outputs}


def parse(
    flavour: Flavour, lib: ModuleType, path: Path, logger: Any
) -> tuple[trt.Builder, trt.INetworkDefinition, Any]:
    """(builder, network, parser) for the ONNX file; the parser must outlive the network's use."""
    builder: trt.Builder = lib.Builder(logger)
    network: trt.INetworkDefinition = builder.create_network(0)  # explicit batch; RTX: always strongly typed
    parser: trt.OnnxParser = lib.OnnxParser(network, logger)
    if not parser.parse_from_file(str(path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"{flavour.name}: cannot parse {path}: {errors}")
    return builder, network, parser


def build_plan(flavour: Flavour, lib: ModuleType, path: Path, meta: ModelMeta, spec: EngineSpec) -> bytes:
    """Parse, check the network against the contract, build and serialize. Raises BackendError."""
    logger = lib.Logger(lib.Logger.WARNING)
    builder, network, _parser = parse(flavour, lib, path, logger)
    io, want = network_io(network), expected_io(meta)
    if io != want:
        raise BackendError(
            f"{flavour.name}: {path}: the parsed network has {io}, its metadata says {want}; "
            f"re-export the model with `synthmatch export`"
        )
    config: trt.IBuilderConfig = builder.create_builder_config()
    if spec.precision == "fp16":  # weakly typed flavours only (engine_spec refuses it for the others)
        pinned = _fp16_with_fp32_islands(network, config)
        log.debug("%s: %d layers pinned to fp32", flavour.name, pinned)
    profile: trt.IOptimizationProfile = builder.create_optimization_profile()
    n = meta.num_samples
    profile.set_shape(INPUT_NAME, lib.Dims2(1, n), lib.Dims2(1, n), lib.Dims2(spec.max_batch, n))
    if meta.takes_note:
        profile.set_shape(NOTE_NAME, lib.Dims([1]), lib.Dims([1]), lib.Dims([spec.max_batch]))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendError(f"{flavour.name}: building an engine for {path} failed (see the TensorRT log above)")
    return bytes(memoryview(plan))


def _fp16_with_fp32_islands(network: Any, config: Any) -> int:
    """TensorRT (weakly typed) only: FP16, with the front-end, LayerNorm and softmax asked to stay fp32.
    Returns how many layers were pinned."""
    import tensorrt as trt10

    net: trt10.INetworkDefinition = network
    cfg: trt10.IBuilderConfig = config
    if not hasattr(trt10.BuilderFlag, "FP16"):  # a TensorRT without weakly typed networks
        raise BackendError(
            f"tensorrt {trt10.__version__} has no BuilderFlag.FP16 (weakly typed fp16); "
            f"use the tensorrt-rtx or cuda backend"
        )
    cfg.set_flag(trt10.BuilderFlag.FP16)
    cfg.set_flag(trt10.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    pinned = 0
    for i in range(net.num_layers):
        layer = net.get_layer(i)
        if layer.type == trt10.LayerType.CONSTANT:
            continue
        wanted = FP32_NAME_MARK in layer.name or layer.type in (trt10.LayerType.NORMALIZATION, trt10.LayerType.SOFTMAX)
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not wanted or any(t.dtype != trt10.DataType.FLOAT for t in outputs):
            continue  # shape/index layers (int32/int64) must keep their types
        layer.precision = trt10.DataType.FLOAT
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt10.DataType.FLOAT)
        pinned += 1
    return pinned


# ------------------------------------------------------------------------------------------------
# The cache


def cache_file(cache_dir: Path, model: Path, spec: EngineSpec) -> Path:
    return Path(cache_dir) / f"{model.stem}-{spec.flavour}-{spec.key()}.engine"


def write_cached(file: Path, spec: EngineSpec, plan: bytes) -> None:
    header = {
        "spec": spec.to_json(),
        "key": spec.key(),
        "plan_sha256": hashlib.sha256(plan).hexdigest(),
        "plan_bytes": len(plan),
    }
    line = json.dumps(header, sort_keys=True).encode() + b"\n"

    def write(f: Any) -> None:
        f.write(HEADER_MAGIC)
        f.write(line)
        f.write(plan)

    write_atomic(file, write)


def read_cached(file: Path, spec: EngineSpec) -> bytes | None:
    """The plan in `file` when it is whole and was built for `spec`; None (and a warning saying why, when
    the file exists) otherwise."""
    if not file.is_file():
        return None
    data = file.read_bytes()
    why = _cache_problem(data, spec)
    if why is None:
        return data[data.index(b"\n", len(HEADER_MAGIC)) + 1 :]
    log.warning("%s: cached engine %s %s; rebuilding it", spec.flavour, file, why)
    return None


def _cache_problem(data: bytes, spec: EngineSpec) -> str | None:
    if not data.startswith(HEADER_MAGIC):
        return "is not a synthmatch engine file"
    end = data.find(b"\n", len(HEADER_MAGIC))
    try:
        header = json.loads(data[len(HEADER_MAGIC) : end]) if end > 0 else None
    except ValueError:
        header = None
    if not isinstance(header, dict):
        return "has a damaged header"
    if header.get("spec") != spec.to_json():
        theirs: dict = header["spec"] if isinstance(header.get("spec"), dict) else {}
        changed = sorted(k for k, v in spec.to_json().items() if theirs.get(k) != v)
        return f"was built for another {', '.join(changed) or 'spec'}"
    plan = data[end + 1 :]
    if len(plan) != header.get("plan_bytes") or hashlib.sha256(plan).hexdigest() != header.get("plan_sha256"):
        return "is truncated or damaged (plan checksum)"
    return None


@dataclass(frozen=True)
class BuiltEngine:
    file: Path
    spec: EngineSpec
    plan: bytes
    build_s: float | None  # None: found in the cache

    @property
    def size(self) -> int:
        return len(self.plan)


def ensure_engine(
    model: str | Path,
    flavour: str = "tensorrt-rtx",
    cache_dir: str | Path | None = None,
    precision: str | None = None,
    max_batch: int = MAX_BATCH,
    rebuild: bool = False,
    gpu: Gpu | None = None,
    meta: ModelMeta | None = None,
) -> BuiltEngine:
    """The engine for `model` in `cache_dir` (default: default_cache_dir()/tensorrt), built when missing,
    stale or damaged (or with `rebuild`). gpu: the GPU it is for (needed by the "tensorrt" flavour; the
    TensorRT-RTX engine is portable). Raises ModelError for a bad model file, BackendUnavailable when the
    flavour is missing here or cannot build without a GPU, BackendError when the build fails."""
    model = Path(model)
    meta = meta or read_meta(model)
    fl = flavour_named(flavour)
    lib = import_flavour(fl)
    spec = engine_spec(fl, lib, model, meta, precision, max_batch, gpu)
    file = cache_file(Path(cache_dir) if cache_dir is not None else default_cache_dir() / "tensorrt", model, spec)
    plan = None if rebuild else read_cached(file, spec)
    if plan is not None:
        return BuiltEngine(file, spec, plan, None)
    t0 = time.perf_counter()
    plan = build_plan(fl, lib, model, meta, spec)
    build_s = time.perf_counter() - t0
    write_cached(file, spec, plan)
    log.info("%s: built %s in %.1f s (%.1f MB) -> %s", fl.name, model, build_s, len(plan) / 1e6, file)
    return BuiltEngine(file, spec, plan, build_s)


def build_main(args: Any) -> int:
    """`synthmatch engine build`: one line, what was built (or found) where."""
    built = ensure_engine(
        args.model,
        flavour=args.flavour,
        cache_dir=args.cache_dir,
        precision=args.precision,
        rebuild=args.rebuild,
        gpu=gpu_if_any(),
    )
    how = f"built in {built.build_s:.1f} s" if built.build_s is not None else "cached"
    print(
        f"{built.spec.flavour} {built.spec.flavour_version} {built.spec.precision} engine for {args.model}: "
        f"{built.file} ({built.size / 1e6:.1f} MB, {how})"
    )
    return 0


def gpu_if_any() -> Gpu | None:
    from synthmatch.bridge.engines.base import nvidia_driver_absent

    if nvidia_driver_absent():
        return None
    try:
        import torch
    except ImportError:
        return None
    return current_gpu(torch) if torch.cuda.is_available() else None


# ------------------------------------------------------------------------------------------------
# Running


def check_runnable(flavour: Flavour, runtime: Any, plan: bytes, gpu: Gpu | None) -> None:
    """TensorRT-RTX: ask the runtime whether this GPU and driver can run the plan before deserializing it.
    Raises BackendUnavailable in one line saying what happened. No-op for the other flavour."""
    if not flavour.jit:
        return
    import tensorrt_rtx as rtx

    rt: rtx.Runtime = runtime
    validity, diagnostics = rt.get_engine_validity(plan)
    if validity != rtx.EngineValidity.INVALID:
        return
    why = [
        d.name.lower().replace("_", " ")
        for d in rtx.EngineInvalidityDiagnostics.__members__.values()
        if int(diagnostics) & int(d)
    ]
    on = f"{gpu.name} ({gpu.sm})" if gpu else "this machine"
    if int(diagnostics) & int(rtx.EngineInvalidityDiagnostics.UNSUPPORTED_CC):
        raise BackendUnavailable(
            f"{flavour.name}: {on} is outside TensorRT-RTX's GPUs (RTX-class, Turing and "
            f"newer); use --backend tensorrt (TensorRT 10, NVIDIA's index) or cuda"
        )
    raise BackendUnavailable(
        f"{flavour.name}: cannot run engines on {on}: {', '.join(why) or 'no usable CUDA driver or GPU'}"
    )
