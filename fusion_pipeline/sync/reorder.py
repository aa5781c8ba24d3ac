"""Log order for a replay: release messages in the replayer's send order, whatever order they arrive in.

During a replay every message carries ``meta.replay_seq``, its index in the replayer's send order (log
order, counted on across loop passes). The ingest nodes are separate processes that take different
times per message, so the synchronizer receives the streams interleaved by processing time; its
event-time deadlines advance with the newest stamp of any stream, so that interleaving would decide
which messages make a set. `ReplayOrder` holds early messages until every earlier one has arrived and
hands them on in send order: the synchronizer sees the log exactly as recorded at any replay speed, while
the ingest nodes work in parallel.

A message ingest refuses (a frame its front end cannot take, a stamp it drops, an array over the
stream's limits) comes as its skip marker instead (`skip_marker`: stream ``SKIP_STREAM``, no arrays, its
replay_seq), which takes its place in the order and is then passed over. A message that never arrives
(one whose header could not be read) would hold everything behind it, so a hole older than
``gap_timeout_ns`` is skipped (counted as ``replay_gaps``), as is one in front of more than ``max_held``
waiting messages. A message without replay_seq passes straight through. Input never makes it raise: a
replay_seq that is not an unsigned integer (``replay_bad_seq``), or an index already held
(``replay_duplicates``, the first one stays), is dropped and counted. Pure logic: the caller passes the clock.

The end of a replay is a message of its own (docs/PROTOCOL.md section 5, "End of a replay"): stream
``END_STREAM``, sent by the replayer on ``end_endpoint(run_dir)`` straight to the synchronizer, with the
replay_seq after the last message sent, so that this order releases it only after every message sent
before it (or after their holes were given up).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from fusion_pipeline.transport import Sample

__all__ = [
    "END_MODALITY",
    "END_STREAM",
    "SKIP_STREAM",
    "ReplayOrder",
    "ReplayOrderCounters",
    "end_endpoint",
    "skip_marker",
]

_T = TypeVar("_T")

#: The end-of-replay message: this stream and modality, no arrays, meta {"replay_seq": messages sent}.
END_STREAM = "replay/end"
END_MODALITY = "end"
#: What ingest sends in a replay for a message it refused: this stream, modality "skip", no arrays,
#: meta {"replay_seq": the refused message's}.
SKIP_STREAM = "replay/skip"


def skip_marker(replay_seq: int) -> Sample:
    """The stand-in for a replayed message that ingest refused, so that the order does not wait for it."""
    return Sample(SKIP_STREAM, "skip", 0, 0, {}, "", {"replay_seq": replay_seq})


def end_endpoint(run_dir: Path) -> str:
    """Where the replayer binds the end-of-replay publisher and the synchronizer (--replay) connects."""
    return f"ipc://{run_dir}/replay-end.sock"


@dataclass
class ReplayOrderCounters:
    replay_held_max: int = 0  # most messages ever waiting for an earlier one
    replay_gaps: int = 0  # send indices skipped because they never arrived
    replay_skipped: int = 0  # send indices of messages ingest refused: their skip markers, passed over
    replay_late: int = 0  # messages that arrived after their index was skipped (passed on at once)
    replay_bad_seq: int = 0  # dropped: replay_seq not an unsigned 64-bit integer
    replay_duplicates: int = 0  # dropped: a second message with an index already held

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class ReplayOrder(Generic[_T]):
    """Reorders items by their replay_seq (0, 1, 2, ...) with a bounded wait for holes."""

    def __init__(self, gap_timeout_ns: int = 1_000_000_000, max_held: int = 4096) -> None:
        self.gap_timeout_ns = gap_timeout_ns
        self.max_held = max_held
        self.counters = ReplayOrderCounters()
        self._next = 0
        self._held: dict[int, _T] = {}
        self._progress_ns = 0  # when the order last moved (or the first item was held)

    def push(self, replay_seq: object, item: _T, now_ns: int) -> list[_T]:
        """Items now due in send order, `item` among them once every earlier one has come."""
        if replay_seq is None:
            return [item]
        if type(replay_seq) is not int or not 0 <= replay_seq < 2**64:  # bool, float, str: forged
            self.counters.replay_bad_seq += 1
            return []
        if replay_seq < self._next:
            self.counters.replay_late += 1
            return [item]
        if replay_seq in self._held:
            self.counters.replay_duplicates += 1
            return []
        if not self._held:
            self._progress_ns = now_ns
        self._held[replay_seq] = item
        self.counters.replay_held_max = max(self.counters.replay_held_max, len(self._held))
        due = self._release()
        if len(self._held) > self.max_held:
            due += self._skip_gap()
        if due:
            self._progress_ns = now_ns
        return due

    def expire(self, now_ns: int) -> list[_T]:
        """Items behind a hole older than gap_timeout_ns (the hole is skipped); [] otherwise."""
        if not self._held or now_ns - self._progress_ns < self.gap_timeout_ns:
            return []
        self._progress_ns = now_ns
        return self._skip_gap()

    def _skip_gap(self) -> list[_T]:
        first = min(self._held)
        self.counters.replay_gaps += first - self._next
        self._next = first
        return self._release()

    def _release(self) -> list[_T]:
        due = []
        while (item := self._held.pop(self._next, None)) is not None:
            due.append(item)
            self._next += 1
        return due
