"""Generic streams for the synchronizer: the samples a set takes and the buffer they are taken from.

Pure (no sockets, no clock reads). A generic stream (an IMU, CAN frames) carries one small sample per
message, often at hundreds of Hz: too many to match one by one as a discrete stream's messages are, and
a sample may serve several sets. So, like audio, the stream is kept in a buffer and each set at stamp t
takes from it, per the stream's `SampledSync`:

- ``nearest``: the sample nearest t within ``tolerance_ns`` (a tie goes to the earlier one); none within
  it: the stream is absent from the set;
- ``window``: the samples in (t - span_ns, t], at most the last ``samples`` of them, stacked oldest first
  into a fixed (samples, *shape) array, padded with zeros at the front; ``mask`` marks the rows that
  hold a sample (1.0), so the newest sample is always the last row. No sample in the span: absent.

A set's take is decided once a sample later than t has arrived (nothing nearer or inside the window can
come after it) or at the set's deadline, as for audio.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from fusion_pipeline.sync.errors import SyncError
from fusion_pipeline.sync.settings import SampledSync

__all__ = ["SampleBuffer", "TakenSamples"]


@dataclass(slots=True)
class TakenSamples:
    """What a set takes of a generic stream: `values` (nearest: one sample; window: the stacked rows),
    `mask` (window only: 1.0 for a row holding a sample, else 0.0) and `last_ns`, the stamp of the
    newest sample taken (the set's stamp of this stream)."""

    values: np.ndarray
    mask: np.ndarray | None
    last_ns: int


class SampleBuffer:
    """The recent samples of one generic stream, in stamp order; takes a set's samples from them."""

    def __init__(self, name: str, sync: SampledSync, capacity: int) -> None:
        self.name = name
        self.sync = sync
        self.capacity = capacity
        self.samples: deque[tuple[int, np.ndarray]] = deque()

    def check(self, values: object) -> np.ndarray:
        """`values` if it is an array of the kept samples' shape and dtype, else SyncError."""
        if not isinstance(values, np.ndarray):
            raise SyncError(
                f"stream {self.name!r}: a sample must be a numpy array, got {type(values).__name__}"
            )
        kept = self.samples[-1][1] if self.samples else values
        if (values.shape, values.dtype) != (kept.shape, kept.dtype):
            raise SyncError(
                f"stream {self.name!r}: a {values.dtype} {values.shape} sample after "
                f"{kept.dtype} {kept.shape} ones"
            )
        return values

    def add(self, stamp_ns: int, values: np.ndarray) -> int:
        """Keep a sample (stamps never decrease: the Synchronizer drops or resets on a step back); return
        how many old samples went to stay within the capacity."""
        self.samples.append((stamp_ns, values))
        evicted = 0
        while len(self.samples) > self.capacity:
            self.samples.popleft()
            evicted += 1
        return evicted

    def reaches_past(self, t_ns: int) -> bool:
        return bool(self.samples) and self.samples[-1][0] > t_ns

    def take(self, t_ns: int) -> TakenSamples | None:
        """The samples a set at `t_ns` takes (module docstring), or None when there are none."""
        samples = self.samples
        after = len(samples)  # index of the first sample later than t
        while after > 0 and samples[after - 1][0] > t_ns:
            after -= 1
        if self.sync.mode == "nearest":
            return self._nearest(t_ns, after)
        return self._window(t_ns, after)

    def _nearest(self, t_ns: int, after: int) -> TakenSamples | None:
        candidates = [self.samples[i] for i in (after - 1, after) if 0 <= i < len(self.samples)]
        best = None
        for stamp, values in candidates:  # the earlier first: it wins a tie
            distance = abs(stamp - t_ns)
            if distance <= self.sync.tolerance_ns and (best is None or distance < abs(best[0] - t_ns)):
                best = (stamp, values)
        return None if best is None else TakenSamples(best[1], None, best[0])

    def _window(self, t_ns: int, after: int) -> TakenSamples | None:
        rows = []
        i = after - 1
        while i >= 0 and len(rows) < self.sync.samples and self.samples[i][0] > t_ns - self.sync.span_ns:
            rows.append(self.samples[i])
            i -= 1
        if not rows:
            return None
        rows.reverse()
        n = self.sync.samples
        first = rows[0][1]
        stacked = np.zeros((n, *first.shape), first.dtype)
        stacked[n - len(rows) :] = [values for _, values in rows]
        mask = np.zeros(n, np.float32)
        mask[n - len(rows) :] = 1.0
        return TakenSamples(stacked, mask, rows[-1][0])

    def prune(self, horizon_ns: int) -> None:
        """Forget samples no set at or after `horizon_ns` can take (never the newest)."""
        reach = max(self.sync.tolerance_ns, self.sync.span_ns)
        samples = self.samples
        while len(samples) > 1 and samples[0][0] < horizon_ns - reach:
            samples.popleft()

    def clear(self) -> int:
        n = len(self.samples)
        self.samples.clear()
        return n
