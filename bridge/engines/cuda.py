"""The "cuda" backend: the torch model on an NVIDIA GPU in fp16 (or bf16), replayed from CUDA graphs.

The model comes from the torch program export writes beside the ONNX file (model.onnx -> model.pt2): a
torch.export ExportedProgram (torch.export.save), self-contained (graph of ATen ops + weights + the
front-end's DFT/constant-Q kernels), so this backend needs torch alone, never training's model code.
Its graph inputs are those of the ONNX file: "audio" (B, num_samples) float32 and, for a model told the
note, "note" (B,) float32, with a dynamic batch of 1..MAX_BATCH; its outputs too: "params" (B, 16), then
for a pitch-cls model the extra outputs (a tuple; infer_full returns them). Its extra file (PROGRAM_INFO) carries
the format tag and the export id also embedded in the ONNX metadata, so a stale pair is refused.

torch.export rather than TorchScript: the models export with a dynamic batch through their conv-based
front-ends, and the front-end's autocast-disabled region is kept in the graph (a wrap_with_autocast
higher-order op), so the loaded program runs under torch.autocast with its front-end still in fp32.

Untrusted files: torch.export.load can unpickle (payloads flagged use_pickle, sample inputs retried with
weights_only=False, opaque objects), load AOTInductor shared libraries, sympify (eval) expression strings
and exec guard code from the archive, and resolve node targets to any attribute of torch. check_program
therefore reads the archive with zipfile + json first and refuses anything outside what export writes:
known member names only, raw tensor payloads (no pickle), empty sample inputs, node targets that are ATen
operators (or getitem/arithmetic, or the autocast region), expressions and guards in a small grammar of
symbol names and numbers, identifiers for names, no control characters. Only then is the same byte
buffer handed to torch.export.load.

Precision: torch.autocast in fp16/bf16 (the front-end region stays fp32; LayerNorm and softmax run in
fp32 under autocast anyway). Each batch size gets its own CUDA graph, captured on first use (static
input/output buffers; replay costs one launch); batch sizes are rounded up to a power of two so at most
six graphs exist. device="cpu" runs the same code without graphs, fp32 unless a precision is asked for
(tests, debugging).

torch is imported here only, when this backend is opened.
"""

from __future__ import annotations

import io
import json
import keyword
import re
import zipfile
from pathlib import Path

import numpy as np

from synthmatch.bridge.core.modelfile import (
    INPUT_NAME,
    NOTE_NAME,
    OUTPUT_NAME,
    PROGRAM_FORMAT,
    PROGRAM_INFO,
    PROGRAM_SUFFIX,
    ModelError,
    ModelMeta,
)
from synthmatch.bridge.engines.base import MAX_BATCH, BackendUnavailable, Engine

PRECISIONS = ("fp16", "bf16", "fp32")


def program_path(onnx_path: str | Path) -> Path:
    """model.onnx -> model.pt2 (the torch program this backend runs)."""
    return Path(onnx_path).with_suffix(PROGRAM_SUFFIX)


# ------------------------------------------------------------------------------------------------
# Checking an archive before torch reads it

_MEMBERS = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|models/model\.json"
    r"|data/sample_inputs/model\.pt|data/weights/model_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+|extra/[\w.-]+",
    re.ASCII,
)
_IDENT = re.compile(r"[A-Za-z_]\w*", re.ASCII)
_FQN = re.compile(r"[A-Za-z_]\w*(\.\w+)*", re.ASCII)
_OPERATOR = {"getitem", "add", "sub", "mul", "floordiv", "truediv", "mod", "neg", "eq", "ne", "lt", "le", "gt", "ge"}
_DENIED_ATEN = {"from_file", "_debug_has_internal_overlap"}
# sympy's srepr of symbolic sizes, e.g. "Symbol('s42', positive=True, integer=True)", "Mul(Integer(2), ...)"
_EXPR_TOKEN = re.compile(r"\s+|\d+|'[a-z]+\d+'|[(),=+\-*/%]|([A-Za-z]\w*)", re.ASCII)
_EXPR_WORDS = {
    *("Symbol", "Integer", "Rational", "Add", "Mul", "Pow", "Max", "Min", "Abs", "oo", "True", "False"),
    *("FloorDiv", "CleanDiv", "IntTrueDiv", "Mod", "PythonMod", "CeilToInt", "FloorToInt", "TruncToInt"),
    *("Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not"),
    *("positive", "negative", "nonnegative", "integer", "real", "finite"),
}
# guards on the inputs' sizes, e.g. "L['note'].size()[0] == 1 or L['audio'].size()[0] == L['note'].size()[0]"
_GUARD_TOKEN = re.compile(
    rf"\s+|\d+|L\['(?:{INPUT_NAME}|{NOTE_NAME})'\]\.size\(\)\[\d\]|==|!=|<=|>=|<|>|[()+\-*%]|(and|or|not)\b",
    re.ASCII,
)


def _grammar(text: str, token: re.Pattern, words: set[str] | None = None) -> bool:
    """text is a sequence of `token` matches (whose group 1, a word, is in `words` when given)."""
    pos = 0
    while pos < len(text):
        m = token.match(text, pos)
        if not m or m.end() == pos or (words is not None and m.group(1) and m.group(1) not in words):
            return False
        pos = m.end()
    return True


def _op_allowed(target: str) -> bool:
    import torch

    if target == "torch.ops.higher_order.wrap_with_autocast":
        return True
    if target.startswith("_operator."):
        return target.split(".", 1)[1] in _OPERATOR
    m = re.fullmatch(r"torch\.ops\.aten\.(\w+)\.(\w+)", target, re.ASCII)
    if not m or m.group(1) in _DENIED_ATEN:
        return False
    try:
        op = getattr(getattr(torch.ops.aten, m.group(1)), m.group(2))
    except Exception:  # unknown op or overload
        return False
    return isinstance(op, torch._ops.OpOverload) and op.namespace == "aten"


def _json_problem(node) -> str | None:
    """The first thing in the serialized program (models/model.json) outside what export writes."""
    stack = [(node, "")]
    while stack:
        value, key = stack.pop()
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str) or any(c < " " for c in k):
                    return f"key {k!r}"
                stack.append((v, k))
        elif isinstance(value, list):
            stack.extend((v, key) for v in value)
        elif isinstance(value, str):
            if any(c < " " for c in value):
                return f"control character in {key} {value[:40]!r}"
            if key == "target" and not _op_allowed(value):
                return f"node target {value!r}"
            if key == "expr_str" and not _grammar(value, _EXPR_TOKEN, _EXPR_WORDS):
                return f"expression {value[:60]!r}"
            if key == "guards_code" and not _grammar(value, _GUARD_TOKEN, {"and", "or", "not"}):
                return f"guard {value[:60]!r}"
            if (key in ("name", "as_name", "forward_arg_names") and value) and (  # "": a HOP's argument
                not _IDENT.fullmatch(value) or keyword.iskeyword(value)
            ):
                return f"{key} {value[:40]!r}"
            if (key == "fqn" or key.endswith("_name")) and value and (not _FQN.fullmatch(value) or "__" in value):
                return f"{key} {value[:40]!r}"
    return None


def check_program(data: bytes, path: Path) -> dict:
    """Refuse (ModelError) an archive that is not what `synthmatch export` writes, before torch reads it;
    returns its PROGRAM_INFO dict. Uses only zipfile and json: nothing is unpickled or evaluated."""

    def refuse(why: str) -> ModelError:
        return ModelError(
            f"{path}: not a torch program written by `synthmatch export` ({why}); re-export the model or "
            f"copy {path.name} again from where the .onnx file came from"
        )

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
        roots = {i.filename.split("/", 1)[0] for i in infos}
        if len(roots) != 1:
            raise refuse(f"{len(roots)} top-level folders")
        root = roots.pop() + "/"
        names = {i.filename[len(root) :]: i for i in infos}
        if len(names) != len(infos):  # which copy would torch's zip reader take?
            raise refuse("duplicate members")
        odd = sorted(n for n in names if not _MEMBERS.fullmatch(n))
        if odd:
            raise refuse(f"unexpected member {odd[0]!r}")
        for need in ("models/model.json", "data/weights/model_weights_config.json", f"extra/{PROGRAM_INFO}"):
            if need not in names:
                raise refuse(f"no {need}")
        if names.get("data/sample_inputs/model.pt") and names["data/sample_inputs/model.pt"].file_size:
            raise refuse("pickled sample inputs")
        info = json.loads(archive.read(root + f"extra/{PROGRAM_INFO}"))
        if not isinstance(info, dict) or info.get("format") != PROGRAM_FORMAT:
            raise refuse(f"no format = {PROGRAM_FORMAT!r} in its {PROGRAM_INFO}")
        for kind, config, file_pattern in (
            ("weight", "data/weights/model_weights_config.json", r"weight_\d+"),
            ("constant", "data/constants/model_constants_config.json", r"tensor_\d+"),
        ):
            entries = json.loads(archive.read(root + config))["config"] if config in names else {}
            for fqn, entry in entries.items():
                if entry.get("use_pickle") is not False or not re.fullmatch(
                    file_pattern, entry.get("path_name", ""), re.ASCII
                ):
                    raise refuse(f"{kind} {fqn!r} is not a raw tensor")
                if not _FQN.fullmatch(fqn) or "__" in fqn:
                    raise refuse(f"{kind} name {fqn[:40]!r}")
        program = json.loads(archive.read(root + "models/model.json"))
    except ModelError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, AttributeError, TypeError) as e:
        raise ModelError(
            f"{path}: unreadable torch program ({type(e).__name__}: {e}); re-export the model or copy {path.name} again"
        ) from None
    why = _json_problem(program)
    if why:
        raise refuse(why)
    return info


def load_program(onnx_path: str | Path, meta: ModelMeta):
    """Read model.pt2 beside model.onnx, check it (check_program) and that it belongs to the ONNX file,
    then load it with torch.export.load. Returns the ExportedProgram (on the CPU)."""
    onnx_path = Path(onnx_path)
    path = program_path(onnx_path)
    if not path.is_file():
        raise BackendUnavailable(
            f"cuda: no torch program {path} beside {onnx_path} (`synthmatch export` writes it unless "
            f"--no-weights; copy it along with the .onnx file, or export the model again)"
        )
    data = path.read_bytes()
    info = check_program(data, path)
    if info.get("export_id") != meta.export_id:
        raise ModelError(
            f"{path}: torch program (export id {info.get('export_id')}) does not belong to {onnx_path} "
            f"(export id {meta.export_id}); export both again with `synthmatch export` or copy the pair"
        )
    inputs = [INPUT_NAME, NOTE_NAME] if meta.takes_note else [INPUT_NAME]
    if info.get("inputs") != inputs:
        raise ModelError(f"{path}: program inputs {info.get('inputs')}, {onnx_path} has {inputs}; re-export")
    outputs = [OUTPUT_NAME, *meta.extra_outputs]
    if info.get("outputs", [OUTPUT_NAME]) != outputs:  # programs written before the extras: values alone
        raise ModelError(f"{path}: program outputs {info.get('outputs')}, {onnx_path} has {outputs}; re-export")
    import torch

    try:
        return torch.export.load(io.BytesIO(data))
    except Exception as e:  # schema/version mismatch, damaged payloads
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelError(
            f"{path}: torch {torch.__version__} cannot load this program (written with torch "
            f"{info.get('torch', '?')}: {type(e).__name__}: {first}); re-export it with `synthmatch export` "
            "under this torch"
        ) from None


def graph_batch(b: int) -> int:
    """Batch size of the CUDA graph that serves a batch of b: the next power of two (1, 2, 4, ... MAX_BATCH),
    so at most log2(MAX_BATCH) + 1 graphs (each with its own activation memory) are ever captured. Rows
    are independent in eval mode, so the padding rows do not affect the others."""
    return min(1 << max(b - 1, 0).bit_length(), MAX_BATCH)


class TorchEngine(Engine):
    name = "cuda"

    def __init__(
        self,
        path: str | Path,
        meta: ModelMeta,
        device: str = "cuda",
        precision: str | None = None,
        cuda_graphs: bool = True,
    ):
        """precision: "fp16" (default on a GPU), "bf16" or "fp32" (default on the CPU)."""
        super().__init__(meta)
        try:
            import torch
        except ImportError:
            raise BackendUnavailable("cuda: torch is not installed (pip install torch)") from None
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(
                f"cuda: torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False)"
            )
        self._torch = torch
        self.device = torch.device(device)
        program = load_program(path, meta)
        if self.device.type != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, self.device)
        self.model = program.module()
        self.precision = precision or ("fp16" if self.device.type == "cuda" else "fp32")
        self.use_graphs = cuda_graphs and self.device.type == "cuda"
        self._graphs: dict[int, tuple] = {}  # batch -> (graph, static input, static note, static output)
        self._dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[self.precision]
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        self.detail = f"{name} {self.precision}{' cuda-graphs' if self.use_graphs else ''}"
        if self.device.type == "cuda":
            self._stream = torch.cuda.Stream(self.device)
            self._run(
                np.zeros((1, meta.num_samples), np.float32),
                np.full(1, meta.reference_note, np.float32) if meta.takes_note else None,
            )  # warm-up

    def _forward(self, x, note) -> tuple:
        """The program's outputs as a tuple of fp32 tensors: (values,) or (values, *extras)."""
        torch = self._torch
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=self._dtype, enabled=self.precision != "fp32"),
        ):
            out = self.model(x) if note is None else self.model(x, note)
            return tuple(t.float() for t in (out if isinstance(out, (tuple, list)) else (out,)))

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
        return self._run_full(audio, notes)[0]

    def _run_full(self, audio: np.ndarray, notes: np.ndarray | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        torch = self._torch
        outs: list[list[np.ndarray]] = []  # per chunk: values, then the extras
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
                outs.append([t[:b].cpu().numpy() for t in static_out])  # .cpu() synchronises
            else:
                got = self._forward(x.to(self.device), None if n is None else n.to(self.device))
                outs.append([t.cpu().numpy() for t in got])
        values, *extras = (np.concatenate(parts) for parts in zip(*outs))
        return values, dict(zip(self.meta.extra_outputs, extras))

    def close(self) -> None:
        self._graphs.clear()
        self.model = None
