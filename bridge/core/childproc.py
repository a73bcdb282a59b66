"""Child processes that end with their parent: no orphan left running after a kill.

    die_with_parent(parent_pid) -> False if the parent is already gone

Linux: the kernel sends the child SIGKILL when its parent dies (prctl PR_SET_PDEATHSIG), whatever the
child is doing. Elsewhere callers that idle should also poll os.getppid() (training.shardrender's workers do).
Used by the refinement process and by `dataset render`'s worker processes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> bool:
    """Arrange for this process to be killed when `parent` dies; False if it has died already."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl in this libc: the caller's getppid() checks remain
            pass
    return os.getppid() == parent  # checked after prctl: a parent that died before it is seen here
