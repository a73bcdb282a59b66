"""Rendering a sharded dataset in worker processes, resumably; the `synthmatch dataset` subcommand.

training.data.shards holds the format this writes (Plan, the manifest, shard file names, checksums) and reads
a finished dataset back for training (ShardDataset). Each shard is rendered whole by one process, so its
bytes do not depend on the worker count. Resumable: a shard is written under a temporary name, fsynced,
renamed (os.replace), and only then entered in the manifest (itself replaced atomically). A rerun
verifies the finished shards' checksums, deletes leftovers and renders what is missing; a killed render
resumed this way equals an uninterrupted one byte for byte. A worker that dies (a plugin crash) is
replaced and its shard rendered again, up to MAX_CRASHES times; --shards A:B renders one range, so several
processes or machines can share one dataset directory (the manifest is merged under a lock).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from synthmatch.bridge.core.atomic import FULL, DiskFull, disk_full
from synthmatch.bridge.core.contract import Contract
from synthmatch.bridge.core.digest import file_sha256
from synthmatch.training.data.shards import (
    DEFAULT_SHARD_SIZE,
    DEFAULT_STORE,
    INT16_SCALE,
    MANIFEST,
    Plan,
    ShardDataset,
    ShardError,
    make_plan,
    read_manifest,
    shard_files,
    verify_entry,
    write_manifest,
)
from synthmatch.training.synths.sampling import PresetSampling

RENDER_CHUNK = 128  # examples per synth call inside a shard (bounds memory)
MAX_CRASHES = 3  # a shard whose worker dies this often is reported, not retried again


# ------------------------------------------------------------------------------------------------
# Rendering (worker side)

_worker: dict = {}


def _init_worker(
    contract: Contract,
    presets: PresetSampling | None,
    seed: int,
    synth=None,
    log=None,
    notes: tuple[int, int] | None = None,
    parent: int | None = None,
) -> None:
    """synth: a training.synths.SynthSpec for a plugin (None: the reference synth, as training.data.onthefly);
    log: where the plugin's own stderr chatter goes; parent: the render's pid (the worker dies with it)."""
    import torch

    from synthmatch.bridge.core.childproc import die_with_parent

    if parent is not None and not die_with_parent(parent):
        os._exit(1)  # the render was killed while this worker started

    torch.set_num_threads(1)  # one process per core; also keeps each shard's bytes thread-independent
    from synthmatch.training.data.onthefly import Renderer
    from synthmatch.training.model.frontend import LogMel

    if synth is None:
        renderer = Renderer(contract, seed, "cpu", presets, notes)
    else:
        from synthmatch.training.synths import SynthRenderer
        from synthmatch.training.synths.vst3 import redirect_plugin_stderr

        if log:
            redirect_plugin_stderr(log)
        renderer = SynthRenderer(synth.open(contract, check=False), seed, presets)  # one instance per process
    _worker.update(renderer=renderer, logmel=LogMel(contract))


def _encode(audio, plan: Plan) -> np.ndarray:
    import torch

    if plan.store == "logmel":
        with torch.no_grad():
            return _worker["logmel"](audio).numpy().astype(np.float16)
    return np.clip(np.round(audio.numpy() * INT16_SCALE), -32768, 32767).astype(np.int16)


def _render_shard(plan: Plan, root: str, k: int) -> tuple[int, dict]:
    """Render shard k to temporary files, fsync, rename; return its manifest entry."""
    root_p = Path(root)
    start, stop = plan.shard_range(k)
    files = shard_files(root_p, k)
    tmp = {key: p.with_name(f"{p.name}.tmp-{os.getpid()}") for key, p in files.items()}
    x = np.lib.format.open_memmap(tmp["x"], mode="w+", dtype=plan.dtype, shape=(stop - start, *plan.example_shape))
    params = np.lib.format.open_memmap(tmp["params"], mode="w+", dtype=np.float32, shape=(stop - start, 16))
    for key in files:  # claim the space now: a full disk is an OSError here, not a SIGBUS in a memmap write
        with open(tmp[key], "rb+") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    for s in range(start, stop, RENDER_CHUNK):
        e = min(s + RENDER_CHUNK, stop)
        audio, p = _worker["renderer"].render(s, e)
        x[s - start : e - start] = _encode(audio, plan)
        params[s - start : e - start] = p.numpy()
    entry: dict = {"count": stop - start}
    x.flush()
    params.flush()
    del x, params  # closes the memory maps
    for key in files:
        with open(tmp[key], "rb+") as f:
            os.fsync(f.fileno())
        entry[key] = {"file": files[key].name, "bytes": tmp[key].stat().st_size, "sha256": file_sha256(tmp[key])}
        os.replace(tmp[key], files[key])
    return k, entry


# ------------------------------------------------------------------------------------------------
# Rendering (parent side)


def _shard_span(shards: tuple[int, int] | None, plan: Plan) -> tuple[int, int]:
    if shards is None:
        return 0, plan.num_shards
    a, b = shards
    if not 0 <= a < b <= plan.num_shards:
        raise ShardError(
            f"--shards {a}:{b}: the dataset has shards 0..{plan.num_shards - 1}; give A:B with "
            f"0 <= A < B <= {plan.num_shards} (B exclusive)"
        )
    return a, b


def _leftovers(root: Path, ks) -> list[Path]:
    """Temporary files of shards ks (a render that was killed or crashed left them)."""
    return [p for k in ks for f in shard_files(root, k).values() for p in root.glob(f"{f.name}.tmp-*")]


def _remove_leftovers(root: Path, ks) -> None:
    for p in _leftovers(root, ks):
        p.unlink(missing_ok=True)


def shard_bytes(plan: Plan) -> int:
    """Disk space one shard takes (its two .npy files; headers included, with room to spare)."""
    n = min(plan.shard_size, plan.count)
    return n * int(np.prod(plan.example_shape)) * np.dtype(plan.dtype).itemsize + n * 16 * 4 + 2 * 4096


def _disk_full(root: Path, plan: Plan, finished: int) -> DiskFull:
    """The one-line error for a render stopped by a full disk (not the synth's fault)."""
    e = disk_full(root / "shard-NNNNN.x.npy", (plan.num_shards - finished) * shard_bytes(plan))
    return DiskFull(f"{e}; {finished} of {plan.num_shards} shards finished: rerun to resume")


def _render_pool(
    plan: Plan, root: Path, todo: list[int], workers: int, initargs: tuple, done: dict, progress: bool
) -> list[int]:
    """Render shards `todo` in a fresh process pool, entering each in the manifest as it finishes.
    Returns the shards left unfinished because a worker died (empty when all finished)."""
    ctx = get_context("spawn")  # fresh interpreters: no inherited torch threads or locks
    with ProcessPoolExecutor(
        max_workers=max(1, min(workers, len(todo))), mp_context=ctx, initializer=_init_worker, initargs=initargs
    ) as pool:
        pending = {pool.submit(_render_shard, plan, str(root), k): k for k in todo}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    k = pending.pop(fut)
                    try:
                        k, entry = fut.result()
                    except OSError as e:
                        if e.errno not in FULL:
                            raise
                        pool.shutdown(wait=True, cancel_futures=True)
                        _remove_leftovers(root, todo)
                        if progress:
                            print(file=sys.stderr)  # end the progress line
                        raise _disk_full(root, plan, len(done)) from None
                    done[f"{k:05d}"] = entry
                    write_manifest(root, plan, done, merge=True)
                    if progress:
                        print(f"\rshards {len(done)}/{plan.num_shards}", end="", file=sys.stderr, flush=True)
        except BrokenProcessPool:
            return sorted(k for k in todo if f"{k:05d}" not in done)
    return []


def render_dataset(
    contract: Contract,
    out: str | Path,
    count: int,
    seed: int = 0,
    workers: int = 1,
    shard_size: int = DEFAULT_SHARD_SIZE,
    store: str = DEFAULT_STORE,
    presets: PresetSampling | None = None,
    progress: bool = True,
    synth=None,
    shards: tuple[int, int] | None = None,
    notes: tuple[int, int] | None = None,
) -> dict:
    """Render (or finish rendering) a sharded dataset in `workers` processes. Returns a summary.

    synth: a training.synths.SynthSpec (None: the reference synth); a plugin's profile then decides the
    sampling (`presets` must be None). shards: render only shards A..B-1 (--shards A:B), so several
    processes or machines can share one dataset directory; the manifest is merged under a lock.
    """
    root = Path(out)
    synth, presets, identity = _open_synth(contract, synth, presets)
    if notes is not None and tuple(notes) != (contract.audio.note,) * 2 and identity != "reference":
        raise ShardError(
            f"--notes {notes[0]}:{notes[1]}: note ranges render on the reference synth only so far; "
            "render a plugin's dataset at the contract's note (leave out --notes)"
        )
    plan = make_plan(contract, seed, count, shard_size, store, presets, identity, notes)
    span = _shard_span(shards, plan)
    root.mkdir(parents=True, exist_ok=True)
    done = _resume(root, plan, span, shared=shards is not None, progress=progress)

    todo = [k for k in range(*span) if f"{k:05d}" not in done]
    t0 = time.perf_counter()
    log = str(root / "render-plugin.log") if synth is not None else None
    initargs = (contract, presets, plan.seed, synth, log, plan.notes, os.getpid())
    restarts = _run_workers(plan, root, todo, workers, initargs, done, progress, log)
    if progress and todo:
        print(file=sys.stderr)
    return _summary(root, plan, span, done, len(todo), restarts, time.perf_counter() - t0)


def _open_synth(contract: Contract, synth, presets: PresetSampling | None):
    """(synth, presets, identity): a plugin is opened once here, so that a bad path or profile fails with
    one clear message rather than in every worker; its profile decides the sampling. The reference synth
    -> (None, presets, "reference")."""
    if synth is None or synth.kind == "reference":
        return None, presets, "reference"
    opened = synth.open(contract)
    identity, presets = opened.identity, opened.sampling
    opened.close()
    return synth, presets, identity


def _resume(root: Path, plan: Plan, span: tuple[int, int], shared: bool, progress: bool) -> dict[str, dict]:
    """The shards already finished in `root` (checked against their checksums; a damaged one in this
    range is dropped and rendered again), after refusing a directory that holds another dataset and
    removing the half-written files of a killed render. shared: --shards was given (merge the manifest)."""
    done: dict[str, dict] = {}
    damaged: list[str] = []
    if (root / MANIFEST).exists():
        old, entries = read_manifest(root)
        if old != plan:
            diff = [
                f"{k}: {getattr(old, k)!r} there, {getattr(plan, k)!r} asked"
                for k in Plan.__dataclass_fields__
                if getattr(old, k) != getattr(plan, k)
            ]
            raise ShardError(
                f"{root / MANIFEST}: the directory holds another dataset ({'; '.join(diff)}). "
                "Rerun with the same settings to resume it, or choose another --out"
            )
        for name, entry in entries.items():
            if not span[0] <= int(name) < span[1]:
                done[name] = entry  # another range's shard: its own renderer checks it
                continue
            problem = verify_entry(root, entry)
            if problem is None:
                done[name] = entry
                continue
            damaged.append(name)
            if progress:
                print(f"re-rendering shard {name}: {problem}", file=sys.stderr)
    elif not shared and any(root.iterdir()):
        raise ShardError(f"{root}: not empty and has no {MANIFEST}; choose an empty or new --out")
    _remove_leftovers(root, range(*span))  # half-written files of a killed render: never read
    write_manifest(root, plan, done, merge=shared, drop=damaged)
    return done


def _run_workers(
    plan: Plan,
    root: Path,
    todo: list[int],
    workers: int,
    initargs: tuple,
    done: dict[str, dict],
    progress: bool,
    log: str | None,
) -> int:
    """Render the shards `todo` into `done`, restarting the pool when a worker dies. Returns the number of
    restarts; raises ShardError when the same shard (or start-up) kills a worker MAX_CRASHES times.
    log: the plugin workers' log file, named in that error."""
    crashes: dict[int, int] = {}
    restarts = 0
    while todo:
        lost = _render_pool(plan, root, todo, workers, initargs, done, progress)
        if not lost:
            break
        # a worker died (a crash inside the plugin, or a kill): the shards it had begun left temporary
        # files; count those against the shards, clean up, restart the pool and render what is missing
        started = [k for k in lost if _leftovers(root, [k])]
        for k in started:
            crashes[k] = crashes.get(k, 0) + 1
        restarts += 1
        _remove_leftovers(root, lost)
        worst = max(crashes.values(), default=0) if started else restarts
        if shutil.disk_usage(root).free < shard_bytes(plan):  # a worker killed by a full disk (SIGBUS)
            raise _disk_full(root, plan, len(done))
        if worst >= MAX_CRASHES:
            bad = [f"{k:05d}" for k, n in crashes.items() if n >= MAX_CRASHES]
            where = f"shard(s) {', '.join(bad)}" if bad else "the workers at start-up"
            raise ShardError(
                f"{root}: a render worker died {MAX_CRASHES} times on {where} ({len(done)} of "
                f"{plan.num_shards} shards finished); the synth crashes on these patches"
                f"{f' (see {log})' if log else ''}. Rerun to retry, or check the synth"
            )
        if progress:
            print(f"\na render worker died; restarting, re-rendering {len(lost)} shard(s)", file=sys.stderr)
        todo = lost
    return restarts


def _summary(
    root: Path, plan: Plan, span: tuple[int, int], done: dict[str, dict], rendered: int, restarts: int, seconds: float
) -> dict:
    """render_dataset's summary: sizes counted over this range's shards."""
    mine = {k: e for k, e in done.items() if span[0] <= int(k) < span[1]}
    nbytes = sum(e[k]["bytes"] for e in mine.values() for k in ("x", "params"))
    n_examples = sum(e["count"] for e in mine.values())
    return {
        "out": str(root),
        "count": plan.count,
        "shards": plan.num_shards,
        "range": list(span),
        "rendered_shards": rendered,
        "finished_shards": len(done),
        "restarts": restarts,
        "store": plan.store,
        "dtype": plan.dtype,
        "bytes": nbytes,
        "bytes_per_example": round(nbytes / max(n_examples, 1), 1),
        "seconds": round(seconds, 2),
        "contract_hash": plan.contract_hash,
        "seed": plan.seed,
        "synth": plan.synth,
    }


# ------------------------------------------------------------------------------------------------
# CLI


def parse_shards(text: str | None) -> tuple[int, int] | None:
    """ "A:B" -> (A, B); None -> None. Range checks happen against the plan (_shard_span)."""
    if text is None:
        return None
    a, sep, b = text.partition(":")
    try:
        return int(a), int(b)
    except ValueError:
        raise ShardError(f"--shards {text!r}: give A:B, shard numbers from A up to B exclusive, e.g. 0:8") from None


def main(args) -> int:
    from synthmatch.bridge.core import contract as contract_mod
    from synthmatch.bridge.core.errors import UsageError

    c = contract_mod.load(args.contract)
    if args.dataset_command == "probe":
        from synthmatch.training.synths.check import probe

        print(json.dumps(probe(c, args.synth, args.profile), indent=1))
        return 0
    if args.dataset_command == "verify":
        try:
            ds = ShardDataset(args.dir, c, verify=True)
        except ShardError as e:
            raise UsageError(str(e)) from None
        print(
            json.dumps(
                {
                    "dir": str(args.dir),
                    "ok": True,
                    "count": len(ds),
                    "store": ds.store,
                    **{k: v for k, v in asdict(ds.plan).items() if k not in ("count", "store")},
                }
            )
        )
        return 0
    from synthmatch.bridge.core.outpaths import writable_dir
    from synthmatch.training.synths import parse_spec

    writable_dir(args.out, "--out")  # an existing file there: one line, before any worker starts
    spec = parse_spec(args.synth, args.profile)
    if args.presets and spec.kind != "reference":
        raise UsageError("--presets is for the reference synth; a plugin samples as its profile's [sampling] says")
    presets = None
    if args.presets:
        from synthmatch.training.synths.sampling import fit_presets

        presets = fit_presets(c, args.presets, args.presets_method)
    from synthmatch.training.synths.sampling import parse_notes

    try:
        summary = render_dataset(
            c,
            args.out,
            args.count,
            seed=args.seed,
            workers=args.workers,
            shard_size=args.shard_size,
            store=args.store,
            presets=presets,
            synth=spec,
            shards=parse_shards(args.shards),
            notes=parse_notes(args.notes),
        )
    except (ShardError, ValueError) as e:  # ValueError: parse_notes, naming --notes
        raise UsageError(str(e)) from None
    print(json.dumps(summary))
    return 0
