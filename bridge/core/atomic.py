"""Atomic file writes: a reader sees the old file or the whole new one, never a half-written one.

write_atomic writes one file (temporary file beside it, fsync, rename); write_all writes several as one
unit (match's params.json, match.wav and compare.png): every temporary file is written and synced before
the first rename, so a full disk or an error leaves all the old files. A full disk (ENOSPC, or a quota)
raises DiskFull, a UsageError naming the path and the space needed.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from synthmatch.bridge.core.errors import UsageError

Writer = Callable[[BinaryIO], object] | bytes  # the bytes, or a function writing into the open binary file
FULL = (errno.ENOSPC, errno.EDQUOT)
TMP_NAME = 100  # bytes of the target's name kept in the temporary name (255 is the usual limit)


class DiskFull(UsageError):
    """No space left for a file: the message names the path, the space needed and what is free."""


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} bytes"  # unreachable


def disk_full(path: str | Path, needed: int | None, at_least: bool = False) -> DiskFull:
    """The DiskFull error for `path` (needed: bytes, or None when unknown)."""
    path = Path(path)
    try:
        free = f", {_size(shutil.disk_usage(path.parent).free)} free there"
    except OSError:
        free = ""
    need = f"needs {'more than ' if at_least else ''}{_size(needed)}" if needed else "needs more space"
    return DiskFull(f"{path}: the disk is full ({need}{free}); free some space or write somewhere else")


def _tmp_name(path: Path) -> str:
    return path.name.encode()[:TMP_NAME].decode(errors="ignore")


def _write_tmp(path: Path, write: Writer) -> tuple[str, int]:
    """Write `write` to a synced temporary file beside path -> (its name, bytes). Removes it on error."""
    fd, tmp = tempfile.mkstemp(prefix=f".{_tmp_name(path)}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f) if callable(write) else f.write(write)
            f.flush()
            os.fsync(f.fileno())
            return tmp, f.tell()
    except BaseException as e:
        try:
            written = os.stat(tmp).st_size
        except OSError:
            written = 0
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in FULL:
            if isinstance(write, bytes):
                raise _Full(len(write), True) from None
            raise _Full(written, False) from None
        raise


class _Full(Exception):
    """_write_tmp met a full disk after `written` bytes (exact: the file's whole size)."""

    def __init__(self, written: int, exact: bool):
        super().__init__(written)
        self.written, self.exact = written, exact


def _sync_dir(folder: Path) -> None:
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass  # some filesystems refuse fsync on folders; the files themselves are already synced
    finally:
        os.close(dfd)


def write_atomic(path: str | Path, write: Writer, durable: bool = False) -> Path:
    """Write to a temporary file beside `path`, fsync it, then rename it over `path`.

    write: the bytes, or a function that writes into the open binary file. durable: also fsync the
    folder, so the rename itself survives a power cut (checkpoints). A full disk raises DiskFull."""
    return write_all({path: write}, durable)[0]


def write_text(path: str | Path, text: str, durable: bool = False) -> Path:
    """write_atomic of UTF-8 text."""
    return write_atomic(path, text.encode(), durable)


def write_all(files: Mapping[str | Path, Writer], durable: bool = False) -> list[Path]:
    """Write several files as one unit: all temporary files first (each synced), then the renames in turn.

    An error while writing (a full disk: DiskFull) removes the temporary files and leaves every old file
    as it was. Returns the paths, in order."""
    paths = [Path(p) for p in files]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
    done: list[tuple[str, Path]] = []
    sizes = 0  # bytes of the unit's files written so far
    try:
        for p, write in zip(paths, files.values()):
            try:
                tmp, n = _write_tmp(p, write)
            except _Full as full:  # the whole unit needs what was written plus this file
                exact = full.exact and len(done) == len(paths) - 1
                raise disk_full(p, sizes + full.written, at_least=not exact) from None
            done.append((tmp, p))
            sizes += n
    except BaseException:
        for tmp, _ in done:
            Path(tmp).unlink(missing_ok=True)
        raise
    for tmp, p in done:
        os.replace(tmp, p)
    if durable:
        for folder in {p.parent for p in paths}:
            _sync_dir(folder)
    return paths
