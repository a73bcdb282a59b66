"""The front-end is defined once: torch module, numpy reference and ONNX Runtime export agree."""

import numpy as np
import pytest
import torch

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core import frontend as ref
from synthmatch.training.model.frontend import LogMel
from synthmatch.training.synths.reference import ReferenceSynth
from synthmatch.training.synths.sampling import sample_params

C = contract_mod.default()


@pytest.fixture(scope="module")
def audio():
    return ReferenceSynth(C).render(torch.from_numpy(sample_params(C, 5, range(3))))


def test_shape_is_64_mels_by_398_frames(audio):
    assert LogMel(C)(audio).shape == (3, C.frontend.n_mels, C.num_frames) == (3, 64, 398)


def test_torch_matches_the_numpy_reference(audio):
    expected = ref.log_mel(audio.numpy(), C)
    assert np.abs(LogMel(C)(audio).numpy() - expected).max() < 1e-4


def test_mel_filterbank_covers_the_band_once():
    fb = ref.mel_filterbank(C)
    assert fb.shape == (64, C.frontend.n_fft // 2 + 1)
    assert np.all(fb.max(1) > 0.5)  # no empty filter
    centres = np.argmax(fb, 1)
    assert np.all(np.diff(centres) >= 0)


def test_a_tone_lands_in_the_right_mel_band():
    t = np.arange(C.audio.num_samples) / C.audio.sample_rate
    for hz in (200.0, 1000.0, 4000.0):
        mel = ref.log_mel(np.sin(2 * np.pi * hz * t), C).mean(-1)
        centre_hz = ref.mel_to_hz(
            np.linspace(ref.hz_to_mel(C.frontend.f_min), ref.hz_to_mel(C.frontend.f_max), C.frontend.n_mels + 2)[1:-1]
        )
        assert abs(np.log2(centre_hz[np.argmax(mel)] / hz)) < 0.15


def test_onnx_runtime_export_matches_torch(audio, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    module = LogMel(C).eval()
    path = tmp_path / "frontend.onnx"
    torch.onnx.export(
        module,
        (audio[:1],),
        str(path),
        input_names=["audio"],
        output_names=["logmel"],
        dynamic_axes={"audio": {0: "batch"}, "logmel": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"audio": audio.numpy()})
    assert np.abs(out - module(audio).numpy()).max() < 1e-4
