"""Analysis by synthesis: improve a predicted patch by re-rendering candidates and keeping the closest.

The network is trained on parameters alone (MSE), so where the sound leaves it unsure it predicts an
average, and an average oscillator pitch plays harmonics where the target has none. The reference
synth is cheap (about 3.6 ms per 4 s sound on 2 CPU cores), so `match` can afford a few hundred
renders per sound: a coordinate search that moves one parameter at a time and keeps a move only if
the re-rendered sound gets closer to the input. Closer is judged by the multi-scale spectral distance
of training.model.metrics (linear SC plus log-magnitude L1) at two of its scales with half-overlapping
frames (SEARCH_N_FFTS): a quarter of the full metric's cost, which the search would otherwise spend
four times more on STFTs than on rendering. The distances returned are the full metric's.

Pass 0 tries `coarse` evenly spaced values of each parameter over [0, 1], and every whole semitone of
a pitch (a coarser grid gets stuck an octave or a fifth away: harmonics line up there too); pass
p >= 1 tries `fine` values either side of the current one, at a spacing that halves each pass. By the
full metric, a refined patch is never farther from the input than the prediction it started from
(where the search's cheaper distance disagreed, the prediction is kept).

The same search also runs from the mean patch (`from_mean`, on by default), side by side in the same
batches, and the closer of the two results is kept. A coordinate search moves one pitch at a time, so
from the network's scattered oscillator pitches another oscillator's harmonics stay in the way; from
the mean patch every oscillator starts at unison, which is where most real instruments sit. Measured
(docs/model-card.md): out of domain the two searches bring the median SC from 0.75 to 0.63 for twice
the renders. About 3.3 s per sound on 2 CPU cores: `synthmatch match` runs it, and the daemon runs it in a
second process for refined follow-up snapshots (bridge/live/refiner.py), never in its live path.

Any synth behind the seam (training.synths) can be searched: `match --synth vst3:PATH` refines through
the plugin, whose renders run one patch at a time (about 5 ms each for the test instrument, after the
in-place reset of training.synths.vst3), searching only the parameters its profile maps and starting the
second search from its own sampling's mean (pinned parameters at their pins).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from synthmatch.bridge.core.contract import Contract
from synthmatch.training.model.metrics import (
    MSS_LOG_EPS,
    multiscale_spectral_distance,
    spectral_convergence_spec,
    stft_magnitude,
)
from synthmatch.training.synths.reference import ReferenceSynth

SEARCH_N_FFTS = (512, 2048)  # hop n_fft // 2


@dataclass(frozen=True)
class RefineConfig:
    passes: int = 3
    coarse: int = 9  # pass 0: values per parameter over [0, 1]
    fine: int = 2  # pass >= 1: values on each side of the current one
    render_batch: int = 64  # candidates rendered at once
    only: tuple[str, ...] = ()  # search these parameters (contract names); () = all
    min_gain: float = 0.002  # a move must cut the distance by this fraction: a parameter the sound does
    #                          not reveal (the pitch of a silent oscillator) keeps the network's value
    from_mean: bool = True  # also search from the mean patch (every oscillator at unison) and keep the
    #                         closer result: twice the renders

    def __post_init__(self):
        if self.passes < 0 or self.coarse < 2 or self.fine < 1 or self.render_batch < 1:
            raise ValueError(f"RefineConfig: need passes >= 0, coarse >= 2, fine >= 1, render_batch >= 1; got {self}")

    def grid_size(self, param) -> int:
        """Pass 0 values of one contract parameter: every semitone of a pitch, else `coarse`."""
        if param.unit == "semitones" and param.curve == "linear":
            return int(round(param.max - param.min)) + 1
        return self.coarse

    def renders_per_sound(self, contract: Contract) -> int:
        params = [p for p in contract.params if not self.only or p.name in self.only]
        if not self.passes:
            return 0
        per_start = sum(self.grid_size(p) for p in params) + len(params) * 2 * self.fine * (self.passes - 1)
        return per_start * (2 if self.from_mean else 1)


class Targets:
    """Multi-scale magnitudes of the target sounds, computed once and compared with many candidates."""

    def __init__(self, audio: torch.Tensor):
        self.spec = {n: stft_magnitude(audio, n, n // 2) for n in SEARCH_N_FFTS}
        self.log = {n: torch.log(s + MSS_LOG_EPS) for n, s in self.spec.items()}

    def distance(self, idx: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Candidates (C, T) against targets idx (C,) -> (C,) search distance (see the module docstring)."""
        total = torch.zeros(len(audio), dtype=audio.dtype)
        for n in SEARCH_N_FFTS:
            S_hat = stft_magnitude(audio, n, n // 2)
            S = self.spec[n][idx]
            log_l1 = (self.log[n][idx] - torch.log(S_hat + MSS_LOG_EPS)).abs().flatten(1).mean(1)
            total = total + spectral_convergence_spec(S, S_hat) + log_l1
        return total / len(SEARCH_N_FFTS)


def _renderer(synth) -> Callable[[np.ndarray], torch.Tensor]:
    """patches (N, P) float32 -> (N, T) audio tensor, for a ReferenceSynth (torch in and out) or a
    training.synths seam synth (numpy in and out)."""
    from synthmatch.training.synths import Synth

    if isinstance(synth, Synth):
        return lambda p: torch.from_numpy(np.ascontiguousarray(synth.render(p), dtype=np.float32))
    return lambda p: synth.render(torch.from_numpy(p))


def _score(
    render: Callable[[np.ndarray], torch.Tensor],
    patches: np.ndarray,
    batch: int,
    distance: Callable[[slice, torch.Tensor], torch.Tensor],
) -> np.ndarray:
    """Render patches (N, P) `batch` at a time -> (N,) distance(rows of the batch, its audio)."""
    out = np.empty(len(patches))
    for s in range(0, len(patches), batch):
        rows = slice(s, s + batch)
        out[rows] = distance(rows, render(np.ascontiguousarray(patches[rows]))).numpy()
    return out


@torch.no_grad()
def refine(
    contract: Contract, audio, init: np.ndarray, cfg: RefineConfig = RefineConfig(), synth=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """audio (B, T) at the contract's rate, init (B, P) normalised -> (patches (B, P), distance before
    (B,), distance after (B,)), distances by training.model.metrics.multiscale_spectral_distance.
    synth: a ReferenceSynth (default) or a training.synths seam synth. Deterministic: no random candidates."""
    synth = synth or ReferenceSynth(contract)
    render = _renderer(synth)
    audio = torch.as_tensor(audio, dtype=torch.float32).reshape(len(init), -1)
    start = np.clip(np.asarray(init, dtype=np.float32), 0.0, 1.0)
    n, n_params = start.shape
    unknown = [name for name in cfg.only if name not in contract.names]
    if unknown:
        raise ValueError(f"RefineConfig.only: unknown parameters {unknown}; known: {list(contract.names)}")
    searched = [contract.names.index(name) for name in cfg.only] if cfg.only else range(n_params)
    targets = Targets(audio)
    starts = [start]
    if cfg.from_mean:
        from synthmatch.training.synths import Synth
        from synthmatch.training.synths.sampling import mean_patch

        mean = synth.mean_patch() if isinstance(synth, Synth) else mean_patch(contract)
        starts.append(np.broadcast_to(mean.astype(np.float32), start.shape))
    best = np.concatenate(starts)  # (S * n, P): one search per (start, target), run side by side
    owner = np.tile(np.arange(n), len(starts))  # row -> its target
    rows = np.arange(len(best))

    def search(patches: np.ndarray, target_idx: np.ndarray) -> np.ndarray:
        idx = torch.from_numpy(target_idx)
        return _score(render, patches, cfg.render_batch, lambda r, a: targets.distance(idx[r], a))

    def full(patches: np.ndarray, target_idx: np.ndarray) -> np.ndarray:  # the metric itself
        idx = torch.from_numpy(target_idx)
        return _score(render, patches, cfg.render_batch, lambda r, a: multiscale_spectral_distance(audio[idx[r]], a))

    dist = search(best, owner)
    for p in range(cfg.passes):
        for k in searched:
            size = cfg.grid_size(contract.params[k])
            if p == 0:
                grid = np.broadcast_to(np.linspace(0.0, 1.0, size, dtype=np.float32), (len(best), size))
            else:
                step = 1.0 / (size - 1) / 2**p
                offsets = np.concatenate([-np.arange(cfg.fine, 0, -1), np.arange(1, cfg.fine + 1)]) * step
                grid = np.clip(best[:, k : k + 1] + offsets[None, :].astype(np.float32), 0.0, 1.0)
            g = grid.shape[1]
            cand = np.repeat(best, g, axis=0)  # (rows * g, P): row-major
            cand[:, k] = grid.reshape(-1)
            scores = search(cand, np.repeat(owner, g)).reshape(len(best), g)
            j = scores.argmin(1)
            better = scores[rows, j] < dist * (1.0 - cfg.min_gain)
            best[better, k] = grid[rows, j][better]
            dist[better] = scores[rows, j][better]
    finals = full(best, owner).reshape(len(starts), n)
    pick = finals.argmin(0)  # per target: the closer of the searches
    best, after = best.reshape(len(starts), n, n_params)[pick, np.arange(n)], finals[pick, np.arange(n)]
    before = full(start, np.arange(n))
    worse = after > before
    best[worse], after[worse] = start[worse], before[worse]
    return best, before, after
