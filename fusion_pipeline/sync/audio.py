"""Audio for the synchronizer: the window a set gets and the ring of chunks it is cut from.

Pure (no sockets, no clock reads). A continuous stream arrives as float32 frames x channels chunks
stamped at their first frame; each set at stamp t gets the window (t - W, t], cut sample-accurately
from the ring, across chunks only where they are contiguous.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from itertools import islice
from operator import attrgetter
from typing import NamedTuple

import numpy as np

from fusion_pipeline.protocol import NS_PER_S
from fusion_pipeline.sync.errors import SyncError

__all__ = ["AudioWindow", "SampleRing"]


@dataclass(slots=True)
class AudioWindow:
    """The samples of a continuous stream for one set: nominal bounds (start_ns, end_ns] = (t - W, t]
    and the frames x channels float32 array ending at the last frame at or before t (or what the
    Synchronizer's window_transform made of it); samples is None when the window is missing (not
    covered, a gap larger than the tolerance, or refused by the transform). last_ns is the stamp
    of the window's last frame (its capture time, ns rounded down; None when the window is missing):
    the set's stamp of this stream, as a discrete stream's is the stamp of the message used."""

    start_ns: int
    end_ns: int
    samples: np.ndarray | None
    last_ns: int | None = None


class _Chunk(NamedTuple):
    stamp_ns: int
    samples: np.ndarray
    first: int  # index of its first frame among all the frames the ring took in
    run_first: int  # `first` of the first chunk of its run of contiguous chunks: no window reaches before


_first = attrgetter("first")


class SampleRing:
    """The recent chunks of one continuous stream; cuts sample-accurate windows from them.

    Frame k of a chunk stamped s is at s + k * 1e9 / sample_rate. Two chunks are contiguous when the
    second starts within the gap tolerance of the first's end, before or after it (stamps jitter both
    ways), and has as many channels; frames are concatenated across contiguous chunks, never across a
    larger gap or overlap or a change of channels (a device that changed is not refused: its windows
    start afresh). All time arithmetic is exact integer arithmetic in units of 1 / sample_rate ns, so
    windows are exact to the sample.
    Each chunk is placed when it arrives: where it starts in the stream's frames, and where its run of
    contiguous chunks starts; a window is then index arithmetic and one copy, with no walk over the
    chunks it spans (the cut is on the path of the message that completes a set).
    """

    def __init__(self, name: str, sample_rate: int, frames: int, tolerance_ns: int, max_frames: int):
        self.name = name
        self.rate = sample_rate
        self.frames = frames
        self._tol = tolerance_ns * sample_rate  # in ns * rate units
        self._max_frames = max_frames
        self.chunks: deque[_Chunk] = deque()
        self._taken = 0  # frames ever taken in: the next chunk's `first`

    def check(self, samples: object) -> np.ndarray:
        """`samples` if it is a float32 frames x channels chunk, else SyncError (whatever came before)."""
        if not isinstance(samples, np.ndarray) or samples.ndim != 2 or samples.dtype != np.float32:
            got = (
                f"{samples.dtype} array of shape {samples.shape}"
                if isinstance(samples, np.ndarray)
                else type(samples).__name__
            )
            raise SyncError(
                f"stream {self.name!r}: audio chunk must be a float32 frames x channels array, got {got}"
            )
        if samples.shape[0] == 0:
            raise SyncError(f"stream {self.name!r}: audio chunk has no frames")
        return samples

    def add(self, stamp_ns: int, samples: np.ndarray) -> int:
        """Keep a checked chunk; return how many old chunks went to stay within the frame bound."""
        first = self._taken
        run_first = first
        if self.chunks:
            previous = self.chunks[-1]
            gap = stamp_ns * self.rate - self._end_scaled(previous)
            if abs(gap) <= self._tol and previous.samples.shape[1] == samples.shape[1]:
                run_first = previous.run_first
        self.chunks.append(_Chunk(stamp_ns, samples, first, run_first))
        self._taken += samples.shape[0]
        evicted = 0
        while self._held > self._max_frames and len(self.chunks) > 1:
            self.chunks.popleft()
            evicted += 1
        return evicted

    @property
    def _held(self) -> int:
        """Frames in the ring: its chunks' frames are numbered consecutively, oldest to newest."""
        return self._taken - self.chunks[0].first if self.chunks else 0

    def _end_scaled(self, chunk: _Chunk) -> int:
        """End of a chunk's span (after its last frame), times the sample rate."""
        return chunk.stamp_ns * self.rate + chunk.samples.shape[0] * NS_PER_S

    def reaches_past(self, t_ns: int) -> bool:
        return bool(self.chunks) and self._end_scaled(self.chunks[-1]) > t_ns * self.rate

    def window(self, t_ns: int) -> tuple[np.ndarray, int, int] | None:
        """The `frames` frames ending at the last frame at or before t_ns, that frame's stamp (ns,
        rounded down) and the index of the window's first frame among all the frames the ring took in
        (two windows with the same index hold the same frames); None if not covered."""
        chunks = self.chunks
        idx = len(chunks) - 1
        while idx >= 0 and chunks[idx].stamp_ns > t_ns:
            idx -= 1
        if idx < 0:
            return None
        chunk = chunks[idx]
        last = (t_ns - chunk.stamp_ns) * self.rate // NS_PER_S  # index of the last frame at or before t
        if last >= chunk.samples.shape[0]:
            if t_ns * self.rate - self._end_scaled(chunk) > self._tol:
                return None  # t lies in a gap wider than the tolerance
            last = chunk.samples.shape[0] - 1
        last_ns = (chunk.stamp_ns * self.rate + last * NS_PER_S) // self.rate
        start = chunk.first + last + 1 - self.frames  # the window's first frame, among all frames
        if start < chunk.run_first or start < chunks[0].first:
            return None  # it would cross a gap or a change of channels, or reach past the ring
        if start >= chunk.first:
            return chunk.samples[start - chunk.first : last + 1].copy(), last_ns, start
        oldest = bisect_right(chunks, start, hi=idx, key=_first) - 1  # the chunk holding `start`
        parts = [chunks[oldest].samples[start - chunks[oldest].first :]]
        parts += [c.samples for c in islice(chunks, oldest + 1, idx)]
        parts.append(chunk.samples[: last + 1])
        return np.concatenate(parts), last_ns, start

    def prune(self, horizon_ns: int) -> None:
        """Forget chunks that end before the horizon (never the newest)."""
        chunks = self.chunks
        while len(chunks) > 1 and self._end_scaled(chunks[0]) < horizon_ns * self.rate:
            chunks.popleft()

    def clear(self) -> int:
        n = len(self.chunks)
        self.chunks.clear()
        return n
