"""The constant-Q view resolves a semitone where the log-mel cannot; torch, numpy and ONNX Runtime agree."""

import numpy as np
import pytest
import torch

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core import frontend as ref
from synthmatch.training.model.frontend import LogCQT
from synthmatch.training.synths.reference import ReferenceSynth
from synthmatch.training.synths.sampling import sample_params

C = contract_mod.default()
SPEC = ref.CQTSpec()
SR, N = C.audio.sample_rate, C.audio.num_samples


def _tone(hz: float) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * hz * np.arange(N) / SR)


@pytest.fixture(scope="module")
def kernels():
    return ref.cqt_kernels(SPEC, SR, N)


@pytest.mark.parametrize("hz", [65.41, 1000.0])  # C2 (the lowest fundamental) and 1 kHz
def test_two_tones_a_semitone_apart_are_two_peaks(hz, kernels):
    up = hz * 2 ** (1 / 12)
    both = ref.log_cqt(_tone(hz) + _tone(up), SPEC, SR, kernels).mean(-1)  # time-averaged spectrum
    a, b = (int(np.argmin(np.abs(np.log2(kernels.freqs / f)))) for f in (hz, up))
    assert b - a == SPEC.bins_per_octave // 12  # one semitone = 3 bins
    dip = both[a + 1 : b].min()

    # a dip of at least 3 dB of power between the two peaks: log power is scaled by 1 / (2 std)
    def db(x):
        return 10 * np.log10(np.e) * x * 2 * SPEC.norm_std

    assert db(min(both[a], both[b]) - dip) > 3.0
    # the log-mel puts both tones into the same band or neighbouring ones, with no dip
    mel = ref.log_mel(_tone(hz) + _tone(up), C).mean(-1)
    peaks = [i for i in range(1, len(mel) - 1) if mel[i] > mel[i - 1] and mel[i] >= mel[i + 1]]
    assert len([p for p in peaks if mel[p] > mel.max() - 0.1]) == 1


def test_a_tone_peaks_on_its_bin(kernels):
    for hz in (80.0, 440.0, 3000.0):
        spec = ref.log_cqt(_tone(hz), SPEC, SR, kernels).mean(-1)
        assert abs(12 * np.log2(kernels.freqs[np.argmax(spec)] / hz)) < 0.5 * 12 / SPEC.bins_per_octave + 1e-9


def test_torch_numpy_and_onnx_runtime_agree(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    audio = ReferenceSynth(C).render(torch.from_numpy(sample_params(C, 11, range(3))))
    module = LogCQT(SPEC, SR, N).eval()
    with torch.no_grad():
        out = module(audio).numpy()
    assert out.shape == (3, len(ref.cqt_freqs(SPEC, SR)), N // int(SPEC.hop_s * SR))
    assert np.abs(out - ref.log_cqt(audio.numpy(), SPEC, SR)).max() < 1e-4
    path = tmp_path / "cqt.onnx"
    torch.onnx.export(
        module,
        (audio[:1],),
        str(path),
        input_names=["audio"],
        output_names=["cqt"],
        dynamic_axes={"audio": {0: "batch"}, "cqt": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    (onnx_out,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"audio": audio.numpy()}
    )
    assert np.abs(onnx_out - out).max() < 1e-4


def test_spec_rejects_nonsense():
    with pytest.raises(ValueError, match="bins_per_octave"):
        ref.CQTSpec(bins_per_octave=6)
    with pytest.raises(ValueError, match="f_min"):
        ref.CQTSpec(f_min=9000.0)
