"""Shared-memory arrays for publishers on ipc endpoints: a ring of slots in one file under /dev/shm.

A large array sent as a ZeroMQ frame crosses a unix socket: the kernel copies it in and out, and libzmq
allocates the received message. On one host a publisher may instead copy the array into a slot of a
shared-memory segment and send only a reference in the header (``shm: {segment, slot, gen}``, empty
buffer frame); the subscriber copies it out. One memory copy on each side and no socket traffic for the
payload (docs/PROTOCOL.md, section 3.2).

Slots are guarded by open-file-description byte-range locks (fcntl F_OFD_SETLK): the writer holds a
slot exclusively while it fills it, a reader holds it shared while it copies. Neither ever waits: a
writer skips a slot that is being read, and a reader gives up on a slot that is being rewritten (its
message is stale), so a stopped or hung process never stalls another. Each slot carries the generation
of the array in it, 0 while it is being written (so a writer killed mid-copy leaves no valid-looking
slot); a reader whose reference names another generation knows the ring has wrapped past its message,
the shared-memory equivalent of a high-water-mark drop. The publisher also holds a lock on the file
header for as long as it lives, which tells anyone sweeping /dev/shm that the segment is in use.

A ring holds 16 arrays, not messages: a message with two large arrays takes two slots. OFD locks do not
nest, so a SegmentReader belongs to one thread (as a Subscriber does).

Segment layout (all integers little-endian uint64)::

    0     magic b"FPSHM1\\0\\0", slot_bytes, slots, zero padding to 64 bytes
    64    slot 0: generation, zero padding to 64 bytes, then slot_bytes of data
    ...   slot i at 64 + i * (64 + slot_bytes)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import re
import secrets
import stat
import struct
import sys
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusion_pipeline.transport.errors import HeaderError, StaleError
from fusion_pipeline.transport.wire import SHM_SEGMENT_NAME, ShmRef

__all__ = [
    "DEFAULT_SLOTS",
    "MIN_BYTES",
    "SEGMENT_DIR",
    "SegmentReader",
    "SegmentWriter",
    "available",
    "remove_orphans",
]

log = logging.getLogger(__name__)

SEGMENT_DIR = Path("/dev/shm")
#: Arrays smaller than this travel in their frame: below it the socket was as fast (tools/bench_transport.py).
MIN_BYTES = 128 * 1024
#: Slots per ring. A subscriber more than this many messages behind the publisher gets stale references.
DEFAULT_SLOTS = 16
#: The largest segment a reader maps (virtual memory only, but a header's claims are checked anyway).
MAX_SEGMENT_BYTES = 4 * 1024**3
#: A segment whose header no process locks is removed once it is this old (its creator takes the lock
#: right after creating it; the age covers that moment).
ORPHAN_AGE_S = 5.0
#: Segments a reader keeps mapped; the least recently used is closed first (a restarted publisher
#: leaves its old segment behind).
MAX_OPEN_SEGMENTS = 32

_MAGIC = b"FPSHM1\0\0"
_HEADER = struct.Struct("<8sQQ")
_ALIGN = 64  # the file header and each slot's header; keeps slot data cache-line aligned
_SLOT_ROUND = 64 * 1024  # slot sizes are rounded up so that slightly larger arrays reuse the segment
# struct flock on Linux (x86_64, aarch64): l_type, l_whence, l_start, l_len, l_pid, padded to 32 bytes.
_FLOCK = struct.Struct("hhqqi4x")


def available() -> bool:
    """Shared-memory arrays need Linux's /dev/shm and open-file-description locks."""
    return sys.platform == "linux" and hasattr(fcntl, "F_OFD_SETLK") and SEGMENT_DIR.is_dir()


def _try_lock(fd: int, kind: int, start: int, length: int) -> bool:
    """Take (or with F_UNLCK release) a byte-range lock without waiting; False when another holds it."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, start, length, 0))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


@dataclass
class _Segment:
    """One mapped segment: its file, and views of the slots' generations and data."""

    name: str
    fd: int
    map: mmap.mmap
    slot_bytes: int
    generations: np.ndarray  # (slots,) uint64
    data: np.ndarray  # (slots, slot_bytes) uint8

    @classmethod
    def attach(cls, name: str, fd: int, size: int, writable: bool) -> _Segment:
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        region = mmap.mmap(fd, size, mmap.MAP_SHARED, prot)
        magic, slot_bytes, slots = _HEADER.unpack_from(region)
        if magic != _MAGIC or slots < 1 or size != _ALIGN + slots * (_ALIGN + slot_bytes):
            region.close()
            raise HeaderError(f"shared-memory segment {name!r} is not a fusion-pipeline segment")
        stride = _ALIGN + slot_bytes
        generations = np.ndarray((slots,), "<u8", region, _ALIGN, (stride,))
        data = np.ndarray((slots, slot_bytes), np.uint8, region, 2 * _ALIGN, (stride, 1))
        return cls(name, fd, region, slot_bytes, generations, data)

    def slot_range(self, slot: int) -> tuple[int, int]:
        """The bytes a slot's lock covers: its generation and its data."""
        return _ALIGN + slot * (_ALIGN + self.slot_bytes), _ALIGN + self.slot_bytes

    def close(self) -> None:
        # Views into the map must go first: an mmap with exported buffers refuses to close. Should a
        # view still be alive elsewhere, the mapping goes with the last one.
        del self.generations, self.data
        with contextlib.suppress(BufferError):
            self.map.close()
        os.close(self.fd)


class SegmentWriter:
    """A publisher's ring: `place` copies an array into the next free slot and returns its reference."""

    def __init__(self, label: str, slots: int = DEFAULT_SLOTS, min_bytes: int = MIN_BYTES) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.label = re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:60] or "stream"
        self.slots = slots
        self.min_bytes = min_bytes
        self.generation = 0
        self.inline = 0  # arrays sent in their frame because every slot was being read
        self.unavailable = ""  # why no segment could be made (then every array goes inline)
        self._next = 0
        self._segment: _Segment | None = None

    @property
    def path(self) -> Path | None:
        return None if self._segment is None else SEGMENT_DIR / self._segment.name

    def place(self, array: np.ndarray) -> ShmRef | None:
        """Copy a C-contiguous array into a slot; None when it is small or no slot is free (send inline)."""
        nbytes = array.nbytes
        if nbytes < self.min_bytes:
            return None
        segment = self._segment
        if segment is None or nbytes > segment.slot_bytes:
            if self.unavailable:
                return None
            segment = self._create(nbytes)
            if segment is None:
                return None
        for _ in range(self.slots):
            slot = self._next
            self._next = (slot + 1) % self.slots
            start, length = segment.slot_range(slot)
            if not _try_lock(segment.fd, fcntl.F_WRLCK, start, length):
                continue  # a reader is copying out of it
            try:
                self.generation += 1
                segment.generations[slot] = 0  # being written: matches no reference
                segment.data[slot, :nbytes] = array.reshape(-1).view(np.uint8)
                segment.generations[slot] = self.generation
            finally:
                _try_lock(segment.fd, fcntl.F_UNLCK, start, length)
            return ShmRef(segment.name, slot, self.generation)
        self.inline += 1
        return None

    def _create(self, nbytes: int) -> _Segment | None:
        """A new segment whose slots hold `nbytes` (rounded up), the old one unlinked; None when /dev/shm
        cannot hold it (then this writer sends every array inline, and says so once)."""
        self.close()
        remove_orphans()
        slot_bytes = -(-nbytes // _SLOT_ROUND) * _SLOT_ROUND
        size = _ALIGN + self.slots * (_ALIGN + slot_bytes)
        name = f"fp-{os.getpid()}-{self.label}-{secrets.token_hex(4)}"
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(SEGMENT_DIR / name, flags, 0o600)
        try:
            _try_lock(fd, fcntl.F_WRLCK, 0, _ALIGN)  # "in use", for remove_orphans
            # Allocated now: tmpfs that runs out of room later would kill this process with SIGBUS.
            os.posix_fallocate(fd, 0, size)
            os.pwrite(fd, _HEADER.pack(_MAGIC, slot_bytes, self.slots), 0)
            self._segment = _Segment.attach(name, fd, size, writable=True)
        except OSError as exc:
            os.close(fd)
            (SEGMENT_DIR / name).unlink(missing_ok=True)
            self.unavailable = f"{size} bytes in {SEGMENT_DIR}: {exc}"
            log.warning("%s: no shared-memory ring (%s); arrays go in frames", self.label, self.unavailable)
            return None
        except BaseException:
            os.close(fd)
            (SEGMENT_DIR / name).unlink(missing_ok=True)
            raise
        log.debug("shared-memory segment %s: %d slots of %d bytes", name, self.slots, slot_bytes)
        return self._segment

    def close(self) -> None:
        """Unlink the segment; readers that mapped it keep their mapping until they let it go."""
        if self._segment is not None:
            (SEGMENT_DIR / self._segment.name).unlink(missing_ok=True)
            self._segment.close()
            self._segment = None


class SegmentReader:
    """A subscriber's view of the segments its publishers name: maps them read-only and copies out."""

    def __init__(self, max_open: int = MAX_OPEN_SEGMENTS) -> None:
        self.max_open = max_open
        self._segments: OrderedDict[str, _Segment] = OrderedDict()

    def read(self, ref: ShmRef, nbytes: int) -> np.ndarray:
        """A fresh uint8 copy of the `nbytes` the reference names; StaleError when the slot was reused."""
        segment = self._segment(ref.segment)
        if ref.slot >= len(segment.generations):
            raise HeaderError(
                f"shared-memory reference to slot {ref.slot} of a {len(segment.generations)}-slot segment"
            )
        if nbytes > segment.slot_bytes:
            raise HeaderError(
                f"shared-memory array of {nbytes} bytes is larger than a slot ({segment.slot_bytes} bytes)"
            )
        out = np.empty(nbytes, np.uint8)
        start, length = segment.slot_range(ref.slot)
        try:
            locked = _try_lock(segment.fd, fcntl.F_RDLCK, start, length)
        except OSError as exc:
            raise HeaderError(f"shared-memory segment {ref.segment!r} cannot be locked: {exc}") from exc
        if not locked:
            raise StaleError(f"shared-memory slot {ref.slot} of {ref.segment!r} is being rewritten")
        try:
            if int(segment.generations[ref.slot]) != ref.gen:
                raise StaleError(f"shared-memory slot {ref.slot} of {ref.segment!r} was reused")
            out[:] = segment.data[ref.slot, :nbytes]
        finally:
            _try_lock(segment.fd, fcntl.F_UNLCK, start, length)
        return out

    def _segment(self, name: str) -> _Segment:
        segment = self._segments.get(name)
        if segment is not None:
            self._segments.move_to_end(name)
            return segment
        if not SHM_SEGMENT_NAME.match(name):  # checked with the header already; a caller may skip that
            raise HeaderError(f"shared-memory segment name {name!r} is not fp-<pid>-<label>")
        try:
            # O_NONBLOCK: a FIFO under that name must not hang the reader (it is refused below).
            fd = os.open(SEGMENT_DIR / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError as exc:
            raise StaleError(f"shared-memory segment {name!r} is gone (its publisher closed)") from exc
        except OSError as exc:
            raise HeaderError(f"shared-memory segment {name!r} cannot be opened: {exc}") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or not _ALIGN <= info.st_size <= MAX_SEGMENT_BYTES:
                raise HeaderError(f"shared-memory segment {name!r} is not a segment file")
            # Only this user's own segments, which no one else can write (and so cannot shrink under
            # the mapping, which would fault the reader).
            if info.st_uid != os.getuid() or info.st_mode & 0o022:
                raise HeaderError(f"shared-memory segment {name!r} is not this user's private file")
            segment = _Segment.attach(name, fd, info.st_size, writable=False)
        except OSError as exc:
            os.close(fd)
            raise HeaderError(f"shared-memory segment {name!r} cannot be mapped: {exc}") from exc
        except BaseException:
            os.close(fd)
            raise
        # A new segment often replaces one its publisher removed (a restart, larger slots): let those
        # go now, or a crash-looping driver would pin a ring of memory per restart.
        for old in [s for s in self._segments.values() if os.fstat(s.fd).st_nlink == 0]:
            del self._segments[old.name]
            old.close()
        self._segments[name] = segment
        while len(self._segments) > self.max_open:
            self._segments.popitem(last=False)[1].close()
        return segment

    def close(self) -> None:
        while self._segments:
            self._segments.popitem()[1].close()


def remove_orphans(min_age_s: float = ORPHAN_AGE_S, exited: Mapping[int, float] | None = None) -> list[Path]:
    """Unlink this user's segments that no live publisher holds (killed before it could clean up).

    A publisher locks its segment's header for its whole life, so a header that can be locked has no
    owner; that test also holds across pid namespaces, where a pid in the name means nothing. A segment
    younger than `min_age_s` may be one a publisher has made and not locked yet, and is left. `exited`
    instead names the publishers to sweep: the processes of a run known to have exited (the supervisor's
    sweep at the end of a run, for its nodes that were killed), each with the time (time.time()) it was
    seen exited; their segments go whatever their age, but one made after that time is another process's
    that has since been given the pid, and is left.
    """
    removed = []
    now = time.time()
    for path in SEGMENT_DIR.glob("fp-*"):
        match = SHM_SEGMENT_NAME.match(path.name)
        if not match or (exited is not None and int(match[1]) not in exited):
            continue
        made_by = now - min_age_s if exited is None else exited[int(match[1])]
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:  # gone meanwhile, or another user's
            continue
        try:
            info = os.fstat(fd)
            if (
                stat.S_ISREG(info.st_mode)
                and info.st_uid == os.getuid()
                and info.st_mtime <= made_by
                and _try_lock(fd, fcntl.F_WRLCK, 0, _ALIGN)
            ):
                path.unlink(missing_ok=True)
                removed.append(path)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed
