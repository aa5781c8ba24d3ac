"""What the viewer keeps of a drained socket, and what it counts for the rest. Pure: no sockets.

The viewer must never slow the pipeline, so it drains its socket and keeps, per discrete stream
(camera, lidar, radar), only the newest message, and that one only when `max_hz` allows it (at least
three quarters of 1/max_hz of capture time since the last one shown: the slack lets jittered stamps of a
sensor at a multiple of max_hz through at max_hz); the ones passed over are `skipped`. By default there
is no such cap: every frame the viewer keeps up with is shown, and recorded. On a small host a cap spares
CPU (a view at 10 Hz is as readable as one at 30 Hz). Continuous streams
(audio, generic: a window needs every chunk) and results (one entry per result) are small and all kept.
A real-time publisher drops what a slow subscriber's queue cannot hold before the viewer ever sees it:
those show as seq gaps and are counted as `lost`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from fusion_pipeline.config import CONTINUOUS_MODALITIES
from fusion_pipeline.protocol import RESULT_MODALITY
from fusion_pipeline.transport.wire import Sample

__all__ = ["DrainTally", "StreamTally"]

#: Modalities of which every message is shown (never skipped for a newer one).
KEEP_ALL: frozenset[str] = frozenset((*CONTINUOUS_MODALITIES, RESULT_MODALITY))


@dataclass
class StreamTally:
    """One stream's counts in the viewer."""

    received: int = 0  # valid messages taken off the socket
    shown: int = 0  # of those, the ones given to the views
    skipped: int = 0  # passed over: a newer message of the stream in the same drain, or over max_hz
    lost: int = 0  # seq gaps: dropped by the publisher before the viewer received them
    last_seq: int | None = None
    last_shown_ns: int | None = None  # capture stamp of the last message shown


class DrainTally:
    """Counts per stream; `keep` picks what to show from one drain. `max_hz`: about the most messages per
    second of capture time shown of each discrete stream (0: no limit): one is shown once 3/4 of 1/max_hz
    has passed since the last one shown, so that jittered stamps of a stream at a multiple of max_hz still
    give max_hz, and a stream between max_hz and 4/3 of it shows all of its messages."""

    def __init__(self, max_hz: float = 0.0) -> None:
        if max_hz < 0:
            raise ValueError(f"max_hz: {max_hz} is negative (0 = no limit)")
        self.streams: dict[str, StreamTally] = {}
        self._min_gap_ns = round(0.75e9 / max_hz) if max_hz else 0

    def keep(self, drained: Iterable[Sample]) -> list[Sample]:
        """The messages of one drain that the views get, in stamp order: every one of a continuous stream
        or of results, the newest of each other stream where max_hz allows it."""
        kept: dict[str, list[Sample]] = {}
        for sample in drained:
            tally = self.streams.setdefault(sample.stream, StreamTally())
            tally.received += 1
            if tally.last_seq is not None and sample.seq > tally.last_seq + 1:
                tally.lost += sample.seq - tally.last_seq - 1
            tally.last_seq = sample.seq
            queue = kept.setdefault(sample.stream, [])
            if queue and sample.modality not in KEEP_ALL:
                tally.skipped += len(queue)
                queue.clear()
            queue.append(sample)
        for stream, queue in kept.items():
            tally = self.streams[stream]
            newest = queue[-1]
            if newest.modality in KEEP_ALL or tally.last_shown_ns is None:
                continue
            # A stamp before the last one shown (a replay started again) is shown at once.
            if 0 <= newest.stamp_ns - tally.last_shown_ns < self._min_gap_ns:
                tally.skipped += len(queue)
                queue.clear()
        out = sorted((s for queue in kept.values() for s in queue), key=lambda s: s.stamp_ns)
        for sample in out:
            tally = self.streams[sample.stream]
            tally.shown += 1
            tally.last_shown_ns = sample.stamp_ns
        return out

    def counters(self) -> dict[str, int]:
        """Totals and per-stream counts, flat, as heartbeats carry them."""
        totals = {f"{k}": sum(getattr(t, k) for t in self.streams.values()) for k in ("received", "skipped")}
        totals["lost_upstream"] = sum(t.lost for t in self.streams.values())
        for name, tally in sorted(self.streams.items()):
            for key, value in asdict(tally).items():
                if key not in ("last_seq", "last_shown_ns"):
                    totals[f"{name}.{key}"] = value
        return totals
