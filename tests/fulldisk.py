"""A real full disk for tests: a small tmpfs mounted in the test's folder (needs root or CAP_SYS_ADMIN;
tests skip where it cannot be mounted)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_disk(path: Path, size: str = "2m"):
    """Mount a tmpfs of `size` at `path` (created) for the block; skip the test when mounting is refused."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small disk")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.decode().strip()}); needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(disk: Path, leave: int = 0) -> None:
    """Fill the disk at `disk` until at most `leave` bytes are free."""
    with open(disk / "filler", "ab") as f:
        while shutil.disk_usage(disk).free > leave:
            try:
                f.write(b"\0" * min(65536, max(4096, shutil.disk_usage(disk).free - leave)))
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                break
