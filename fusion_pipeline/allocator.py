"""glibc allocator settings for processes that move megabyte buffers (camera frames, point clouds).

glibc serves a large allocation with a fresh mmap (above M_MMAP_THRESHOLD, 128 KiB at first) and
returns a free heap top to the kernel (above M_TRIM_THRESHOLD). A 1 MB frame per message then comes
back as new pages every time: about 250 page faults per megabyte, each a trip into the kernel, which
measured as the largest cost of a 1 MiB ipc transfer (tools/bench_transport.py) and of reading a log.
Keeping such blocks in the heap lets the next message reuse pages that are already mapped, for a
bounded amount of extra resident memory (at most the trim threshold held free per arena).

Every node process and the CLI call `tune_allocator()` once at start. It does nothing on other C
libraries (musl, macOS), where these knobs do not exist.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_allocator"]

#: The largest value glibc accepts on 64-bit (HEAP_MAX_SIZE / 2): every sensor buffer stays in the heap.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free heap kept before it goes back to the kernel: a few frames' worth.
TRIM_THRESHOLD = 128 * 1024 * 1024

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3


def tune_allocator(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Apply the thresholds with mallopt(3); True when glibc took both."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
