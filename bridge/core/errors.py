"""The runtime's bottom module: errors every layer may raise, importing nothing of synthmatch.

UsageError is a mistake the user can fix; the CLI prints its one line without a traceback and exits 2.
os_error_advice turns the OS errors any command may meet on a user's path (a name over 255 bytes, a full
disk) into that line; clip shortens a message that quotes a huge value.
"""

from __future__ import annotations

import errno

MAX_MESSAGE = 1200  # characters of an error message shown; the rest (a 50 MB config value...) is cut


class UsageError(Exception):
    """A mistake the user can fix (bad config, file, device name): printed without a traceback, exit 2."""


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` cut to about `limit` characters, keeping its start and its end (where the advice is)."""
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 3, limit // 3
    return f"{text[:head]} ... [{len(text) - head - tail} characters cut] ... {text[-tail:]}"


def _name(e: OSError) -> str:
    return str(e.filename) if e.filename is not None else "a file"


def os_error_advice(e: BaseException) -> str | None:
    """One line with what to do for the OS errors a user's path or disk causes, else None."""
    if not isinstance(e, OSError):
        return None
    if e.errno == errno.ENAMETOOLONG:
        return (
            f"{clip(_name(e), 120)}: a name in this path is too long (file systems allow 255 bytes per "
            "folder or file name); use a shorter name"
        )
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{_name(e)}: no space left on the disk ({e.strerror}); free some space or write somewhere else"
    return None
