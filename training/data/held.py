"""Short windows of held notes, for the performance model (issue 19): what continuous mode hears.

Example i of a (seed, window) stream is a pure function of (seed, i), like the one-shots it is cut from
(training.data.onthefly):

    patch B, note   the one-shot stream's example i (the label: the patch sounding at the window's end)
    patch A         example i of the stream seeded seed + PARTNER_SEED, with B's envelope and reverb (one
                    performer, one room: only the timbre moves), played at the same note
    end             where the window ends: uniform over [window + LEAD_S, note-off], so windows sit in the
                    attack, the decay and the sustain alike
    switch          with probability SWITCH_P the timbre moves from A to B inside the window: B sounds
                    for the last `share` of it, share uniform in [MIN_SHARE, 1), with a CROSSFADE_S
                    raised-cosine crossfade (the synth renders a patch change as a morph of two voices)

Both patches are rendered whole (4 s) at the note and the window is cut from them, so a switch keeps the
phase and level of a held note. The label is always B: a window whose newest MIN_SHARE or more is the new
sound answers for the new sound, which is what lets continuous mode follow a change within about
MIN_SHARE of a window. A share below MIN_SHARE is never drawn (no example teaches the model to ignore a
change). The rendering of both patches is grouped as the one-shots' (RENDER_GROUP), so example i is
bit-identical for any batch size, worker count or resume step.

Shapes: `render(start, stop)` -> (windows (N, window_n) float32, params (N, 16) float32 of B);
`notes(start, stop)` -> (N,) float32 MIDI, the one-shots'.
"""

from __future__ import annotations

import numpy as np
import torch

from synthmatch.bridge.core.contract import Contract
from synthmatch.bridge.match.held import HELD_FIXED
from synthmatch.training.data.onthefly import OnTheFly, Renderer
from synthmatch.training.synths.sampling import PresetSampling, sample_params

PARTNER_SEED = 7_919  # the partner patches' stream: seed + PARTNER_SEED (a prime far from split seeds)
CROP_STREAM = 0x43524F50  # "CROP": the generator of example i's window end and switch
KEPT = HELD_FIXED  # the partner takes these from B: what a held window cannot tell
SWITCH_P = 0.5  # share of examples whose window holds a change of timbre
MIN_SHARE = 0.3  # the new sound fills at least this share of the window's end
LEAD_S = 0.05  # a window starts at least this long after the note-on (its first 50 ms are the attack's)
CROSSFADE_S = 0.01  # raised-cosine crossfade at a switch, s


class HeldRenderer(Renderer):
    """Renders windows of window_n samples cut from held notes (see the module's docstring)."""

    def __init__(
        self,
        contract: Contract,
        seed: int,
        window_n: int,
        device: str | torch.device = "cpu",
        presets: PresetSampling | None = None,
        notes: tuple[int, int] | None = None,
    ):
        super().__init__(contract, seed, device, presets, notes)
        sr = contract.audio.sample_rate
        self.window_n = int(window_n)
        self.first_end = self.window_n + int(LEAD_S * sr)
        self.last_end = int(contract.synth.note_off_s * sr)
        if self.first_end > self.last_end:
            most = (self.last_end - int(LEAD_S * sr)) / sr
            raise ValueError(
                f"a {window_n / sr:g} s window does not fit in a held note (from {LEAD_S:g} s after the note-on "
                f"to the note-off at {contract.synth.note_off_s:g} s); use a model window_s of at most {most:g} s"
            )
        self.kept = [contract.names.index(n) for n in KEPT]

    def partner_params(self, start: int, stop: int) -> np.ndarray:
        """(N, 16) the patches the timbre moves from: their own oscillators and filters, B's envelope and reverb."""
        a = sample_params(self.contract, self.seed + PARTNER_SEED, range(start, stop), self.presets)
        a[:, self.kept] = self.params(start, stop)[:, self.kept]
        return a

    def crop_plan(self, i: int) -> tuple[int, int]:
        """(window end, switch position) of example i in samples; switch -1 when its timbre holds."""
        rng = np.random.default_rng([self.seed, int(i), CROP_STREAM])
        end = int(rng.integers(self.first_end, self.last_end + 1))
        if rng.random() >= SWITCH_P:
            return end, -1
        share = rng.uniform(MIN_SHARE, 1.0)
        return end, end - int(round(share * self.window_n))

    def render(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        b_audio, b_params = self.render_patches(start, stop, self.params)
        a_audio, _ = self.render_patches(start, stop, self.partner_params)
        fade = int(CROSSFADE_S * self.contract.audio.sample_rate)
        t = torch.arange(-self.window_n, 0, dtype=torch.float32)  # sample offsets from the window's end
        out = torch.empty(stop - start, self.window_n, dtype=b_audio.dtype, device=b_audio.device)
        for row, i in enumerate(range(start, stop)):
            end, switch = self.crop_plan(i)
            b = b_audio[row, end - self.window_n : end]
            if switch < 0:
                out[row] = b
                continue
            a = a_audio[row, end - self.window_n : end]
            ramp = torch.clamp((t + end - switch) / fade + 0.5, 0.0, 1.0)  # 0 before, 1 after the switch
            w = (0.5 - 0.5 * torch.cos(torch.pi * ramp)).to(out.device)
            out[row] = a * (1 - w) + b * w
        return out, b_params


class HeldStream(OnTheFly):
    """OnTheFly's batches (same global-index rule, workers and resume), of held-note windows."""

    def __init__(self, contract: Contract, seed: int, batch_size: int, window_n: int, **kw):
        super().__init__(contract, seed, batch_size, **kw)
        self.renderer = HeldRenderer(
            contract, seed, window_n, self.device, self.renderer.presets, self.renderer.note_range
        )


def held_split(
    contract: Contract,
    seed: int,
    size: int,
    window_n: int,
    presets: PresetSampling | None = None,
    notes: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed validation set of held windows: (windows (N, window_n), params (N, 16), notes (N,))."""
    r = HeldRenderer(contract, seed, window_n, "cpu", presets, notes)
    x, p = r.render(0, size)
    return x, p, r.notes(0, size)
