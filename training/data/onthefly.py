"""Training data rendered on the fly, and fixed validation/test splits cached on disk.

Example i of a dataset is a pure function of (seed, i): its parameters come from
training.synths.sampling.sample_params (one generator per (seed, i)), the note it is played at from
training.synths.sampling.sample_notes (the contract's C4 unless a note range is given), and its audio from
ReferenceSynth. Batch iterators yield (x, params (B, 16), notes (B,) float32 MIDI).

Batched FFTs round differently with the batch's size and the row's place in it (a few 1e-8, rarely
1e-4 where a nearest-sample table read flips), so on the CPU the synth always renders fixed groups of
RENDER_GROUP consecutive indices aligned to multiples of RENDER_GROUP, whatever the batch asked for.
That makes example i bit-identical for any batch size, worker count, rank split or resume step.
On a GPU (device="cuda") the whole batch renders in one call for speed: parameters are still exact,
audio agrees with the CPU within float tolerance (max abs difference 8e-7 measured on an H100) but is
not bit-identical across batch sizes. Throughput there: ~14k examples/s at batch 64, ~25k at 1024
(H100), against ~50-100 per CPU core.

Global index of example j of batch b (b counted from 0 at start_step):
    (start_step + b) * batch_size * world_size + rank * batch_size + j
so ranks split each step's examples and a resumed run continues the same stream.
"""

from __future__ import annotations

import json
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from synthmatch.bridge.core.atomic import write_atomic
from synthmatch.bridge.core.contract import Contract
from synthmatch.training.synths.reference import ReferenceSynth
from synthmatch.training.synths.sampling import PresetSampling, sample_notes, sample_params, sampling_fingerprint

RENDER_GROUP = 8  # CPU render unit (examples); 8 is as fast per example as 32 on one or two threads
SPLIT_SEEDS = {"val": 1_000_003, "test": 2_000_003}  # far from the small seeds used for training
DEFAULT_SPLIT_SIZES = {"val": 512, "test": 1024}
CACHE_FORMAT = 1  # bump when the cache file layout changes


class Renderer:
    """Renders contiguous index ranges of one (contract, seed, presets) stream on one device."""

    def __init__(
        self,
        contract: Contract,
        seed: int,
        device: str | torch.device = "cpu",
        presets: PresetSampling | None = None,
        notes: tuple[int, int] | None = None,
    ):
        self.contract, self.seed, self.presets = contract, int(seed), presets
        self.note_range = notes or (contract.audio.note, contract.audio.note)
        self.fixed_note = self.note_range[0] == self.note_range[1] == contract.audio.note
        self.device = torch.device(device)
        self._synth: ReferenceSynth | None = None  # built lazily: not pickled into worker processes

    def __getstate__(self):
        return {**self.__dict__, "_synth": None}

    @property
    def synth(self) -> ReferenceSynth:
        if self._synth is None:
            chunk = RENDER_GROUP if self.device.type == "cpu" else 1 << 30
            self._synth = ReferenceSynth(self.contract, chunk=chunk)
        return self._synth

    def params(self, start: int, stop: int) -> np.ndarray:
        return sample_params(self.contract, self.seed, range(start, stop), self.presets)

    def notes(self, start: int, stop: int) -> torch.Tensor:
        """(stop - start,) float32 MIDI notes examples start..stop-1 are played at."""
        return torch.from_numpy(sample_notes(self.seed, range(start, stop), self.note_range).astype(np.float32))

    def _synth_render(self, p: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        if self.fixed_note:  # exactly the bits of the C4-only renderer
            return self.synth.render(p)
        return self.synth.render(p, note=self.notes(start, stop).to(p.device))

    def render(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Examples start..stop-1 -> (audio (N, num_samples) float32, params (N, 16) float32) on device."""
        return self.render_patches(start, stop, self.params)

    def render_patches(
        self, start: int, stop: int, params: Callable[[int, int], np.ndarray]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As render, for the patches params(a, b) gives examples a..b-1 (each played at its note)."""
        if self.device.type != "cpu":
            p = torch.from_numpy(params(start, stop)).to(self.device)
            return self._synth_render(p, start, stop), p
        g0 = start // RENDER_GROUP * RENDER_GROUP
        g1 = -(-stop // RENDER_GROUP) * RENDER_GROUP
        p = torch.from_numpy(params(g0, g1))
        audio = torch.cat(
            [
                self._synth_render(chunk, g, g + len(chunk))
                for g, chunk in zip(range(g0, g1, RENDER_GROUP), p.split(RENDER_GROUP))
            ]
        )
        if (g0, g1) == (start, stop):
            return audio, p
        return audio[start - g0 : stop - g0].clone(), p[start - g0 : stop - g0].clone()  # drop the extra rows


class OnTheFly(torch.utils.data.IterableDataset):
    """Infinite stream of (audio (B, num_samples) float32, params (B, 16) float32, notes (B,)) batches.

    Iterate it directly (renders in this process, on `device`), or through `loader(num_workers)`
    (CPU only): worker w of W renders batches w, w + W, ... whole, and the DataLoader returns them in
    batch order, so content and order do not depend on the worker count.
    """

    def __init__(
        self,
        contract: Contract,
        seed: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        device: str | torch.device = "cpu",
        presets: PresetSampling | None = None,
        notes: tuple[int, int] | None = None,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..world_size-1, got rank {rank} of {world_size}")
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        self.contract, self.seed, self.batch_size = contract, int(seed), int(batch_size)
        self.rank, self.world_size, self.start_step = int(rank), int(world_size), int(start_step)
        self.device = torch.device(device)
        self.renderer = Renderer(contract, seed, self.device, presets, notes)

    def first_index(self, step: int) -> int:
        """Global index of this rank's first example at absolute training step `step`."""
        return step * self.batch_size * self.world_size + self.rank * self.batch_size

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's batch at absolute step `step` (not counted from start_step)."""
        i = self.first_index(step)
        return self.renderer.render(i, i + self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        step = self.start_step + worker
        while True:
            i = self.first_index(step)
            yield (*self.batch(step), self.renderer.notes(i, i + self.batch_size))
            step += workers

    def loader(
        self,
        num_workers: int = 0,
        prefetch_factor: int = 2,
        pin_memory: bool = False,
        multiprocessing_context: str | None = None,
    ):
        """An iterable of batches: this dataset itself for num_workers=0 or a GPU device, else a
        DataLoader whose worker processes render whole batches on the CPU (one torch thread each)."""
        if num_workers <= 0:
            return self
        if self.device.type != "cpu":
            raise ValueError(
                "render on the GPU in the main process (num_workers=0), "
                "or on the CPU in workers (device='cpu'), not both"
            )
        return torch.utils.data.DataLoader(
            self,
            batch_size=None,
            num_workers=num_workers,
            prefetch_factor=prefetch_factor,
            persistent_workers=True,
            pin_memory=pin_memory,
            multiprocessing_context=multiprocessing_context,
        )


# ------------------------------------------------------------------------------------------------
# Fixed validation / test splits


def split_seed(split: str) -> int:
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLIT_SEEDS)}")
    return SPLIT_SEEDS[split]


def _played(contract: Contract, notes: tuple[int, int] | None) -> tuple[int, int] | None:
    """None for the contract's own note (the names and metadata of C4-only caches stay as they were)."""
    n = contract.audio.note
    return None if notes is None or tuple(notes) == (n, n) else (int(notes[0]), int(notes[1]))


def split_cache_path(
    contract: Contract,
    split: str,
    size: int,
    seed: int | None = None,
    cache_dir: str | Path = "data/cache",
    presets: PresetSampling | None = None,
    notes: tuple[int, int] | None = None,
) -> Path:
    seed = split_seed(split) if seed is None else int(seed)
    fp = sampling_fingerprint(contract, presets)[:8]
    played = _played(contract, notes)
    tag = f"-notes{played[0]}-{played[1]}" if played else ""
    return Path(cache_dir) / f"{split}-{contract.hash}-{fp}-seed{seed}-n{size}{tag}.npz"


def _meta(
    contract: Contract,
    split: str,
    size: int,
    seed: int,
    presets: PresetSampling | None,
    notes: tuple[int, int] | None = None,
) -> dict:
    meta = {
        "format": CACHE_FORMAT,
        "split": split,
        "size": size,
        "seed": seed,
        "contract_hash": contract.hash,
        "sampling": sampling_fingerprint(contract, presets),
        "render_group": RENDER_GROUP,
    }
    played = _played(contract, notes)
    return {**meta, "notes": list(played)} if played else meta


def _read_cache(path: Path, meta: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached arrays, or None (with a warning naming the file) when it is corrupt or stale."""
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = json.loads(str(z["meta"]))
            audio, params = z["audio"], z["params"]
        if (
            stored == meta
            and audio.dtype == params.dtype == np.float32
            and audio.ndim == 2
            and audio.shape[0] == params.shape[0] == meta["size"]
        ):
            return audio, params
        problem = "was written for other settings"
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        problem = f"is unreadable ({type(e).__name__}: {e})"
    warnings.warn(f"{path}: cached {meta['split']} split {problem}; rendering it again", stacklevel=3)
    return None


def render_split(
    contract: Contract,
    seed: int,
    size: int,
    presets: PresetSampling | None = None,
    progress: bool = False,
    notes: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Examples 0..size-1 of (seed) on the CPU -> (audio (size, T) float32, params (size, 16) float32)."""
    r = Renderer(contract, seed, "cpu", presets, notes)
    audio = np.empty((size, contract.audio.num_samples), np.float32)
    params = np.empty((size, len(contract.params)), np.float32)
    step = 32 * RENDER_GROUP
    for start in range(0, size, step):
        a, p = r.render(start, min(start + step, size))
        audio[start : start + len(a)], params[start : start + len(p)] = a.numpy(), p.numpy()
        if progress:
            print(f"\rrendering {min(start + step, size)}/{size}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return audio, params


def cached_split(
    contract: Contract,
    split: str,
    size: int,
    seed: int | None = None,
    cache_dir: str | Path = "data/cache",
    presets: PresetSampling | None = None,
    progress: bool = False,
    notes: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed split: (audio (size, T) float32, params (size, 16) float32) tensors on the CPU, played
    at `notes` (a [lo, hi] range; default the contract's note): split_notes gives each example's note.

    Rendered once and cached in `cache_dir` under a name holding the split, contract hash, sampling
    fingerprint, seed and size; written atomically (temp file + os.replace). A corrupt or stale cache
    file is reported (warning naming the file) and rendered again. Example i equals OnTheFly's
    example i for the same seed.
    """
    if size < 1:
        raise ValueError(f"split size must be >= 1, got {size}")
    seed = split_seed(split) if seed is None else int(seed)
    path = split_cache_path(contract, split, size, seed, cache_dir, presets, notes)
    meta = _meta(contract, split, size, seed, presets, notes)
    cached = _read_cache(path, meta) if path.exists() else None
    if cached is None:
        audio, params = render_split(contract, seed, size, presets, progress, notes)
        write_atomic(
            path, lambda f: np.savez(f, audio=audio, params=params, meta=np.array(json.dumps(meta, sort_keys=True)))
        )
    else:
        audio, params = cached
    return torch.from_numpy(audio), torch.from_numpy(params)


def split_notes(
    contract: Contract, split: str, size: int, seed: int | None = None, notes: tuple[int, int] | None = None
) -> torch.Tensor:
    """(size,) float32 MIDI notes the examples of cached_split(..., notes=notes) are played at."""
    seed = split_seed(split) if seed is None else int(seed)
    return Renderer(contract, seed, "cpu", notes=notes).notes(0, size)
