"""The sync stage: ingest samples in, set messages out. Pure: no sockets, no clock reads.

One object does the synchronizer node's whole data work, so that the node only receives, calls it and
publishes, and an offline runner can chain ingest -> SyncStage -> inference in one process. It checks
each sample against the model contract (`SetBuilder.payload`), feeds the `Synchronizer`, whose audio
windows become the model's log-mel as soon as they are cut (`SetBuilder.audio_features` is its
window_transform), and builds the set message of every FusedSet that comes out (docs/PROTOCOL.md
section 8). It counts the samples it takes per stream (``received.STREAM``) and the ones that never
reached it: ingest numbers its output 0, 1, 2, ... per stream, so a gap in that seq is a sample lost on
the way (``dropped.STREAM.lost``), as a driver's seq gaps are counted at ingest. The caller passes the
time: a set's ``sync_in`` stage is the arrival time of the message that completed it, or the ``now_ns``
of the tick or flush that did.

The replay's send order (`ReplayOrder`) is not the stage's: it undoes the interleaving of ingest
processes running in parallel, a property of the sockets in front of the stage (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from typing import Any

from fusion_pipeline.binding import Bindings
from fusion_pipeline.config import Config
from fusion_pipeline.protocol import SeqGaps
from fusion_pipeline.sync.errors import InputError, SyncError
from fusion_pipeline.sync.sets import SetBuilder
from fusion_pipeline.sync.settings import settings_from_config
from fusion_pipeline.sync.synchronizer import FusedSet, Synchronizer
from fusion_pipeline.transport.wire import Sample

__all__ = ["SyncStage"]

log = logging.getLogger(__name__)


class SyncStage:
    """The synchronization step of the graph: the config's streams matched into set messages.

    `bindings` (fusion_pipeline.binding.bind) says which model input each stream feeds.
    """

    def __init__(self, config: Config, bindings: Bindings) -> None:
        self.builder = SetBuilder(config, bindings)
        self.synchronizer: Synchronizer[Sample] = Synchronizer(
            *settings_from_config(config), window_transform=self.builder.audio_features
        )
        self.rejected: Counter[str] = Counter()  # samples refused, by InputError reason or sync_refused
        self.received: Counter[str] = Counter()  # samples taken in, by stream
        self._gaps: defaultdict[str, SeqGaps] = defaultdict(SeqGaps)  # by stream: its ingest's seq

    def add(self, sample: Sample, arrival_ns: int) -> list[Sample]:
        """The set messages `sample` completes, in stamp order. A sample the stage cannot use is
        counted in `rejected` (the first of each reason logged) and completes none: never an error."""
        self._count_arrival(sample)
        try:
            sets = self.synchronizer.add(sample.stream, sample.stamp_ns, self.builder.payload(sample))
        except (InputError, SyncError) as exc:
            # SyncError is the Synchronizer's own (a library class, not only the pipeline's): one reason.
            reason = exc.reason if isinstance(exc, InputError) else "sync_refused"
            if not self.rejected[reason]:
                log.warning("refusing a message (%s, further ones only counted): %s", reason, exc)
            self.rejected[reason] += 1
            return []
        return self._build(sets, arrival_ns, sample.stream)

    def _count_arrival(self, sample: Sample) -> None:
        """Count a configured stream's sample, and the samples a gap in its ingest seq says were lost. A
        lower seq is a restarted ingest node, which numbers from 0 again: no loss to count."""
        stream = sample.stream
        if stream not in self.synchronizer.streams:
            return  # refused below as unknown_stream
        self.received[stream] += 1
        if lost := self._gaps[stream].missing_before(sample.seq):
            self.synchronizer.counters.drops.count(stream, "lost", lost)

    def refused_at_socket(self, header: dict[str, Any]) -> None:
        """A message of a configured stream that its socket dropped after reading `header` (counted
        there, by reason): its seq is passed, not counted again as lost."""
        if (stream := header.get("stream")) in self.synchronizer.streams:
            self._gaps[stream].pass_over(header.get("seq"))

    def tick(self, now_ns: int) -> list[Sample]:
        """Live only: the set messages whose deadline passed by wall-clock `now_ns` (event-time ns)."""
        return self._build(self.synchronizer.tick(now_ns), now_ns, "deadline")

    def flush(self, now_ns: int) -> list[Sample]:
        """The streams ended (a replayed log's end): every set still open, finished with what arrived."""
        return self._build(self.synchronizer.flush(), now_ns, "end")

    def next_deadline_ns(self) -> int | None:
        """The earliest `now_ns` at which tick() can finish a set (None: no deadline pending)."""
        return self.synchronizer.next_deadline_ns()

    def wait_ms(self, now_ns: int, longest_ms: int) -> int:
        """How long a live loop may wait for input at `now_ns` before it must tick: until the next
        deadline, rounded up to whole ms (zmq polls in ms), at most `longest_ms`."""
        deadline_ns = self.next_deadline_ns()
        if deadline_ns is None:
            return longest_ms
        return min(longest_ms, max(0, -((now_ns - deadline_ns) // 1_000_000)))

    def counters(self) -> dict[str, int]:
        return {
            **self.synchronizer.counters.as_dict(),
            **{f"rejected_{reason}": n for reason, n in sorted(self.rejected.items())},
            **{f"received.{stream}": n for stream, n in self.received.items()},
            "sets_published": self.builder.built,  # every set built is handed on to be published
            **{f"unbound_held.{s}": n for s, n in self.builder.unbound_held.items()},
            # Power spectrum rows an audio window took from the window before (LogMelWindows).
            **{f"log_mel_rows_reused.{s}": w.rows_reused for s, w in self.builder.log_mel.items()},
        }

    def _build(self, sets: list[FusedSet[Sample]], sync_in_ns: int, completed_by: str) -> list[Sample]:
        return [self.builder.build(fused, sync_in_ns, completed_by) for fused in sets]
