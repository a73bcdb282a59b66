"""Small ONNX graphs that look like synthmatch exports (the metadata bridge.modelfile reads) but compute
something simple and wrong: too few or too many outputs, NaN, values outside [0, 1], always or only
when the input is not silent. Built with onnx.helper; no torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_model(path: Path, contract, outputs: int = 16, value: float = 0.5, on_sound: str | None = None) -> Path:
    """A model with input "audio" (B, num_samples) and output "params" (B, outputs).

    Every output is `value`; on_sound changes what a window with any non-zero sample gets:
    "nan" -> NaN (0.5 + sqrt(-peak)), "range" -> 0.5 + 100 * peak (far above 1). Silence -> `value`."""
    from onnx import helper

    consts = {"ones": np.ones((1, outputs), np.float32), "fill": np.full((1, outputs), value, np.float32)}
    nodes = [
        helper.make_node("Abs", ["audio"], ["mag"]),
        helper.make_node("ReduceMax", ["mag"], ["peak"], axes=[1], keepdims=1),
    ]  # (B, 1)
    if on_sound == "nan":
        nodes += [helper.make_node("Neg", ["peak"], ["neg"]), helper.make_node("Sqrt", ["neg"], ["bump"])]
    elif on_sound == "range":
        consts["hundred"] = np.array(100.0, np.float32)
        nodes += [helper.make_node("Mul", ["peak", "hundred"], ["bump"])]
    else:
        nodes += [helper.make_node("Sub", ["peak", "peak"], ["bump"])]  # 0 (B, 1)
    nodes += [
        helper.make_node("Mul", ["bump", "ones"], ["spread"]),  # (B, outputs)
        helper.make_node("Add", ["spread", "fill"], ["params"]),
    ]
    return _save(path, contract, "bad-model", nodes, consts, outputs)


def write_raising_model(path: Path, contract) -> Path:
    """A synthmatch-looking ONNX model that outputs 0.5 on silence (so it passes the load check) and makes
    ONNX Runtime raise on any window with sound: Gather at index ceil(peak * 1e6), out of bounds."""
    from onnx import TensorProto, helper

    k = len(contract.names)
    consts = {
        "fill": np.full((1, k), 0.5, np.float32),
        "million": np.array(1e6, np.float32),
        "axis1": np.array([1], np.int64),
    }
    nodes = [
        helper.make_node("Abs", ["audio"], ["mag"]),
        helper.make_node("ReduceMax", ["mag"], ["peak"], axes=[1], keepdims=1),  # (B, 1)
        helper.make_node("Mul", ["peak", "million"], ["scaled"]),
        helper.make_node("Ceil", ["scaled"], ["ceil"]),
        helper.make_node("Cast", ["ceil"], ["index"], to=TensorProto.INT64),  # 0 on silence
        helper.make_node("Gather", ["fill", "index"], ["picked"], axis=0),  # (B, 1, k)
        helper.make_node("Squeeze", ["picked", "axis1"], ["params"]),  # (B, k)
    ]
    return _save(path, contract, "raising-model", nodes, consts, k)


def _save(path: Path, contract, name: str, nodes: list, consts: dict[str, np.ndarray], outputs: int) -> Path:
    """The graph of `nodes` ("audio" (B, num_samples) -> "params" (B, outputs)) with `consts` as
    initializers, opset 17, the contract's synthmatch metadata, written to `path`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from synthmatch.bridge.core.modelfile import build_props, embed

    n = contract.audio.num_samples
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("params", TensorProto.FLOAT, ["batch", outputs])],
        initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    embed(model, build_props(contract, {"name": name}, {"note": "test model"}, "test"))
    onnx.save(model, str(path))
    return path
