"""The reference synthesizer in numpy: the same voice as training/synths/reference.py's torch ReferenceSynth, no torch.

Signal path (serial, fixed; settings in the contract's [synth] table): 3 wavetable oscillators (pitch,
position, gain) -> 4-pole ladder lowpass -> 2-pole resonant highpass -> amplitude envelope -> reverb (fixed
impulse response, dry/wet mix) -> limiter (divides by the peak only where it exceeds 1). training/synths/reference.py
explains why it is exact: the filters act on each harmonic of a strictly periodic oscillator.

This module holds the synth's torch-free definitions (the constants, the shapes' harmonic series, the
reverb's impulse response), imported from here by training/synths/reference.py, and `Synth`, which renders with the
same arithmetic in the same precisions (float64 where the torch synth uses float64, float32 elsewhere), so
the two agree to float32 rounding (tests/bridge/match/test_synth_parity.py). Its parts serve the matcher:
`Synth.harmonics` (each oscillator's f0 and filtered complex harmonic amplitudes) and `Synth.envelope`
describe a candidate's sound without rendering it.
"""

from __future__ import annotations

import math

import numpy as np

from synthmatch.bridge.core.contract import Contract, default

N_HARMONICS = 128  # enough for C4 at -24 semitones (65 Hz) up to 8 kHz: 122 harmonics (lower notes
#                   with low offsets stop below 8 kHz: at MIDI 36 - 24 semitones, 16 Hz x 128 = 2 kHz)
TABLE_SIZE = 1 << 15  # single-cycle table, read at the nearest sample (see _read)
LADDER_MAX_FEEDBACK = 3.5  # filter 1 resonance 1.0 -> +19 dB peak, below self-oscillation (4.0)
HIGHPASS_Q = (0.5, 8.0)  # filter 2 resonance 0 .. 1 -> Q, exponential
REVERB_SEED = 20240901  # the impulse response is fixed noise: same on every machine and device
PHASE_BLOCK = 64  # samples per float64-reduced phase block in _read
HEADROOM = 1.0 / 3.0  # three full-scale oscillators sum to at most 1 before the filters


def _vowel(k: np.ndarray, f1: float, f2: float) -> np.ndarray:
    """Harmonic weights of a vowel-like tone: two formant bumps (in harmonic numbers) on a soft body."""
    return np.exp(-0.5 * ((k - f1) / 0.8) ** 2) + 0.6 * np.exp(-0.5 * ((k - f2) / 1.2) ** 2) + 0.15 / k**2


def shape_spectrum(name: str, k: np.ndarray) -> np.ndarray:
    """Real sine-series amplitudes of harmonics k for a named single-cycle shape."""
    odd = k % 2 == 1
    if name == "sine":
        return np.where(k == 1, 1.0, 0.0)
    if name == "triangle":
        return np.where(odd, (-1.0) ** ((k - 1) // 2) / k**2, 0.0)
    if name == "saw":
        return (-1.0) ** (k + 1) / k
    if name == "square":
        return np.where(odd, 1.0 / k, 0.0)
    if name.startswith("pulse"):  # pulseNN: rectangular pulse train of NN % duty
        duty = float(name[5:]) / 100
        return np.sin(np.pi * k * duty) / k
    vowels = {"u": (1.2, 2.7), "o": (1.7, 3.1), "a": (3.0, 4.6), "e": (1.5, 7.6), "i": (1.1, 8.8)}
    if name.startswith("vowel_") and name[6:] in vowels:  # formants as harmonic numbers at C4
        return _vowel(k, *vowels[name[6:]])
    raise ValueError(
        f"unknown wavetable shape {name!r}; known: sine, triangle, saw, square, pulseNN (NN = duty %), vowel_u/o/a/e/i"
    )


def wavetable_coefficients(shapes: tuple[str, ...], n: int = N_HARMONICS) -> np.ndarray:
    """Complex harmonic amplitudes c_k (k = 1..n) of each shape, x(theta) = sum_k Re(c_k e^{ik theta}),
    each shape scaled to unit peak. Returns (len(shapes), n) complex128."""
    k = np.arange(1, n + 1)
    theta = np.linspace(0, 2 * np.pi, 8192, endpoint=False)
    cycle = np.exp(1j * np.outer(theta, k))  # (8192, n): e^{ik theta}
    rows = []
    for name in shapes:
        c = shape_spectrum(name, k) * -1j  # Re(-i e^{i theta}) = sin(theta)
        wave = np.real(cycle @ c)
        rows.append(c / np.abs(wave).max())
    return np.stack(rows)


def reverb_ir(contract: Contract) -> np.ndarray:
    """Exponentially decaying noise after a pre-delay, unit energy: (L,) float64."""
    s, sr = contract.synth, contract.audio.sample_rate
    pre = int(round(s.reverb_predelay_ms * sr / 1000))
    n = int(round(s.reverb_rt60_s * sr))
    t = np.arange(n) / sr
    tail = np.random.default_rng(REVERB_SEED).standard_normal(n) * np.exp(-math.log(1000.0) * t / s.reverb_rt60_s)
    ir = np.concatenate([np.zeros(pre), tail])
    return ir / np.sqrt(np.sum(ir**2))


class Synth:
    """Stateless numpy renderer; its constants (shape banks, times, the reverb's spectrum) are built once
    and read-only, so one instance may serve several threads.

    render: (B, 16) normalised parameters -> (B, num_samples) float32 in [-1, 1].
    """

    def __init__(self, contract: Contract | None = None, chunk: int = 8):
        self.contract = contract = contract if contract is not None else default()
        self.chunk = chunk  # examples per inner step: bounds the (chunk, 3, T) phase arrays
        s, a = contract.synth, contract.audio
        if (s.filter1, s.filter2) != ("lowpass4", "highpass2"):
            raise ValueError(
                f"{contract.source}: synth.filter1/filter2 must be lowpass4/highpass2 "
                f"(the only routing this synth implements), got {s.filter1}/{s.filter2}"
            )
        T, sr = a.num_samples, a.sample_rate
        self.num_samples, self.sample_rate = T, sr
        self.banks = [_frozen(wavetable_coefficients(bank).astype(np.complex64)) for bank in s.wavetables]  # 3 x (S, K)
        self.k = _frozen(np.arange(1, N_HARMONICS + 1, dtype=np.float32))  # harmonic numbers (K,)
        self.t_s = _frozen(np.arange(T, dtype=np.float32) / sr)  # (T,) seconds
        ir = reverb_ir(contract)
        # linear (not circular) convolution; the torch synth pads to a power of two (131072 here), the
        # smallest 2^a 3^b 5^c at least T + L - 1 (90000) halves numpy's FFT time, with the same result
        self.n_fft = _fft_length(T + len(ir) - 1)
        self.ir_f = _frozen(np.fft.rfft(ir, n=self.n_fft).astype(np.complex64))  # (n_fft // 2 + 1,)
        n_blocks = -(-T // PHASE_BLOCK)
        self._block_starts = _frozen(np.arange(n_blocks, dtype=np.float64) * PHASE_BLOCK)  # (T / PHASE_BLOCK,)
        self._ramp = _frozen(np.arange(PHASE_BLOCK, dtype=np.float32))
        # the envelope after note-off, divided by its level at note-off: the same for every example
        off = np.float32(s.note_off_s)
        self._n_held = int(np.count_nonzero(self.t_s < off))  # t_s is increasing: samples [0, n_held) held
        self._release = _frozen(np.exp(-np.maximum(self.t_s[self._n_held :] - off, 0) / np.float32(s.release_s)))
        self.index = {name: i for i, name in enumerate(contract.names)}

    # ---- the parts ----

    def physical(self, v: np.ndarray) -> dict[str, np.ndarray]:
        """(B, 16) normalised -> {name: (B,) physical, float64}, through the contract's curves; inputs are
        clamped to [0, 1] first and NaN counts as 0.5. float64 as in the torch synth, whose float64 keeps
        sample i independent of the batch."""
        v = self._values(v).astype(np.float64).clip(0.0, 1.0)
        return {p.name: np.asarray(p.to_physical(v[:, i])) for i, p in enumerate(self.contract.params)}

    def harmonics(self, v: np.ndarray, note: float | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """What each oscillator plays while the note is held, before the envelope and reverb:
        v (B, 16) normalised, note as in render -> (f0 (B, 3) float64 Hz, amp (B, 3, K) complex64), amp[b, j,
        k - 1] the complex amplitude of harmonic k of oscillator j (its sound: sum_k Re(amp e^{i k theta}))
        after the wavetable morph, the two filters, the gain and the band limit (0 at or above Nyquist)."""
        p64 = self.physical(v)
        return self._harmonics(p64, _float32(p64), self._note_freq(note, len(p64["osc1_gain"])))

    def envelope(self, attack_s: np.ndarray, decay_s: np.ndarray, t_s: np.ndarray | None = None) -> np.ndarray:
        """Linear attack to 1, exponential decay to the sustain level, exponential release after note-off.
        attack_s, decay_s: (B,) seconds; t_s: (T,) seconds (default: the window's sample times) -> (B, T)
        float32."""
        s = self.contract.synth
        A = np.asarray(attack_s, dtype=np.float32).reshape(-1, 1)
        D = np.asarray(decay_s, dtype=np.float32).reshape(-1, 1)
        t = self.t_s if t_s is None else np.asarray(t_s, dtype=np.float32)

        def held(tt: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):  # tt / A is only kept where tt < A
                return np.where(tt < A, tt / A, s.sustain + (1 - s.sustain) * np.exp(-np.maximum(tt - A, 0) / D))

        off = np.float32(s.note_off_s)
        at_off = held(np.full_like(A, off))
        if t_s is None:  # the window's times: held, then the cached release curve (the same values, faster)
            out = np.empty((len(A), len(t)), dtype=np.float32)
            out[:, : self._n_held] = held(t[: self._n_held])
            np.multiply(at_off, self._release, out=out[:, self._n_held :])
            return out
        released = at_off * np.exp(-np.maximum(t - off, 0) / np.float32(s.release_s))
        return np.where(t < off, held(t), released).astype(np.float32, copy=False)

    # ---- rendering ----

    def render(self, v: np.ndarray, note: float | np.ndarray | None = None) -> np.ndarray:
        """v (B, 16) normalised (NaN -> 0.5, clamped to [0, 1]); note: the MIDI note played (fractional
        allowed), one number or (B,) per example, None = the contract's audio.note -> (B, T) float32."""
        v = self._values(v)
        B, T = len(v), self.num_samples
        out = np.empty((B, T), dtype=np.float32)
        f_note = self._note_freq(note, B)
        for i in range(0, B, self.chunk):
            f = f_note if isinstance(f_note, float) else f_note[i : i + self.chunk]
            out[i : i + self.chunk] = self._render(v[i : i + self.chunk], f)
        return out

    def _render(self, v: np.ndarray, f_note: float | np.ndarray) -> np.ndarray:
        N, T, sr = TABLE_SIZE, self.num_samples, self.sample_rate
        p64 = self.physical(v)
        p = _float32(p64)
        f0, amp = self._harmonics(p64, p, f_note)

        # one filtered single cycle per oscillator: irfft scales by 1/N, Re(c e^{ik.}) = (c + c*) / 2
        spectrum = np.zeros((len(v), 3, N // 2 + 1), dtype=np.complex64)
        spectrum[..., 1 : N_HARMONICS + 1] = amp * np.float32(N / 2)
        table = np.fft.irfft(spectrum, n=N).astype(np.float32, copy=False)  # (B, 3, N)
        x = self._read(table, f0 / sr * N).sum(1)  # (B, T)

        x *= self.envelope(p["env_attack"], p["env_decay"])
        wet = np.fft.irfft(np.fft.rfft(x, n=self.n_fft) * self.ir_f, n=self.n_fft)[:, :T]
        mix = p["reverb_mix"][:, None]
        y = (1 - mix) * x + mix * wet.astype(np.float32, copy=False)
        peak = np.abs(y).max(-1, keepdims=True)
        return y / np.maximum(peak, np.float32(1.0))

    def _harmonics(
        self, p64: dict[str, np.ndarray], p: dict[str, np.ndarray], f_note: float | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Physical values (float64 and float32), the note's frequency -> (f0 (B, 3), amp (B, 3, K))."""
        pitch = np.stack([p64[f"osc{j}_pitch"] for j in (1, 2, 3)], 1)
        f0 = f_note * 2.0 ** (pitch / 12)  # float64: the phase accumulator needs it exact
        freqs = f0.astype(np.float32)[..., None] * self.k  # (B, 3, K)
        coef = np.stack([_morph(bank, p[f"osc{j + 1}_position"]) for j, bank in enumerate(self.banks)], 1)
        gain = np.stack([p[f"osc{j}_gain"] for j in (1, 2, 3)], 1)[..., None] * np.float32(HEADROOM)
        response = _lowpass4(freqs, p["filter1_cutoff"], p["filter1_resonance"]) * _highpass2(
            freqs, p["filter2_cutoff"], p["filter2_resonance"]
        )
        amp = coef * response * gain * (freqs < self.sample_rate / 2)  # band-limited: nothing at or above Nyquist
        return f0, amp

    def _read(self, table: np.ndarray, inc: np.ndarray) -> np.ndarray:
        """Phase-accumulator reading, nearest sample, as training/synths/reference.py's _read (which explains the
        error bounds). table (B, 3, N), N a power of two; inc (B, 3) float64 table samples per output
        sample -> (B, 3, T) float32. Block starts are reduced mod N in float64, ramps within a block stay
        float32, and the integer index wraps with a bit mask."""
        B, N, T = len(table), table.shape[-1], self.num_samples
        base = np.remainder(inc[..., None] * self._block_starts, N).astype(np.float32) + np.float32(0.5)
        ramp = inc.astype(np.float32)[..., None] * self._ramp  # (B, 3, PHASE_BLOCK)
        phase = (base[..., None] + ramp[..., None, :]).reshape(B, 3, -1)[..., :T]  # (B, 3, T)
        idx = phase.astype(np.int32)  # truncation = round to nearest after the +0.5; phase >= 0
        idx &= N - 1
        idx += (np.arange(B * 3, dtype=np.int32) * N).reshape(B, 3, 1)  # rows of the flattened tables
        return table.reshape(-1)[idx]

    # ---- inputs ----

    def _values(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != len(self.index):
            raise ValueError(f"Synth: values must be (B, {len(self.index)}) normalised; got shape {v.shape}")
        return np.nan_to_num(v, nan=0.5)

    def _note_freq(self, note: float | np.ndarray | None, B: int) -> float | np.ndarray:
        """The played note's frequency: a Python float for one note (the same arithmetic as the torch
        synth), (B, 1) float64 for one per example."""
        n = np.asarray(self.contract.audio.note if note is None else note, dtype=np.float64)
        if n.ndim == 0:
            return 440.0 * 2.0 ** ((float(n) - 69) / 12)
        n = n.reshape(-1)
        if len(n) == 1:
            n = np.broadcast_to(n, (B,))
        if len(n) != B:
            raise ValueError(f"render: {len(n)} notes for {B} patches; give one note or one per patch")
        return (440.0 * 2.0 ** ((n - 69) / 12))[:, None]


def _fft_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: a length numpy's FFT handles at full speed."""
    best = 1 << math.ceil(math.log2(n))
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35 << max(0, math.ceil(math.log2(n / p35)))
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _float32(p64: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: x.astype(np.float32) for name, x in p64.items()}


def _morph(bank: np.ndarray, position: np.ndarray) -> np.ndarray:
    """bank (S, K) complex64, position (B,) float32 in [0, 1] -> (B, K) blend of the two nearest shapes."""
    pos = position * np.float32(len(bank) - 1)
    i0 = np.minimum(np.floor(pos).astype(np.int64), len(bank) - 2)
    frac = (pos - i0.astype(np.float32))[:, None]
    return bank[i0] * (1 - frac) + bank[i0 + 1] * frac


def _jf(f: np.ndarray, cutoff: np.ndarray) -> np.ndarray:
    """j f / fc as complex64: f (B, 3, K), cutoff (B,)."""
    s = np.zeros(f.shape, dtype=np.complex64)
    s.imag = f / cutoff[:, None, None]
    return s


def _lowpass4(f: np.ndarray, cutoff: np.ndarray, res: np.ndarray) -> np.ndarray:
    """Ladder lowpass H(s) = (1 + k) / ((1 + s / wc)^4 + k) at s = j 2 pi f; unity DC gain."""
    k = (res * np.float32(LADDER_MAX_FEEDBACK))[:, None, None]
    s = _jf(f, cutoff)
    return (1 + k) / ((1 + s) ** 4 + k)


def _highpass2(f: np.ndarray, cutoff: np.ndarray, res: np.ndarray) -> np.ndarray:
    """Resonant highpass H(s) = s^2 / (s^2 + s / Q + 1), s normalised to the cutoff."""
    q_lo, q_hi = HIGHPASS_Q
    q = (q_lo * (q_hi / q_lo) ** res)[:, None, None]
    s = _jf(f, cutoff)
    return s * s / (s * s + s / q + 1)
