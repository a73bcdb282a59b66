"""File digests: what model files, engine caches and dataset manifests are keyed and checked by."""

from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK = 1 << 22  # bytes read at a time: 4 MiB, so a 50 MB shard is hashed without holding it


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest()
