"""A child process's tie to its parent: on Linux the kernel signals the child when its parent dies
(PR_SET_PDEATHSIG), so a parent killed with SIGKILL leaves no worker or node running behind it."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1
# Loaded here, once: die_with_parent also runs between fork and exec (a Popen preexec_fn).
_LIBC = (
    ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if sys.platform.startswith("linux")
    else None
)


def die_with_parent(parent_pid: int | None = None, signum: int = signal.SIGTERM) -> None:
    """Have the kernel send `signum` to this process when its parent dies (nothing off Linux). Given
    `parent_pid`, a parent already gone before the call (its child was then adopted) ends the process."""
    if _LIBC is None:
        return
    _LIBC.prctl(_PR_SET_PDEATHSIG, signum)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)
