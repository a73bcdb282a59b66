"""`synthmatch export`: a checkpoint -> one ONNX file the daemon runs, with the contract embedded.

The graph takes raw audio "audio" (batch x num_samples float32, dynamic batch) and returns "params"
(batch x 16 float32 in [0, 1]); the log-mel front-end is inside it (every model owns one). A model with
the pitch-cls head returns two more outputs after "params" (extra_outputs; the metadata lists them):
"pitch_top" (batch x 3 oscillators x TOP_K, each oscillator's most probable pitch classes as normalised
pitch values, best first) and "pitch_prob" (batch x 3 x TOP_K, their probabilities). The metadata
(bridge/core/modelfile.py) carries the parameter names, the contract hash and hashed content, sample rate,
window length, model config, a training summary, the synthmatch version and the identity of the synth
the model was trained on (the checkpoint's; training.synths). Beside model.onnx go (unless weights=False,
`--no-weights`):
- model.pt2: the torch program the "cuda" backend runs (write_torch_artifact): a torch.export
  ExportedProgram with the same graph inputs and a dynamic batch of 1..MAX_BATCH, the front-end inside an
  autocast-disabled region (so it stays fp32 when the backend runs the rest in fp16/bf16), saved with
  torch.export.save; its extra file carries the format tag and the export id. The backend loads it with
  torch alone (bridge/engines/cuda.py, which checks the archive before torch reads it).
- model.pt: the weights as a weights_only state dict + model config, which training can start from
  (train's init_from, e.g. fine-tuning the shipped model).
All carry the same export id (a fingerprint of the weights).

After writing, the file is read back through bridge.engine (ONNX Runtime, CPU) and compared with torch
on a fixed batch of test signals; so is model.pt2, through the "cuda" backend on the CPU in fp32, extra
outputs included. A max abs difference of 1e-4 or more fails the export.

Uses the TorchScript-based ONNX exporter (`dynamo=False`): deterministic node names (the TensorRT
backend keeps "/frontend/..." layers in fp32 by name) and no onnxscript dependency.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.atomic import write_atomic
from synthmatch.bridge.core.contract import Contract
from synthmatch.bridge.core.errors import UsageError
from synthmatch.bridge.core.modelfile import (
    INPUT_NAME,
    NOTE_NAME,
    OUTPUT_NAME,
    PITCH_PROB_NAME,
    PITCH_TOP_NAME,
    PROGRAM_FORMAT,
    PROGRAM_INFO,
    PROGRAM_SUFFIX,
    WEIGHTS_FORMAT,
    ModelMeta,
    build_props,
    embed,
    read_meta,
)
from synthmatch.bridge.engines.base import MAX_BATCH
from synthmatch.bridge.engines.cuda import program_path
from synthmatch.training.model.heads import PitchClassHead

PARITY_TOL = 1e-4  # max abs difference torch vs ONNX Runtime, fp32 on the CPU


class ExportError(UsageError):
    """Export failed (parity check, unwritable path). The message says what went wrong and where."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    weights_path: Path | None
    max_abs_diff: float  # torch vs ONNX Runtime on the parity batch
    meta: ModelMeta
    program_path: Path | None = None  # model.pt2, the "cuda" backend's torch program
    program_max_abs_diff: float = float("nan")  # torch vs that program (cuda backend on the CPU, fp32)


def weights_path_for(onnx_path: str | Path) -> Path:
    """model.onnx -> model.pt (the weights the "cuda" backend loads)."""
    return Path(onnx_path).with_suffix(".pt")


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes, bytes), 16 hex chars: the export id."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def input_n(model: nn.Module, contract: Contract) -> int:
    """Samples the model reads: a performance model's window, else the contract's."""
    return int(getattr(model, "num_samples", contract.audio.num_samples))


def parity_audio(contract: Contract, batch: int = 3, seed: int = 0, n: int | None = None) -> np.ndarray:
    """(batch, n) float32 test signals (n: the contract's window unless given): a decaying saw-ish tone,
    noise, then silence/quiet noise."""
    n, sr = n or contract.audio.num_samples, contract.audio.sample_rate
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    rows = [
        0.5 * np.sin(2 * np.pi * 220 * t) * np.exp(-t) + 0.2 * np.sign(np.sin(2 * np.pi * 110 * t)),
        0.3 * rng.standard_normal(n),
        1e-4 * rng.standard_normal(n),
    ]
    out = np.stack([rows[i % len(rows)] for i in range(batch)]).astype(np.float32)
    return np.clip(out, -1.0, 1.0)


def parity_notes(contract: Contract, batch: int) -> np.ndarray:
    """(batch,) MIDI notes for the parity batch of a model told the note: below, at and above C4."""
    played = contract.audio.note + np.array([-17, 0, 12, -24, 24], np.float32)
    return np.resize(played, batch).astype(np.float32)


def _takes_note(model: nn.Module) -> bool:
    return bool(getattr(getattr(model, "config", None), "note_input", False))


def extra_outputs(model: nn.Module, contract: Contract) -> dict[str, list[str]]:
    """The extra graph outputs an export of `model` has, each -> the parameters its rows stand for
    (ModelMeta.extra_outputs): a pitch-cls model's top classes and their probabilities; {} for others."""
    head = getattr(model, "head_out", None)
    if not (isinstance(head, PitchClassHead) and hasattr(model, "frontend") and hasattr(model, "raw")):
        return {}
    rows = [contract.names[i] for i in head.pitch]
    return {PITCH_TOP_NAME: rows, PITCH_PROB_NAME: rows}


def _outputs(model: nn.Module, audio: torch.Tensor, note: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """The exported outputs of a model with extras: (B, 16) values, then (B, P, k) top pitch values and
    (B, P, k) their probabilities, from one pass (the raw head outputs are shared)."""
    raw = model.raw(model.frontend(audio), note)
    return (model.head_out.decode(raw), *model.head_out.top_classes(raw))


class _WithExtras(nn.Module):
    """`model` returning its extra outputs after the values (for the ONNX exporter). It holds the model's
    own submodules, parameters and buffers under their own names, so the graph's node names are the
    model's ("/frontend/...": the TensorRT backend keeps those in fp32 by name)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, p in model.named_parameters(recurse=False):
            self.register_parameter(name, p)
        for name, b in model.named_buffers(recurse=False):
            self.register_buffer(name, b)
        object.__setattr__(self, "_model", model)  # not a submodule: no "/model/" scope

    def forward(self, audio: torch.Tensor, note: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        return _outputs(self._model, audio, note)


def _onnx_bytes(model: nn.Module, contract: Contract, opset: int) -> bytes:
    example: tuple = (torch.from_numpy(parity_audio(contract, batch=2, n=input_n(model, contract))),)
    extras = list(extra_outputs(model, contract))
    names, axes = [INPUT_NAME], {name: {0: "batch"} for name in (INPUT_NAME, OUTPUT_NAME, *extras)}
    if _takes_note(model):  # the note played: (batch,) float32 MIDI
        example += (torch.from_numpy(parity_notes(contract, 2)),)
        names.append(NOTE_NAME)
        axes[NOTE_NAME] = {0: "batch"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of dynamo (which needs onnxscript); still supported
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            _WithExtras(model) if extras else model,
            example,
            buf,
            input_names=names,
            output_names=[OUTPUT_NAME, *extras],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return buf.getvalue()


class _Program(nn.Module):
    """What the "cuda" backend runs: the model with its front-end in a region where autocast is off (for
    CPU and CUDA autocast alike: the program is traced on the CPU and moved to the GPU at load), the rest
    under the caller's autocast, the outputs in fp32. Models without a separate front-end run as they are.
    With `extras` it returns the ONNX file's extra outputs after the values, as a tuple."""

    def __init__(self, model: nn.Module, extras: bool = False):
        super().__init__()
        self.model, self.extras = model, extras

    def forward(self, audio: torch.Tensor, note: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, ...]:
        m = self.model
        if not (hasattr(m, "frontend") and hasattr(m, "predict_views")):
            return (m(audio) if note is None else m(audio, note)).float()
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            views = m.frontend(audio.float())
        if not self.extras:
            return m.predict_views(views, note).float()
        raw = m.raw(views, note)
        return tuple(t.float() for t in (m.head_out.decode(raw), *m.head_out.top_classes(raw)))


def torch_program(model: nn.Module, contract: Contract) -> torch.export.ExportedProgram:
    """`model` as a torch.export ExportedProgram: inputs audio (B, num_samples) [, note (B,)] float32 with
    B dynamic in 1..MAX_BATCH, output (B, 16) float32, or for a model with extra outputs the tuple of the
    ONNX file's outputs (values, then the extras in extra_outputs' order). Stripped of what the cuda
    backend's loader refuses or does not need: dtype assertions (they fail under autocast), stack traces
    (local paths, size) and the example inputs (a pickle)."""
    model = model.eval().float().cpu()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    args: tuple = (torch.from_numpy(parity_audio(contract, batch=2, n=input_n(model, contract))),)
    shapes: dict = {"audio": {0: batch}}
    if _takes_note(model):
        args += (torch.from_numpy(parity_notes(contract, 2)),)
        shapes["note"] = {0: batch}
    wrapped = _Program(model, extras=bool(extra_outputs(model, contract))).eval()
    program = torch.export.export(wrapped, args, dynamic_shapes=shapes, strict=False)
    for module in program.graph_module.modules():
        if isinstance(module, torch.fx.GraphModule):
            for node in list(module.graph.nodes):
                node.meta.pop("stack_trace", None)
                if node.target is torch.ops.aten._assert_tensor_metadata.default:
                    module.graph.erase_node(node)
            module.recompile()
    program.example_inputs = None
    return program


def write_torch_artifact(model: nn.Module, onnx_path: str | Path, contract: Contract | None = None) -> Path:
    """Write model.pt2, the "cuda" backend's torch program, beside the exported `onnx_path`, bound to it
    by its export id. `model` must hold the very weights the ONNX file was exported from (checked by
    fingerprint); `contract` defaults to the repository's and must be the file's. Returns the path."""
    onnx_path = Path(onnx_path)
    meta = read_meta(onnx_path)
    contract = contract or contract_mod.default()
    if contract.hash != meta.contract_hash:
        raise ExportError(
            f"{onnx_path}: exported for contract {meta.contract_hash}, not {contract.hash}; pass the contract "
            "the ONNX file was exported with"
        )
    model = model.eval().float().cpu()
    fingerprint = weights_fingerprint(model)
    if fingerprint != meta.export_id:
        raise ExportError(
            f"{onnx_path}: export id {meta.export_id}, but these weights are {fingerprint}: "
            "pass the model the ONNX file was exported from"
        )
    if _takes_note(model) != meta.takes_note:
        raise ExportError(
            f"{onnx_path}: the model and the ONNX file disagree on the note input; pass the model the ONNX "
            "file was exported from"
        )
    if list(extra_outputs(model, contract)) != list(meta.extra_outputs):
        raise ExportError(
            f"{onnx_path}: outputs {[OUTPUT_NAME, *meta.extra_outputs]}, but this model's export has "
            f"{[OUTPUT_NAME, *extra_outputs(model, contract)]}: re-export the ONNX file with this version "
            "(`synthmatch export`)"
        )
    return _write_program(model, contract, meta)


def _write_program(model: nn.Module, contract: Contract, meta: ModelMeta) -> Path:
    """model.pt2 beside meta.path, for the ONNX file `meta` was read from (the model's own weights)."""
    info = {
        "format": PROGRAM_FORMAT,
        "export_id": meta.export_id,
        "contract_hash": meta.contract_hash,
        "inputs": [INPUT_NAME, NOTE_NAME] if meta.takes_note else [INPUT_NAME],
        "outputs": [OUTPUT_NAME, *meta.extra_outputs],
        "max_batch": MAX_BATCH,
        "torch": torch.__version__,
    }
    buf = io.BytesIO()
    torch.export.save(torch_program(model, contract), buf, extra_files={PROGRAM_INFO: json.dumps(info)})
    path = program_path(meta.path)
    write_atomic(path, buf.getvalue())
    return path


def export_model(
    model: nn.Module,
    contract: Contract,
    path: str | Path,
    model_config: dict,
    summary: dict | None = None,
    *,
    opset: int = 17,
    weights: bool = True,
    check: bool = True,
    threads: int | None = None,
    synth: str = "reference",
) -> ExportResult:
    """Export `model` (raw audio -> (B, 16)) to `path` with metadata; write model.pt2 (the cuda backend's
    torch program) and model.pt (weights) beside it if `weights`.

    model_config: the ModelConfig as a dict (to_dict()), stored in the metadata and in model.pt.
    summary: training summary (step, data, metrics, ...), JSON-able. check: run the parity checks (torch
    vs ONNX Runtime; torch vs model.pt2 through the cuda backend on the CPU) and raise ExportError when a
    max abs diff >= PARITY_TOL. synth: the training data's synth identity
    (training.model.checkpoint.checkpoint_synth). Returns an ExportResult.
    """
    import onnx

    path = Path(path)
    model = model.eval().float().cpu()
    export_id = weights_fingerprint(model)
    proto = onnx.load_from_string(_onnx_bytes(model, contract, opset))
    extras = extra_outputs(model, contract)
    carries = tuple(getattr(getattr(model, "config", None), "carries", ()) or ())
    props = build_props(
        contract, model_config, summary or {}, export_id, synth, extras, input_n(model, contract), carries
    )
    embed(proto, props)
    onnx.checker.check_model(proto)
    write_atomic(path, proto.SerializeToString())
    wpath = _write_weights(model, contract, path, model_config, export_id) if weights else None
    meta = read_meta(path)
    ppath = _write_program(model, contract, meta) if weights else None
    diff = program_diff = float("nan")
    if check:
        diff, program_diff = _check_parity(model, contract, path, meta, ppath, bool(extras), threads)
    return ExportResult(path, wpath, diff, meta, ppath, program_diff)


def _write_weights(model: nn.Module, contract: Contract, path: Path, model_config: dict, export_id: str) -> Path:
    """model.pt beside the model file: the weights to fine-tune from, with their config. Returns its path."""
    wpath = weights_path_for(path)
    buf = io.BytesIO()
    torch.save(
        {
            "format": WEIGHTS_FORMAT,
            "version": 1,
            "model_config": model_config,
            "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "contract_hash": contract.hash,
            "export_id": export_id,
        },
        buf,
    )
    write_atomic(wpath, buf.getvalue())
    return wpath


def _check_parity(
    model: nn.Module,
    contract: Contract,
    path: Path,
    meta: ModelMeta,
    ppath: Path | None,
    extras: bool,
    threads: int | None,
) -> tuple[float, float]:
    """(max abs diff of ONNX Runtime, of the torch program (NaN when there is none)) from torch on the
    parity batch; ExportError when either is not below PARITY_TOL."""
    from synthmatch.bridge.engines.cuda import TorchEngine
    from synthmatch.bridge.engines.ort import OnnxRuntimeEngine

    program_diff = float("nan")
    audio = parity_audio(contract, batch=3, n=meta.num_samples)  # batch 3 != the traced 2: the dynamic axis
    notes = parity_notes(contract, 3) if meta.takes_note else None
    ref = _reference(model, audio, notes, extras)
    engine = OnnxRuntimeEngine(path, meta, threads=threads)
    try:
        got = engine.infer_full(audio, notes)
    finally:
        engine.close()
    diff = _max_diff(got, ref)
    if not diff < PARITY_TOL:  # also catches NaN
        raise ExportError(
            f"{path}: parity check failed: torch vs ONNX Runtime max abs diff {diff:.3g} "
            f">= {PARITY_TOL:g}; the exported graph does not compute the model. The file was "
            f"written for inspection but must not be used"
        )
    if ppath is not None:
        engine = TorchEngine(path, meta, device="cpu", precision="fp32")
        try:
            program_diff = _max_diff(engine.infer_full(audio, notes), ref)
        finally:
            engine.close()
        if not program_diff < PARITY_TOL:
            raise ExportError(
                f"{ppath}: parity check failed: torch vs the exported torch program max abs diff "
                f"{program_diff:.3g} >= {PARITY_TOL:g}; the file was written for inspection but must "
                "not be used"
            )
    return diff, program_diff


def _reference(model: nn.Module, audio: np.ndarray, notes: np.ndarray | None, extras: bool) -> list[np.ndarray]:
    """torch's outputs for the parity batch: [values] or [values, *extras] (the exported outputs' order)."""
    a, n = torch.from_numpy(audio), None if notes is None else torch.from_numpy(notes)
    with torch.no_grad():
        if extras:
            return [t.numpy() for t in _outputs(model, a, n)]
        return [(model(a) if n is None else model(a, n)).numpy()]


def _max_diff(got: tuple[np.ndarray, dict[str, np.ndarray]], ref: list[np.ndarray]) -> float:
    """Max abs difference of an engine's infer_full (values, extras) from torch's outputs, over all of
    them; inf when the engine returned other extras than torch's (a backend that lost them). Classes whose
    probabilities tie within PARITY_TOL may come in either order: their pitch values are not compared."""
    values, extras = got
    outs = [values, *extras.values()]
    if len(outs) != len(ref) or any(g.shape != r.shape for g, r in zip(outs, ref)):
        return float("inf")
    diffs = [np.abs(g - r) for g, r in zip(outs, ref)]
    names = list(extras)
    if PITCH_TOP_NAME in names and PITCH_PROB_NAME in names:
        prob = ref[1 + names.index(PITCH_PROB_NAME)]  # (B, P, k), best first
        gap = np.abs(np.diff(prob, axis=-1)) < PARITY_TOL  # (B, P, k - 1): neighbours tied
        tied = np.zeros(prob.shape, bool)
        tied[..., 1:] |= gap
        tied[..., :-1] |= gap
        diffs[1 + names.index(PITCH_TOP_NAME)][tied] = 0.0
    return max(float(d.max()) for d in diffs)


def summary_from_checkpoint(ckpt: dict, ckpt_path: str | Path) -> dict:
    """The training summary an export embeds: steps, data, metrics (test metrics when present)."""
    train_config = ckpt.get("train_config") or {}
    data = train_config.get("data") if isinstance(train_config, dict) else None
    return {
        "checkpoint": Path(ckpt_path).name,
        "step": ckpt.get("step"),
        "data": data,
        "train_config": train_config,
        "metrics": ckpt.get("metrics") or {},
    }


def _notes(notes: list[str]) -> dict:
    out = {}
    for note in notes:
        key, sep, text = note.partition("=")
        if not sep or not key.strip():
            raise UsageError(f'--note {note!r}: write KEY=TEXT, e.g. hardware="2-core CPU"')
        out[key.strip()] = text
    return out


def _test_metrics(path: str, checkpoint: str, contract) -> dict:
    """An eval.json of this very checkpoint on the test split, under this contract -> its metrics."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(
            f"--test-eval {path}: cannot read an eval.json ({e}); pass the file "
            f"`synthmatch eval --checkpoint {checkpoint} --split test` writes"
        ) from None
    problems = []
    if report.get("split") != "test":
        problems.append(f"split is {report.get('split')!r}, not 'test'")
    if report.get("contract_hash") != contract.hash:
        problems.append(f"contract {report.get('contract_hash')} is not {contract.hash}")
    if Path(str(report.get("model", ""))).resolve() != Path(checkpoint).resolve():
        problems.append(f"it scores {report.get('model')}, not {checkpoint}")
    if report.get("refine_passes"):
        problems.append("it scores refined predictions, not the model alone")
    if problems:
        raise UsageError(
            f"--test-eval {path}: " + "; ".join(problems) + f". Pass the eval.json that "
            f"`synthmatch eval --checkpoint {checkpoint} --split test` writes"
        )
    keep = (
        "split",
        "seed",
        "count",
        "param_mse",
        "spectral_convergence",
        "spectral_convergence_median",
        "multiscale_spectral_distance",
        "multiscale_spectral_distance_median",
    )
    return {**{k: report[k] for k in keep if k in report}, "per_param_mse": report["param_mse_per_param"]}


def main(args: argparse.Namespace) -> int:
    """`synthmatch export --checkpoint CKPT --out model.onnx [--opset 17] [--contract TOML] [--no-weights]`."""
    from synthmatch.bridge.core.outpaths import writable_file
    from synthmatch.training.model.checkpoint import checkpoint_synth, load_model

    out = Path(args.out)
    if out.suffix != ".onnx":
        raise UsageError(f"--out {out}: the model file name must end in .onnx")
    beside = [] if args.no_weights else [weights_path_for(out), out.with_suffix(PROGRAM_SUFFIX)]
    for path in (out, *beside):  # before the export's work: a folder in the way fails in a second
        writable_file(path, "--out" if path == out else f"--out {out}: the file beside it,")
    contract = contract_mod.load(args.contract)
    model, ckpt = load_model(args.checkpoint, contract)
    summary = summary_from_checkpoint(ckpt, args.checkpoint)
    summary.update(_notes(args.note))
    if args.test_eval:
        summary["test_metrics"] = _test_metrics(args.test_eval, args.checkpoint, contract)
    result = export_model(
        model,
        contract,
        out,
        ckpt["model_config"],
        summary,
        opset=args.opset,
        weights=not args.no_weights,
        synth=checkpoint_synth(ckpt),
    )
    size = out.stat().st_size / 1e6
    print(
        f"exported {args.checkpoint} -> {out} ({size:.1f} MB, opset {args.opset}, contract {contract.hash}, "
        f"step {ckpt.get('step')}, synth {checkpoint_synth(ckpt)})"
    )
    if result.program_path:
        mb = result.program_path.stat().st_size / 1e6
        print(f"torch program for the cuda backend -> {result.program_path} ({mb:.1f} MB)")
    if result.weights_path:
        print(f"weights (training's init_from) -> {result.weights_path}")
    print(f"parity torch vs onnxruntime: max abs diff {result.max_abs_diff:.2e} (limit {PARITY_TOL:g}) OK")
    if result.program_path:
        print(f"parity torch vs torch program: max abs diff {result.program_max_abs_diff:.2e} OK")
    return 0
