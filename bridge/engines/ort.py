"""The "onnxruntime" backend: ONNX Runtime on the CPU, fp32. Always available; the reference the GPU
backends are checked against. Returns the model's extra outputs (infer_full) when it has them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthmatch.bridge.core.modelfile import INPUT_NAME, NOTE_NAME, OUTPUT_NAME, ModelMeta
from synthmatch.bridge.engines.base import BackendError, Engine


class OnnxRuntimeEngine(Engine):
    """ONNX Runtime, CPUExecutionProvider, fp32, full graph optimisation."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, meta: ModelMeta, threads: int | None = None):
        super().__init__(meta)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        if threads is not None:
            if threads < 1:
                raise ValueError(f"onnxruntime threads must be >= 1, got {threads}")
            opts.intra_op_num_threads = threads  # 0 (default) = one per physical core
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise BackendError(
                f"{path}: ONNX Runtime could not load the model ({type(e).__name__}: {e}); "
                f"re-export it with `synthmatch export`"
            ) from None
        self.threads = threads
        self.detail = f"cpu fp32 threads={threads or 'default'}"

    def _run(self, audio: np.ndarray, notes: np.ndarray | None) -> np.ndarray:
        return self._session.run([OUTPUT_NAME], self._feed(audio, notes))[0]

    def _run_full(self, audio: np.ndarray, notes: np.ndarray | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        names = list(self.meta.extra_outputs)
        values, *extras = self._session.run([OUTPUT_NAME, *names], self._feed(audio, notes))
        return values, dict(zip(names, extras))

    @staticmethod
    def _feed(audio: np.ndarray, notes: np.ndarray | None) -> dict[str, np.ndarray]:
        return {INPUT_NAME: audio} if notes is None else {INPUT_NAME: audio, NOTE_NAME: notes}

    def close(self) -> None:
        self._session = None
