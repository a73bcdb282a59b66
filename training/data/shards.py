"""Offline sharded datasets: the format (plan, manifest, shard files, checksums) and reading one back.

For synths that cannot render on the fly (a VST3 through pedalboard, say). training.data.shardrender renders
a dataset in worker processes (render_dataset, the `synthmatch dataset` subcommand); this module says
what one is and reads it memory-mapped for training (ShardDataset, holdout). Layout of a dataset DIR:

    manifest.json               plan (contract hash, sampling fingerprint, seed, count, shard size, store,
                                dtype, example shape) + one entry per finished shard (count, bytes, sha256)
    shard-00000.x.npy           (n, *example_shape) examples, .npy (np.lib.format), memory-mappable
    shard-00000.params.npy      (n, 16) float32 normalised parameters

Example i (global) lives in shard i // shard_size and is f(seed, i) as in training.data.onthefly. A shard is
entered in the manifest only once its files are complete on disk (training.data.shardrender writes them under
a temporary name, fsyncs, renames), and the manifest itself is replaced atomically, so a manifest entry
means a finished shard; verify_entry checks one against its sizes and sha256.

Stores and footprint (scripts/bench_shards.py on this contract: 4 s at 16 kHz, 64 x 398 log-mel; read
speed = random batches of 64 from a warm memory map to float32, and on to the model's input, i.e.
log-mel, which audio stores still have to compute; 2 CPU threads):

    store                  bytes/example  per 1M   log-mel error vs float32 audio   read ex/s  to input ex/s
    audio float32              256,000     256 GB   0 (reference)                      14,200        194
    audio float16              128,000     128 GB   p99 7.6e-2, max 3.1e-1              4,200        228
    audio int16 ("audio")      128,000     128 GB   p99 1.5e-2, max 8.6e-2              5,400        134
    logmel float16 ("logmel")   50,944      51 GB   p99 2.4e-4, max 4.9e-4              9,300      9,270
    (errors in normalised log-mel units; the log-mel spans about -0.5 .. 1.4)

int16 beats float16 for audio (float16 keeps only ~-66 dB relative precision, which lifts the quiet
high-frequency bins a log-mel shows), so store "audio" is int16 (x / 32767 on reading). The default
is "logmel" (float16): 2.5x smaller than int16 audio, 100x more faithful to what the model sees,
and ~50x faster to the model's input on a CPU since the front-end is already applied. Its examples
are the model's input after the front-end: predict with `torch.sigmoid(model.features(x))`, not
`model(audio)`. Choose "audio" when the front-end may change or audio-domain augmentation is wanted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from synthmatch.bridge.core.atomic import write_text
from synthmatch.bridge.core.contract import Contract
from synthmatch.bridge.core.digest import file_sha256
from synthmatch.training.synths import REFERENCE
from synthmatch.training.synths.sampling import PresetSampling, sampling_fingerprint

FORMAT = 1
MANIFEST = "manifest.json"
STORES = ("logmel", "audio")
DEFAULT_STORE = "logmel"
DEFAULT_SHARD_SIZE = 1024  # examples: 52 MB of log-mel or 131 MB of audio per shard
INT16_SCALE = 32767.0  # store "audio": int16 sample = round(float sample * INT16_SCALE)
OPTIONAL = ("synth", "notes")  # Plan fields a manifest written before they existed lacks (defaults hold)


class ShardError(ValueError):
    """A sharded dataset cannot be used or resumed; the message names the file and what to do."""


@dataclass(frozen=True)
class Plan:
    """What a dataset is; a rerun must name the same plan to resume it."""

    contract_hash: str
    sampling: str  # training.synths.sampling.sampling_fingerprint
    seed: int
    count: int
    shard_size: int
    store: str
    dtype: str
    example_shape: tuple[int, ...]
    synth: str = "reference"  # training.synths identity: which synth (and profile) rendered the audio
    notes: tuple[int, int] = (60, 60)  # MIDI notes played, inclusive (training.synths.sampling.sample_notes)

    @property
    def num_shards(self) -> int:
        return -(-self.count // self.shard_size)

    def shard_range(self, k: int) -> tuple[int, int]:
        return k * self.shard_size, min((k + 1) * self.shard_size, self.count)


def make_plan(
    contract: Contract,
    seed: int,
    count: int,
    shard_size: int = DEFAULT_SHARD_SIZE,
    store: str = DEFAULT_STORE,
    presets: PresetSampling | None = None,
    synth: str = "reference",
    notes: tuple[int, int] | None = None,
) -> Plan:
    if store not in STORES:
        raise ShardError(f"unknown store {store!r}; use one of {', '.join(STORES)}")
    if count < 1 or shard_size < 1:
        raise ShardError(f"count and shard size must be >= 1 (got {count}, {shard_size})")
    shape: tuple[int, ...]
    if store == "logmel":
        shape, dtype = (contract.frontend.n_mels, contract.num_frames), "float16"
    else:
        shape, dtype = (contract.audio.num_samples,), "int16"
    notes = tuple(notes) if notes else (contract.audio.note, contract.audio.note)
    return Plan(
        contract.hash,
        sampling_fingerprint(contract, presets),
        int(seed),
        int(count),
        int(shard_size),
        store,
        dtype,
        shape,
        synth,
        (int(notes[0]), int(notes[1])),
    )


def shard_files(root: Path, k: int) -> dict[str, Path]:
    return {"x": root / f"shard-{k:05d}.x.npy", "params": root / f"shard-{k:05d}.params.npy"}


def write_manifest(root: Path, plan: Plan, shards: dict[str, dict], merge: bool = False, drop=()) -> None:
    """Replace the manifest. merge: first add the finished shards another process (another --shards
    range, maybe on another machine) entered meanwhile, except those in `drop` (found damaged), under
    an exclusive lock on manifest.lock."""
    if merge:
        import fcntl

        with open(root / f"{MANIFEST}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if (root / MANIFEST).exists() and read_manifest(root)[0] == plan:
                for k, entry in read_manifest(root)[1].items():
                    if k not in drop:
                        shards.setdefault(k, entry)
            write_manifest(root, plan, shards)
        return
    data = {
        "format": FORMAT,
        **asdict(plan),
        "num_shards": plan.num_shards,
        "shards": {k: shards[k] for k in sorted(shards)},
    }
    write_text(root / MANIFEST, json.dumps(data, indent=1))


def read_manifest(root: Path) -> tuple[Plan, dict[str, dict]]:
    path = root / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ShardError(
            f"{path}: no manifest; {root} is not a sharded dataset (make one with `synthmatch dataset render`)"
        ) from None
    except json.JSONDecodeError as e:
        raise ShardError(f"{path}: manifest is not valid JSON ({e}); render the dataset again") from None
    if data.get("format") != FORMAT:
        raise ShardError(
            f"{path}: format {data.get('format')!r}, this code reads format {FORMAT}; render the dataset again"
        )
    try:
        plan = Plan(**{f: data[f] for f in Plan.__dataclass_fields__ if f in data or f not in OPTIONAL})
    except KeyError as e:
        raise ShardError(f"{path}: manifest lacks key {e}; render the dataset again") from None
    plan = Plan(**{**asdict(plan), "example_shape": tuple(plan.example_shape), "notes": tuple(plan.notes)})
    return plan, dict(data.get("shards", {}))


def dataset_identity(data: str | Path | None) -> str:
    """The synth identity of training data (training.synths): a shard dataset's (its manifest), "reference"
    for on-the-fly data (data "" or None; anything but a path, as free-form configs may hold)."""
    if not data or not isinstance(data, (str, Path)):
        return REFERENCE
    return read_manifest(Path(data))[0].synth


def verify_entry(root: Path, entry: dict) -> str | None:
    """None if the shard's files match their manifest entry, else what is wrong."""
    for key in ("x", "params"):
        f = entry.get(key) or {}
        path = root / str(f.get("file", ""))
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != f.get("bytes"):
            return f"{path} has {path.stat().st_size} bytes, the manifest says {f.get('bytes')} (truncated?)"
        if file_sha256(path) != f.get("sha256"):
            return f"{path} does not match its sha256 in the manifest (damaged)"
    return None


# ------------------------------------------------------------------------------------------------
# Reading


class ShardDataset:
    """Map-style dataset over a finished sharded directory: ds[i] -> (x float32 tensor, params (16,)).

    x is audio (num_samples,) for store "audio" and normalised log-mel (n_mels, frames) for "logmel"
    (`self.store` says which). Refuses a dataset made for another contract hash, an unfinished one and
    a shard whose size differs from the manifest (truncated); verify=True also checks every sha256.
    """

    def __init__(self, root: str | Path, contract: Contract, verify: bool = False):
        self.root = Path(root)
        self.plan, shards = read_manifest(self.root)
        if self.plan.contract_hash != contract.hash:
            raise ShardError(
                f"{self.root / MANIFEST}: made for contract hash {self.plan.contract_hash}, but this contract "
                f"({contract.source}) has hash {contract.hash}; render the dataset again with this contract "
                "or pass the contract it was made with"
            )
        missing = [k for k in range(self.plan.num_shards) if f"{k:05d}" not in shards]
        if missing:
            raise ShardError(
                f"{self.root}: unfinished dataset ({len(missing)} of {self.plan.num_shards} shards "
                "missing); rerun `synthmatch dataset render` with the same arguments to finish it"
            )
        self.store = self.plan.store
        self._x, self._params = [], []
        for k in range(self.plan.num_shards):
            entry = shards[f"{k:05d}"]
            for key in ("x", "params"):
                path = self.root / entry[key]["file"]
                size = path.stat().st_size if path.is_file() else None
                if size != entry[key]["bytes"]:
                    raise ShardError(
                        f"{path}: {size if size is not None else 'no'} bytes, the manifest says "
                        f"{entry[key]['bytes']}: the shard is truncated or missing; rerun "
                        "`synthmatch dataset render` with the same arguments to re-render it"
                    )
            if verify and (problem := verify_entry(self.root, entry)):
                raise ShardError(
                    f"{problem}; rerun `synthmatch dataset render` with the same arguments to re-render it"
                )
            self._x.append(np.load(self.root / entry["x"]["file"], mmap_mode="r"))
            self._params.append(np.load(self.root / entry["params"]["file"], mmap_mode="r"))
            n = entry["count"]
            if self._x[-1].shape != (n, *self.plan.example_shape) or self._params[-1].shape != (n, 16):
                raise ShardError(
                    f"{self.root / entry['x']['file']}: shape {self._x[-1].shape} does not match "
                    "the manifest; render the dataset again"
                )

    def __len__(self) -> int:
        return self.plan.count

    def _decode(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return x / INT16_SCALE if self.plan.dtype == "int16" else x

    def notes(self, indices):
        """(N,) float32 torch tensor: the MIDI notes the examples at `indices` are played at (from the plan)."""
        import torch

        from synthmatch.training.synths.sampling import sample_notes

        return torch.from_numpy(
            sample_notes(self.plan.seed, np.asarray(indices).tolist(), self.plan.notes).astype(np.float32)
        )

    def batch(self, indices) -> tuple:
        """Examples at `indices` (any order) -> (x (N, ...) float32, params (N, 16) float32) tensors."""
        import torch

        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"index out of range 0..{len(self) - 1}")
        K = self.plan.shard_size
        x = np.empty((len(idx), *self.plan.example_shape), np.float32)
        p = np.empty((len(idx), 16), np.float32)
        shard, row = idx // K, idx % K
        for k in np.unique(shard):
            sel = np.nonzero(shard == k)[0]
            x[sel] = self._decode(self._x[k][row[sel]])
            p[sel] = self._params[k][row[sel]]
        return torch.from_numpy(x), torch.from_numpy(p)

    def order(self, start: int, stop: int, shuffle_seed: int | None = None, count: int | None = None) -> np.ndarray:
        """Dataset rows of global positions start..stop-1 when examples are read epoch after epoch:
        position g is row g % count of epoch g // count, in a fresh permutation per epoch when
        shuffle_seed is given (permutation = f(shuffle_seed, epoch)). count: read only rows 0..count-1
        (default all)."""
        n = len(self) if count is None else int(count)
        g = np.arange(start, stop, dtype=np.int64)
        if shuffle_seed is None:
            return g % n
        epochs = g // n
        out = np.empty_like(g)
        for e in np.unique(epochs):
            perm = np.random.default_rng([int(shuffle_seed), int(e)]).permutation(n)
            sel = epochs == e
            out[sel] = perm[g[sel] % n]
        return out

    def batches(
        self, batch_size: int, rank: int = 0, world_size: int = 1, start_step: int = 0, shuffle_seed: int | None = None
    ):
        """Infinite batches under training.data.onthefly.OnTheFly's global-index rule: batch b of this rank holds
        positions (start_step + b) * batch_size * world_size + rank * batch_size + j (see `order`)."""
        step = start_step
        while True:
            first = step * batch_size * world_size + rank * batch_size
            rows = self.order(first, first + batch_size, shuffle_seed)
            yield (*self.batch(rows), self.notes(rows))
            step += 1

    def __getitem__(self, i: int) -> tuple:
        x, p = self.batch([i])
        return x[0], p[0]


def holdout(ds: ShardDataset, val_size: int, data_size: int = 0) -> tuple[int, np.ndarray] | None:
    """Validation for a dataset rendered by a plugin: its last `val_size` examples, never trained on.

    Returns (n, rows): training reads rows 0..n-1 (the first data_size when given, never past the held-out
    tail), validation is `rows`, the same whatever data_size. None for a reference-synth dataset, which
    validates on the reference synth's own val split (rendered from val_seed) like on-the-fly training.
    A plugin cannot be rendered at training time (a GPU machine may have no plugin, no licence), so its
    dataset holds its own validation: render val_size more examples than you train on."""
    if ds.plan.synth == "reference":
        return None
    n = len(ds) - int(val_size)
    if n < 1:
        raise ShardError(
            f"{ds.root}: val_size = {val_size} holds out every one of its {len(ds)} examples (a "
            "plugin's dataset validates on its own last val_size examples); lower val_size or "
            "render more examples"
        )
    return (min(n, data_size) if data_size > 0 else n), np.arange(n, len(ds))
