"""The reference synthesizer: a Massive-like wavetable-subtractive voice, batched in torch.

Signal path (serial, fixed; settings in the contract's [synth] table):

    3 wavetable oscillators (pitch, position, gain), each morphing through its own bank of shapes
      -> filter 1: 4-pole resonant ladder lowpass (cutoff, resonance)
      -> filter 2: 2-pole resonant highpass (cutoff, resonance)
      -> amplitude envelope (attack, decay; fixed sustain, note-off and release)
      -> reverb (fixed impulse response, dry/wet mix)
      -> limiter (divides by the peak only where it exceeds 1, so gains keep their absolute meaning)

Why it is fast and exact: the oscillators are strictly periodic and the filters do not move during the
note, so filtering an oscillator is exact in the frequency domain: each harmonic k of f0 is scaled by the
filters' complex response at k * f0. One band-limited single-cycle table per oscillator is then built
with an inverse FFT (harmonics at or above Nyquist are never written, so nothing aliases at any pitch)
and read with a phase accumulator. The envelope multiplies in time; the reverb is one FFT convolution.

render: (B, 16) normalised parameters -> (B, num_samples) float32 in [-1, 1], on the input's device.
Reference is the same synth behind the seam (training.synths.Synth): CPU, numpy in and out.

The torch-free definitions (constants, the shapes' harmonic series, the reverb's impulse response) live in
bridge/match/synth.py, beside the numpy renderer of the same voice that the runtime uses.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from synthmatch.bridge.core.contract import Contract
from synthmatch.bridge.match.synth import (  # the torch-free definitions, shared with the numpy renderer
    HEADROOM,
    HIGHPASS_Q,
    LADDER_MAX_FEEDBACK,
    N_HARMONICS,
    PHASE_BLOCK,
    TABLE_SIZE,
    reverb_ir,
    wavetable_coefficients,
)
from synthmatch.training.synths.base import REFERENCE, Synth

RENDER_GROUP = 8  # as training.data.onthefly: fixed groups keep example i bit-identical whatever N


class ReferenceSynth:
    """Stateless renderer; constants are cached per device. Thread-safe for reading."""

    def __init__(self, contract: Contract, chunk: int = 32):
        self.contract = contract
        self.chunk = chunk  # examples per inner step: bounds the (chunk, 3, T) phase tensors
        s = contract.synth
        if (s.filter1, s.filter2) != ("lowpass4", "highpass2"):
            raise ValueError(
                f"{contract.source}: synth.filter1/filter2 must be lowpass4/highpass2 "
                f"(the only routing this synth implements), got {s.filter1}/{s.filter2}"
            )
        self._coefs = [wavetable_coefficients(bank) for bank in s.wavetables]
        self._ir = reverb_ir(contract)
        self._cache: dict[torch.device, dict[str, torch.Tensor]] = {}
        T = contract.audio.num_samples
        self.n_fft = 1 << math.ceil(math.log2(T + len(self._ir) - 1))  # linear (not circular) convolution
        self.index = {name: i for i, name in enumerate(contract.names)}

    def _consts(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device not in self._cache:
            T, sr = self.contract.audio.num_samples, self.contract.audio.sample_rate
            ir = torch.from_numpy(self._ir).to(device)
            self._cache[device] = {
                "coefs": [torch.from_numpy(c).to(torch.complex64).to(device) for c in self._coefs],  # 3 x (S, K)
                "k": torch.arange(1, N_HARMONICS + 1, device=device, dtype=torch.float32),
                "t_s": torch.arange(T, device=device, dtype=torch.float32) / sr,  # seconds
                "ir_f": torch.fft.rfft(ir, n=self.n_fft).to(torch.complex64),
            }
        return self._cache[device]

    def physical(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 16) normalised -> {name: (B,) physical, float64}; inputs are clamped to [0, 1] first.

        float64 on purpose: torch's vectorised and scalar kernels for pow/exp round differently in the
        last bit, and which one an example gets depends on the batch size. In float64 that bit never
        reaches the float32 audio, so sample i stays identical whatever the batch.
        """
        v = v.double().clamp(0.0, 1.0)
        return {p.name: p.to_physical(v[:, i]) for i, p in enumerate(self.contract.params)}

    @torch.no_grad()
    def render(self, v: torch.Tensor, note: float | torch.Tensor | None = None) -> torch.Tensor:
        """note: the MIDI note played (fractional allowed): one number, or (B,) per example; None =
        the contract's audio.note, computed exactly as before the argument existed (same bits)."""
        v = torch.nan_to_num(v.float(), nan=0.5)
        if not len(v):
            return v.new_zeros(0, self.contract.audio.num_samples)
        if note is None or not isinstance(note, torch.Tensor):
            return torch.cat([self._render(c, note) for c in v.split(self.chunk)])
        notes = note.double().reshape(-1).expand(len(v)) if note.numel() == 1 else note.double().reshape(-1)
        if len(notes) != len(v):
            raise ValueError(f"render: {len(notes)} notes for {len(v)} patches; give one note or one per patch")
        return torch.cat([self._render(c, n) for c, n in zip(v.split(self.chunk), notes.split(self.chunk))])

    def _render(self, v: torch.Tensor, note: float | torch.Tensor | None = None) -> torch.Tensor:
        c = self._consts(v.device)
        a, sr = self.contract.audio, self.contract.audio.sample_rate
        p64 = self.physical(v)
        p = {name: x.float() for name, x in p64.items()}
        B = v.shape[0]

        # oscillator fundamentals (B, 3), Hz; the played note is a Python float or (B,) float64
        if isinstance(note, torch.Tensor):
            f_note = (440.0 * 2.0 ** ((note.to(v.device) - 69) / 12))[:, None]  # (B, 1)
        else:
            f_note = 440.0 * 2.0 ** (((a.note if note is None else float(note)) - 69) / 12)
        pitch = torch.stack([p64[f"osc{j}_pitch"] for j in (1, 2, 3)], 1)
        f0 = f_note * 2.0 ** (pitch / 12)  # float64: the phase accumulator needs it exact
        freqs = f0.float()[..., None] * c["k"]  # (B, 3, K)

        # wavetable morph: linear blend of neighbouring shapes' harmonic amplitudes, one bank per oscillator
        coef = torch.stack([self._morph(bank, p[f"osc{j + 1}_position"]) for j, bank in enumerate(c["coefs"])], 1)

        gain = torch.stack([p[f"osc{j}_gain"] for j in (1, 2, 3)], 1).unsqueeze(-1) * HEADROOM
        response = self._lowpass4(freqs, p["filter1_cutoff"], p["filter1_resonance"]) * self._highpass2(
            freqs, p["filter2_cutoff"], p["filter2_resonance"]
        )
        amp = coef * response * gain * (freqs < sr / 2)  # band-limited: nothing at or above Nyquist

        # one filtered single cycle per oscillator: irfft scales by 1/N, Re(c e^{ik.}) = (c + c*) / 2
        spectrum = amp.new_zeros(B, 3, TABLE_SIZE // 2 + 1)
        spectrum[..., 1 : N_HARMONICS + 1] = amp * (TABLE_SIZE / 2)
        table = torch.fft.irfft(spectrum, n=TABLE_SIZE)  # (B, 3, N)
        x = self._read(table, f0 / sr * TABLE_SIZE, a.num_samples).sum(1)  # (B, T)

        x = x * self._envelope(p["env_attack"], p["env_decay"], c["t_s"])
        wet = torch.fft.irfft(torch.fft.rfft(x, n=self.n_fft) * c["ir_f"], n=self.n_fft)[:, : a.num_samples]
        mix = p["reverb_mix"].unsqueeze(-1)
        y = (1 - mix) * x + mix * wet
        peak = y.abs().amax(-1, keepdim=True)
        return y / peak.clamp(min=1.0)

    @staticmethod
    def _morph(bank: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """bank (S, K) complex, position (B,) in [0, 1] -> (B, K) blend of the two nearest shapes."""
        pos = position * (len(bank) - 1)
        i0 = pos.floor().long().clamp(max=len(bank) - 2)
        frac = (pos - i0).unsqueeze(-1)
        return bank[i0] * (1 - frac) + bank[i0 + 1] * frac

    @staticmethod
    def _read(table: torch.Tensor, inc: torch.Tensor, T: int) -> torch.Tensor:
        """Phase-accumulator reading. table (B, 3, N), N a power of two; inc (B, 3) table samples per
        output sample -> (B, 3, T).

        Nearest-sample reading of a 2^15 table: the phase error is at most 1/2^16 cycle, -85 dB at the
        fundamental and about -45 dB on the 122nd harmonic, and costs one gather instead of two plus an
        interpolation. The phase stays exact without float64 passes over (B, 3, T): block starts are
        reduced mod N in float64 on (B, 3, T / PHASE_BLOCK) values, ramps within a block stay small,
        and the integer index wraps with a bit mask.
        """
        N, bs = table.shape[-1], PHASE_BLOCK
        n_blocks = -(-T // bs)
        starts = torch.arange(n_blocks, device=inc.device, dtype=torch.float64) * bs
        base = torch.remainder(inc.double()[..., None] * starts, N).float() + 0.5  # +0.5: round to nearest
        ramp = inc.float()[..., None] * torch.arange(bs, device=inc.device, dtype=torch.float32)
        phase = (base[..., None] + ramp[..., None, :]).flatten(-2)[..., :T]  # (B, 3, T)
        idx = phase.long().bitwise_and_(N - 1)
        return torch.gather(table, 2, idx)

    @staticmethod
    def _lowpass4(f: torch.Tensor, cutoff: torch.Tensor, res: torch.Tensor) -> torch.Tensor:
        """Ladder lowpass H(s) = (1 + k) / ((1 + s / wc)^4 + k) at s = j 2 pi f; unity DC gain."""
        k = (res * LADDER_MAX_FEEDBACK)[:, None, None]
        s = torch.complex(torch.zeros_like(f), f / cutoff[:, None, None])  # j f / fc
        return (1 + k) / ((1 + s) ** 4 + k)

    @staticmethod
    def _highpass2(f: torch.Tensor, cutoff: torch.Tensor, res: torch.Tensor) -> torch.Tensor:
        """Resonant highpass H(s) = s^2 / (s^2 + s / Q + 1), s normalised to the cutoff."""
        q_lo, q_hi = HIGHPASS_Q
        q = (q_lo * (q_hi / q_lo) ** res)[:, None, None]
        s = torch.complex(torch.zeros_like(f), f / cutoff[:, None, None])
        return s * s / (s * s + s / q + 1)

    def _envelope(self, attack: torch.Tensor, decay: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Linear attack to 1, exponential decay to the sustain level, exponential release after
        note-off. attack, decay: (B,) seconds; t: (T,) seconds -> (B, T)."""
        s = self.contract.synth
        A, D = attack[:, None], decay[:, None]

        def held(tt):
            return torch.where(tt < A, tt / A, s.sustain + (1 - s.sustain) * torch.exp(-(tt - A).clamp(min=0) / D))

        at_off = held(torch.full_like(A, s.note_off_s))
        released = at_off * torch.exp(-(t - s.note_off_s).clamp(min=0) / s.release_s)
        return torch.where(t < s.note_off_s, held(t), released)


class Reference(Synth):
    """ReferenceSynth behind the seam: CPU, numpy in and out."""

    identity = REFERENCE

    def __init__(self, contract: Contract, device: str = "cpu"):
        self.contract = contract
        self.device = torch.device(device)
        self._synth = ReferenceSynth(contract, chunk=RENDER_GROUP)
        self.note: float | None = None  # MIDI note played; None = the contract's (match sets the heard one)

    def render(self, params: np.ndarray) -> np.ndarray:
        p = torch.as_tensor(np.asarray(params, dtype=np.float32)).reshape(-1, len(self.contract.params))
        return self._synth.render(p.to(self.device), note=self.note).cpu().numpy()
