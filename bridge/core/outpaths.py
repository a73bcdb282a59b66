"""Checking where a command will write, before it does any work: a folder that is a file, a read-only
place or a missing permission is a one-line UsageError at once, not a traceback after the inference."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from synthmatch.bridge.core.errors import UsageError


def writable_dir(path: str | Path, what: str) -> Path:
    """Create `path` (and its parents) if needed and prove a file can be made in it (created and
    removed). `what` names the option in messages, e.g. "--out-dir"."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path}: is a file, not a directory; give a directory (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".synthmatch-write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UsageError(
            f"{what} {path}: cannot write there ({e.strerror or e}); choose a directory you can write to"
        ) from None
    return path


def writable_file(path: str | Path, what: str) -> Path:
    """`path` names a file that can be (over)written: not a directory, its folder writable."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{what} {path}: is a directory; give a file name, e.g. {path / 'out.wav'}")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{what} {path}: the file is read-only; choose another name or make it writable")
    writable_dir(path.parent, f"{what} {path}: its folder")
    return path
