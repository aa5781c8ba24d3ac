"""What the viewer keeps of a drained socket, and what it counts for the rest. Pure: no sockets.

The viewer must never slow the pipeline, so it drains its socket and keeps, per discrete stream
(camera, lidar, radar), only the newest message; the ones passed over are `skipped`. Continuous streams
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
    skipped: int = 0  # passed over for a newer message of the same stream in one drain
    lost: int = 0  # seq gaps: dropped by the publisher before the viewer received them
    last_seq: int | None = None


class DrainTally:
    """Counts per stream; `keep` picks what to show from one drain."""

    def __init__(self) -> None:
        self.streams: dict[str, StreamTally] = {}

    def keep(self, drained: Iterable[Sample]) -> list[Sample]:
        """The messages of one drain (in arrival order) that the views get: every one of a continuous
        stream or of results, the newest of each other stream; in arrival order."""
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
        out = sorted((s for queue in kept.values() for s in queue), key=lambda s: s.stamp_ns)
        for sample in out:
            self.streams[sample.stream].shown += 1
        return out

    def counters(self) -> dict[str, int]:
        """Totals and per-stream counts, flat, as heartbeats carry them."""
        totals = {f"{k}": sum(getattr(t, k) for t in self.streams.values()) for k in ("received", "skipped")}
        totals["lost_upstream"] = sum(t.lost for t in self.streams.values())
        for name, tally in sorted(self.streams.items()):
            for key, value in asdict(tally).items():
                if key != "last_seq":
                    totals[f"{name}.{key}"] = value
        return totals
