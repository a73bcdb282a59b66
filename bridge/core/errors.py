"""The runtime's bottom module: errors every layer may raise, importing nothing of synthmatch.

UsageError is a mistake the user can fix; the CLI prints its one line without a traceback and exits 2.
"""

from __future__ import annotations


class UsageError(Exception):
    """A mistake the user can fix (bad config, file, device name): printed without a traceback, exit 2."""
