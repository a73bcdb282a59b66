"""The exported model file: what synthmatch embeds in an ONNX file's metadata, reading it back, and checking
it against the daemon's contract.

An exported model is a single ONNX file with input "audio" (batch x num_samples float32, dynamic batch),
output "params" (batch x 16 float32 in [0, 1]) and the front-end inside the graph (a model told the note
has a second input, "note"; a model with a pitch-class head has extra outputs after "params", listed in
the metadata's "extra_outputs": EXTRA_OUTPUTS). Its metadata_props hold JSON values under "synthmatch."
keys (build_props writes them): the parameter names in output order, the contract hash and the contract's
hashed content, the sample rate and window length in samples, the model config, a training summary, the
synthmatch version, an export id (shared with the optional files export writes beside it: model.pt2, the
torch program the "cuda" backend runs, and model.pt, the weights training can start from), the identity of
the synth the model was trained on (training.synths; optional, "reference" when absent) and the extra
outputs (optional, none when absent). Pure Python + onnx; never imports torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthmatch.bridge.core.contract import Contract
from synthmatch.bridge.core.errors import UsageError, clip

FORMAT = 2  # bump when the metadata layout changes incompatibly
# 2: the model owns its front-end (model_config.frontend, .cqt) and head (model_config.head)
FORMAT_ADVICE = {
    1: "a format-1 model predates the pitch-resolving front-end (log-mel only, barely better than a "
    "constant patch on real sounds): use the shipped models/default.onnx, or re-export its checkpoint "
    "with this version (`synthmatch export --checkpoint CKPT --out MODEL.onnx`)",
}
INPUT_NAME, OUTPUT_NAME = "audio", "params"
NOTE_NAME = "note"  # optional second input: (batch,) float32 MIDI note played, for models told the note
# Optional outputs after OUTPUT_NAME (pitch-cls models; training.heads.PitchClassHead.top_classes), each
# (batch, rows, k) float32, row r for the parameter the metadata's extra_outputs[name][r] names:
PITCH_TOP_NAME = "pitch_top"  # the k most probable pitch classes as normalised pitch values, best first
PITCH_PROB_NAME = "pitch_prob"  # their probabilities (softmax over all the classes)
EXTRA_OUTPUTS = (PITCH_TOP_NAME, PITCH_PROB_NAME)  # every extra output this version knows
WEIGHTS_FORMAT = "synthmatch-weights"  # the torch weights file export writes beside model.onnx (model.pt)
# the torch program export writes beside model.onnx for the "cuda" backend (model.pt2: a torch.export
# ExportedProgram); its extra file PROGRAM_INFO holds {"format": PROGRAM_FORMAT, "export_id", ...}
PROGRAM_FORMAT, PROGRAM_SUFFIX, PROGRAM_INFO = "synthmatch-torch-export-1", ".pt2", "synthmatch.json"
_PREFIX = "synthmatch."
REQUIRED = ("format", "param_names", "contract_hash", "sample_rate", "num_samples")


class ModelError(UsageError):
    """A model file is missing, unreadable or not a synthmatch export. The message names the file and a fix."""


class ContractMismatch(ModelError):
    """The model was exported for a different contract than the one in use. The message says which side to change."""


@dataclass(frozen=True)
class ModelMeta:
    path: str
    names: tuple[str, ...]  # parameter names, model output order
    contract_hash: str
    sample_rate: int  # Hz
    num_samples: int  # samples per analysis window (model input length)
    contract: dict = field(default_factory=dict)  # the contract's hashed content at export time
    model_config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)  # training: step, data, metrics, checkpoint...
    version: str = ""  # synthmatch version that exported the file
    export_id: str = ""  # pairs the file with its model.pt2 program (cuda backend) and model.pt weights
    synth: str = "reference"  # identity of the synth the training data came from (training.synths)
    format: int = FORMAT
    takes_note: bool = False  # the graph has the NOTE_NAME input: it matches at the note it is given
    # extra graph outputs after OUTPUT_NAME (graph order) -> the parameter each row stands for; {} for
    # models without them (every file exported before they existed)
    extra_outputs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    extra_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # per window: (rows, k), the graph's
    # the parameters the model answers for (a performance model's: what its short window reveals); () = all
    carries: tuple[str, ...] = ()

    @property
    def num_params(self) -> int:
        return len(self.names)

    @property
    def carried(self) -> tuple[str, ...]:
        """The names of the outputs that mean something: `carries`, or every parameter."""
        return self.carries or self.names

    @property
    def carried_mask(self) -> np.ndarray:
        """(outputs,) bool, output order: which outputs mean something (`carried`)."""
        return np.array([name in self.carried for name in self.names])

    @property
    def performance(self) -> bool:
        """A performance model: it answers for some outputs only, or reads less than its contract's window
        (the contract it was exported with; the same as the one in use once check_contract passed)."""
        audio = self.contract.get("audio") or {}
        full = int(round(float(audio.get("duration_s", 0)) * self.sample_rate))
        return bool(self.carries) or 0 < self.num_samples < full

    @property
    def window_s(self) -> float:
        """The model's input window, seconds."""
        return self.num_samples / self.sample_rate

    @property
    def reference_note(self) -> int:
        """The contract's note: what every training sound of a C4-only model played (MIDI)."""
        return int((self.contract.get("audio") or {}).get("note", 60))


def synthmatch_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("synthmatch")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def build_props(
    contract: Contract,
    model_config: dict,
    summary: dict,
    export_id: str,
    synth: str = "reference",
    extra_outputs: dict[str, list[str]] | None = None,
    num_samples: int | None = None,
    carries: tuple[str, ...] = (),
) -> dict[str, str]:
    """The metadata_props (key -> JSON text) an export embeds for `contract`. extra_outputs: the graph's
    outputs after OUTPUT_NAME, in order, each -> the parameter names of its rows (ModelMeta.extra_outputs).
    num_samples: the model's input window (a performance model's; default the contract's); carries: the
    parameters a performance model answers for (() = all)."""
    values: dict[str, Any] = {
        "format": FORMAT,
        "param_names": list(contract.names),
        "contract_hash": contract.hash,
        "contract": contract.hashed_content(),
        "sample_rate": contract.audio.sample_rate,
        "num_samples": num_samples or contract.audio.num_samples,
        "carries": list(carries),
        "model_config": model_config,
        "summary": summary,
        "version": synthmatch_version(),
        "export_id": export_id,
        "synth": synth,
        "extra_outputs": {k: list(v) for k, v in (extra_outputs or {}).items()},
    }
    # default=str: summaries may carry paths or numpy scalars; sort_keys keeps files reproducible
    return {_PREFIX + k: json.dumps(v, sort_keys=True, default=_jsonable) for k, v in values.items()}


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item"):  # numpy / torch scalar
        return v.item()
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


def embed(model_proto, props: dict[str, str]) -> None:
    """Set `props` in an onnx.ModelProto's metadata_props (replacing any earlier synthmatch keys)."""
    keep = [(p.key, p.value) for p in model_proto.metadata_props if not p.key.startswith(_PREFIX)]
    del model_proto.metadata_props[:]
    for k, v in keep + sorted(props.items()):
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = k, v


def _fix(path: Path) -> str:
    return f"re-export it with `synthmatch export --checkpoint CKPT --out {path}` or download the model file again"


def load_proto(path: str | Path):
    """Parse an ONNX file (weights included). Missing, truncated or corrupt files raise ModelError."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"{path}: model file not found; pass the path of an exported .onnx file "
            f"(make one with `synthmatch export --checkpoint CKPT --out {path}`)"
        )
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as e:
        raise ModelError(
            f"{path}: not a readable ONNX file ({type(e).__name__}: {e}); the file is corrupt or "
            f"truncated: {_fix(path)}"
        ) from None
    if not proto.graph.node:
        raise ModelError(f"{path}: the ONNX graph is empty (file truncated or not a model); {_fix(path)}")
    return proto


def meta_from_proto(proto, path: str | Path) -> ModelMeta:
    """Read and validate the synthmatch metadata of a parsed ONNX model."""
    path = Path(path)
    values = _decoded(proto, path)
    _check_values(values, path)
    ins, outs = _graph_io(proto, path)
    names = values["param_names"]
    extras = _extra_outputs(values.get("extra_outputs") or {}, names, outs, path)
    shapes = {name: _window_shape(proto, name, len(rows), path) for name, rows in extras.items()}
    return ModelMeta(
        path=str(path),
        names=tuple(names),
        contract_hash=values["contract_hash"],
        sample_rate=values["sample_rate"],
        num_samples=values["num_samples"],
        contract=values.get("contract") or {},
        model_config=values.get("model_config") or {},
        summary=values.get("summary") or {},
        version=str(values.get("version", "")),
        export_id=str(values.get("export_id", "")),
        format=values["format"],
        synth=values.get("synth") or "reference",
        takes_note=NOTE_NAME in ins,
        extra_outputs=extras,
        extra_shapes=shapes,
        carries=tuple(values.get("carries") or ()),
    )


def _decoded(proto, path: Path) -> dict[str, Any]:
    """The synthmatch metadata keys (prefix removed), each JSON-decoded; ModelError when there are none,
    one is not JSON or a required one is missing."""
    raw = {p.key[len(_PREFIX) :]: p.value for p in proto.metadata_props if p.key.startswith(_PREFIX)}
    if not raw:
        raise ModelError(
            f"{path}: no synthmatch metadata in this ONNX file (not exported by `synthmatch "
            f"export`, or truncated); {_fix(path)}"
        )
    values: dict[str, Any] = {}
    for k, text in raw.items():
        try:
            values[k] = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelError(f"{path}: metadata key {_PREFIX}{k} is not valid JSON ({e}); {_fix(path)}") from None
        except RecursionError:
            raise ModelError(f"{path}: metadata key {_PREFIX}{k} is nested too deeply to read; {_fix(path)}") from None
    missing = [k for k in REQUIRED if k not in values]
    if missing:
        raise ModelError(f"{path}: metadata key {_PREFIX}{missing[0]} is missing; {_fix(path)}")
    return values


def _check_values(values: dict[str, Any], path: Path) -> None:
    """ModelError naming the first metadata value of the wrong format, type or shape."""
    fmt = values["format"]
    if not _whole(fmt):
        raise ModelError(
            f"{path}: metadata {_PREFIX}format = {clip(json.dumps(fmt), 60)}: must be an integer (this "
            f"synthmatch reads format {FORMAT}); {_fix(path)}"
        )
    if fmt != FORMAT:
        advice = FORMAT_ADVICE.get(fmt, "re-export the model with this version")
        raise ModelError(
            f"{path}: model file format {fmt}, this synthmatch ({synthmatch_version()}) reads format {FORMAT}; {advice}"
        )
    for key in ("sample_rate", "num_samples"):
        v = values[key]
        if not (_whole(v) and 0 < v < 2**31):
            raise ModelError(
                f"{path}: metadata {_PREFIX}{key} = {clip(json.dumps(v), 60)}: must be a whole number > 0; {_fix(path)}"
            )
    if not isinstance(values["contract_hash"], str):
        raise ModelError(f"{path}: metadata {_PREFIX}contract_hash must be a string; {_fix(path)}")
    for key in ("contract", "model_config", "summary"):
        if not isinstance(values.get(key) or {}, dict):
            raise ModelError(
                f"{path}: metadata {_PREFIX}{key} = {clip(json.dumps(values[key]), 60)}: must be a JSON object; "
                f"{_fix(path)}"
            )
    for key in ("version", "export_id"):
        if not isinstance(values.get(key, ""), str):
            raise ModelError(f"{path}: metadata {_PREFIX}{key} must be a string; {_fix(path)}")
    if not _contract_shape_ok(values.get("contract") or {}):
        raise ModelError(f"{path}: metadata {_PREFIX}contract has the wrong shape; {_fix(path)}")
    names = values["param_names"]
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise ModelError(f"{path}: metadata {_PREFIX}param_names must be a list of names; {_fix(path)}")
    carries = values.get("carries") or []
    if not (isinstance(carries, list) and all(isinstance(n, str) and n in names for n in carries)):
        raise ModelError(f"{path}: metadata {_PREFIX}carries must list some of its param_names; {_fix(path)}")
    if not isinstance(values.get("synth", ""), str):
        raise ModelError(f"{path}: metadata {_PREFIX}synth must be a synth identity string; {_fix(path)}")


def _graph_io(proto, path: Path) -> tuple[list[str], list[str]]:
    """The graph's (input names, output names); ModelError unless it takes INPUT_NAME (and optionally
    NOTE_NAME) and gives OUTPUT_NAME."""
    ins = [i.name for i in proto.graph.input]
    outs = [o.name for o in proto.graph.output]
    if INPUT_NAME not in ins or OUTPUT_NAME not in outs or not set(ins) <= {INPUT_NAME, NOTE_NAME}:
        raise ModelError(
            f"{path}: graph inputs {ins} / outputs {outs}; a synthmatch model has input "
            f"{INPUT_NAME!r} (and optionally {NOTE_NAME!r}) and output {OUTPUT_NAME!r}; {_fix(path)}"
        )
    return ins, outs


def _extra_outputs(extras: Any, names: list, outs: list[str], path: Path) -> dict[str, tuple[str, ...]]:
    """The metadata's extra_outputs, checked against the graph: each a known extra output of the graph,
    after OUTPUT_NAME, rows naming parameters. Extras this version does not know are left out."""
    if not (isinstance(extras, dict) and all(isinstance(v, list) for v in extras.values())):
        raise ModelError(f"{path}: metadata {_PREFIX}extra_outputs must map output names to lists; {_fix(path)}")
    out = {}
    for name, rows in extras.items():
        if name not in outs or outs.index(name) <= outs.index(OUTPUT_NAME):
            raise ModelError(
                f"{path}: metadata {_PREFIX}extra_outputs names {clip(name, 40)!r}, which is not a graph output "
                f"after {OUTPUT_NAME!r} (outputs {outs}); {_fix(path)}"
            )
        if not rows or not all(isinstance(r, str) and r in names for r in rows):
            raise ModelError(
                f"{path}: metadata {_PREFIX}extra_outputs[{name!r}] must list parameter names; {_fix(path)}"
            )
        if name in EXTRA_OUTPUTS:
            out[name] = tuple(rows)
    return dict(sorted(out.items(), key=lambda kv: outs.index(kv[0])))  # graph order (the JSON's is sorted)


def _window_shape(proto, name: str, rows: int, path: Path) -> tuple[int, ...]:
    """An extra output's shape per window, from the graph: (batch, rows, k) -> (rows, k)."""
    (out,) = [o for o in proto.graph.output if o.name == name]
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in out.type.tensor_type.shape.dim]
    if len(dims) != 3 or dims[1] != rows or dims[2] < 1:
        raise ModelError(
            f"{path}: graph output {name!r} has shape {dims}; its metadata says (batch, {rows}, k); {_fix(path)}"
        )
    return dims[1], dims[2]


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _contract_shape_ok(c: dict) -> bool:
    """The parts of the stored contract that are read (audio.note, params[].name): of the right types."""
    audio = c.get("audio", {})
    if not isinstance(audio, dict) or not _whole(audio.get("note", 60)):
        return False
    params = c.get("params", [])
    return isinstance(params, list) and all(isinstance(p, dict) and isinstance(p.get("name"), str) for p in params)


def read_meta(path: str | Path) -> ModelMeta:
    """The synthmatch metadata of an exported ONNX file. Raises ModelError (naming the file) on any problem."""
    return meta_from_proto(load_proto(path), path)


def check_contract(meta: ModelMeta, contract: Contract, performance: bool = False) -> None:
    """Refuse a model made for another contract, or for the other role. Raises ContractMismatch saying
    which side to change. performance: the model is wanted as continuous mode's performance model (a
    shorter window, answering for `carries`); else as the full model (the contract's window, every
    parameter)."""
    where = contract.source
    fix = (
        "re-export the model from a checkpoint trained on this contract, or run with --contract pointing "
        "at the contract it was trained with"
    )
    if tuple(meta.names) != tuple(contract.names):
        raise ContractMismatch(
            f"{meta.path}: the model predicts parameters ({', '.join(meta.names)}) but {where} names "
            f"({', '.join(contract.names)}); {fix}"
        )
    if meta.sample_rate == contract.audio.sample_rate:  # else the size check below says what differs
        _check_role(meta, performance)
    n = contract.audio.num_samples if not performance else min(meta.num_samples, contract.audio.num_samples)
    if meta.sample_rate != contract.audio.sample_rate or meta.num_samples != n:
        raise ContractMismatch(
            f"{meta.path}: the model takes {meta.num_samples} samples at {meta.sample_rate} Hz but {where} says "
            f"{contract.audio.num_samples} at {contract.audio.sample_rate} Hz; {fix}"
        )
    if meta.contract_hash != contract.hash:
        changed = _changed_sections(meta.contract, contract.hashed_content())
        detail = f" (differs in: {', '.join(changed)})" if changed else ""
        raise ContractMismatch(
            f"{meta.path}: model was exported for contract {meta.contract_hash}, {where} is {contract.hash}"
            f"{detail}; {fix}"
        )


def _check_role(meta: ModelMeta, performance: bool) -> None:
    """ModelError when a performance model is given where a full one is wanted, or the other way round."""
    if meta.performance and not performance:
        raise ModelError(
            f"{meta.path}: a performance model ({meta.window_s:g} s window, answers for {len(meta.carried)} "
            "parameters), not a full one; use it as the bridge's continuous.model (scripts/eval_perf.py "
            "evaluates it) and a full model (models/default.onnx) here"
        )
    if performance and not meta.performance:
        raise ModelError(
            f"{meta.path}: a full model ({meta.window_s:g} s window), not a performance model; use it as the "
            'bridge\'s model, and a performance model (models/performance.onnx) or "" as continuous.model'
        )


def _changed_sections(a: dict, b: dict) -> list[str]:
    """Top-level keys (and parameter names) whose hashed content differs between two contracts."""
    if not a:
        return []
    out = [k for k in ("audio", "frontend", "synth") if a.get(k) != b.get(k)]
    pa = {p.get("name"): p for p in a.get("params", [])}
    out += [f"param {p['name']}" for p in b.get("params", []) if pa.get(p["name"]) != p]
    return out
