"""Refined follow-ups for trigger and manual snapshots, computed in a second process.

The network answers within milliseconds but places oscillator pitches poorly; refinement by
re-rendering (training/refine.py) brings a match much closer to the sound (docs/model-card.md) at
about 3 s of CPU per sound. So with `refine.passes > 0` the daemon sends the network's snapshot at
once, as always, and hands (window, values) to this process; when the refined values come back and no
newer snapshot was sent meanwhile, the daemon sends them as a second update (mode "<mode>+refined").

Why a process: the search is a Python loop over torch calls; in the daemon's process it would hold
the GIL between calls and delay the worker's next window. Why optional: it needs torch and the
reference synth (the `train` extra), which the runtime never imports; only the child process does.
The child works on the newest request only (older ones queued behind it are dropped unanswered) and
uses `threads` torch threads (1 by default, leaving a core to the daemon's own inference).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import time
from typing import Any

import numpy as np

from synthmatch.bridge.core.childproc import die_with_parent

log = logging.getLogger("synthmatch.refiner")

READY_TIMEOUT_S = 120.0  # importing torch and building the synth: seconds on a cold disk
PARENT_CHECK_S = 0.5  # the idle child looks this often whether its parent still lives


class RefinerError(RuntimeError):
    """The refinement process could not start (no torch, bad contract): the message says what to do."""


def _die_with_parent(parent: int) -> bool:
    """Child: arrange to end when the parent does (bridge.childproc); False if it is already gone.
    SIGINT is ignored: a Ctrl-C reaches the whole process group, and the parent closes the child itself;
    the idle loop also checks os.getppid() every PARENT_CHECK_S (where prctl does not exist)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return die_with_parent(parent)


def _next_request(requests, parent: int):
    """The newest request (older ones dropped), None for close() or a dead parent."""
    while True:
        try:
            req = requests.get(timeout=PARENT_CHECK_S)
            break
        except queue.Empty:
            if os.getppid() != parent:
                return None
    while req is not None:  # only the newest request matters: a newer snapshot supersedes older ones
        try:
            req = requests.get_nowait()
        except queue.Empty:
            break
    return req


def _serve(requests, results, contract, passes: int, threads: int, parent: int) -> None:
    """Child process: answer (ident, window (T,), values (P,)) with (ident, refined (P,), before, after).
    `parent`: the daemon's pid; the child ends when that process does."""
    if not _die_with_parent(parent):
        return
    try:
        import torch

        torch.set_num_threads(threads)
        from synthmatch.training.refine import RefineConfig, refine
        from synthmatch.training.synth import ReferenceSynth

        cfg, synth = RefineConfig(passes=passes), ReferenceSynth(contract)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which explains it
        results.put(("error", f"{type(e).__name__}: {e}"))
        return
    results.put(("ready", cfg.renders_per_sound(contract)))
    while True:
        req = _next_request(requests, parent)
        if req is None:  # close(), or the parent is gone
            return
        ident, window, values = req
        t0 = time.monotonic()
        found, before, after = refine(contract, window[None], values[None], cfg, synth=synth)
        results.put(("done", ident, found[0], float(before[0]), float(after[0]), time.monotonic() - t0))


class Refiner:
    """Parent side: start the child, submit windows, poll results (never blocks the worker)."""

    def __init__(self, contract, passes: int, threads: int = 1, ready_timeout: float = READY_TIMEOUT_S):
        ctx = mp.get_context("spawn")  # no fork of a process holding audio streams and MIDI clients
        self._requests, self._results = ctx.Queue(), ctx.Queue()
        self._proc = ctx.Process(
            target=_serve,
            name="synthmatch-refiner",
            daemon=True,
            args=(self._requests, self._results, contract, passes, threads, os.getpid()),
        )
        try:  # a signal may interrupt the start or the wait (live.serve.Shutdown): never leave the child
            self._proc.start()
            self.renders = self._wait_ready(ready_timeout)
        except BaseException:
            self.close(timeout=0.0)  # not ready: nothing to finish, terminate at once
            raise
        self.last_submitted: int | None = None  # the child always answers the newest request it was given
        log.info("refinement: %d passes, %d renders per snapshot, %d torch thread(s)", passes, self.renders, threads)

    def _wait_ready(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        msg = None
        while msg is None and time.monotonic() < deadline:
            try:
                msg = self._results.get(timeout=min(PARENT_CHECK_S, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                if not self._proc.is_alive():
                    try:  # its last word (an import error) may still be in the pipe
                        msg = self._results.get(timeout=PARENT_CHECK_S)
                        break
                    except queue.Empty:
                        pass
                    self.close()
                    raise RefinerError(
                        f"the refinement process exited (status {self._proc.exitcode}) while "
                        "starting; run `python -c 'import torch'` to see why, or set "
                        "refine.passes = 0"
                    ) from None
        if msg is None:
            self.close()
            raise RefinerError(
                f"the refinement process did not start within {timeout:.0f} s; check that "
                "`python -c 'import torch'` works in this environment, or set refine.passes = 0"
            ) from None
        if msg[0] != "ready":
            self.close()
            raise RefinerError(
                f"refinement needs the training extra (torch and the reference synth): "
                f"{msg[1]}; install it with pip install 'synthmatch[train]', or set "
                "refine.passes = 0"
            )
        return int(msg[1])

    def submit(self, ident: int, window: np.ndarray, values: np.ndarray) -> None:
        self._requests.put((ident, np.asarray(window, np.float32).copy(), np.asarray(values, np.float32).copy()))
        self.last_submitted = ident

    def poll(self) -> list[tuple[Any, ...]]:
        """Answers that arrived: (ident, refined values (P,), distance before, after, seconds)."""
        out: list[tuple[Any, ...]] = []
        while True:
            try:
                msg = self._results.get_nowait()
            except queue.Empty:
                return out
            if msg[0] == "done":
                out.append(msg[1:])

    def alive(self) -> bool:
        return self._proc.is_alive()

    def close(self, timeout: float = 0.2) -> None:
        """Stop the child: a search in flight is not waited for (it holds nothing worth finishing)."""
        if self._proc.pid is not None and self._proc.is_alive():  # pid None: interrupted before start
            try:
                self._requests.put(None)
            except (OSError, ValueError):
                pass
            self._proc.join(timeout)
        if self._proc.pid is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(1.0)
        for q in (self._requests, self._results):
            q.cancel_join_thread()  # never block exit on data nobody will read
            q.close()
