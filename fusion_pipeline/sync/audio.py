"""Audio for the synchronizer: the window a set gets and the ring of chunks it is cut from.

Pure (no sockets, no clock reads). A continuous stream arrives as float32 frames x channels chunks
stamped at their first frame; each set at stamp t gets the window (t - W, t], cut sample-accurately
from the ring, across chunks only where they are contiguous.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

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


class SampleRing:
    """The recent chunks of one continuous stream; cuts sample-accurate windows from them.

    Frame k of a chunk stamped s is at s + k * 1e9 / sample_rate. Two chunks are contiguous when the
    second starts within the gap tolerance of the first's end and has as many channels; frames are
    concatenated across contiguous chunks, never across a larger gap, an overlap or a change of
    channels (a device that changed is not refused: its windows start afresh). All time arithmetic is
    exact integer arithmetic in units of 1 / sample_rate ns, so windows are exact to the sample.
    """

    def __init__(self, name: str, sample_rate: int, frames: int, tolerance_ns: int, max_frames: int):
        self.name = name
        self.rate = sample_rate
        self.frames = frames
        self._tol = tolerance_ns * sample_rate  # in ns * rate units
        self._max_frames = max_frames
        self.chunks: deque[tuple[int, np.ndarray]] = deque()
        self._held = 0  # frames in the ring

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
        self.chunks.append((stamp_ns, samples))
        self._held += samples.shape[0]
        evicted = 0
        while self._held > self._max_frames and len(self.chunks) > 1:
            self._held -= self.chunks.popleft()[1].shape[0]
            evicted += 1
        return evicted

    def _end_scaled(self, chunk: tuple[int, np.ndarray]) -> int:
        """End of a chunk's span (after its last frame), times the sample rate."""
        return chunk[0] * self.rate + chunk[1].shape[0] * NS_PER_S

    def reaches_past(self, t_ns: int) -> bool:
        return bool(self.chunks) and self._end_scaled(self.chunks[-1]) > t_ns * self.rate

    def window(self, t_ns: int) -> tuple[np.ndarray, int] | None:
        """The `frames` frames ending at the last frame at or before t_ns and that frame's stamp (ns,
        rounded down), or None if not covered."""
        chunks = self.chunks
        idx = len(chunks) - 1
        while idx >= 0 and chunks[idx][0] > t_ns:
            idx -= 1
        if idx < 0:
            return None
        stamp, samples = chunks[idx]
        last = (t_ns - stamp) * self.rate // NS_PER_S  # index of the last frame at or before t
        if last >= samples.shape[0]:
            if t_ns * self.rate - self._end_scaled(chunks[idx]) > self._tol:
                return None  # t lies in a gap wider than the tolerance
            last = samples.shape[0] - 1
        last_ns = (stamp * self.rate + last * NS_PER_S) // self.rate
        channels = samples.shape[1]
        parts = []
        need = self.frames
        while True:
            take = min(need, last + 1)
            parts.append(samples[last + 1 - take : last + 1])
            need -= take
            if need == 0:
                break
            if idx == 0:
                return None  # the ring does not reach back far enough
            gap = stamp * self.rate - self._end_scaled(chunks[idx - 1])
            if abs(gap) > self._tol or chunks[idx - 1][1].shape[1] != channels:
                return None
            idx -= 1
            stamp, samples = chunks[idx]
            last = samples.shape[0] - 1
        parts.reverse()
        return (np.concatenate(parts) if len(parts) > 1 else parts[0].copy()), last_ns

    def prune(self, horizon_ns: int) -> None:
        """Forget chunks that end before the horizon (never the newest)."""
        chunks = self.chunks
        while len(chunks) > 1 and self._end_scaled(chunks[0]) < horizon_ns * self.rate:
            self._held -= chunks.popleft()[1].shape[0]

    def clear(self) -> int:
        n = len(self.chunks)
        self.chunks.clear()
        self._held = 0
        return n
