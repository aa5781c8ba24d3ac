"""ROS 2 message_filters' ApproximateTime policy, ported message for message, and what every sync
layer shares: the drop reasons and their per-stream counter.

The policy is pure (no sockets, no clock reads) and knows nothing of deadlines: among the sets that
follow the last emitted set it emits the one with the smallest time span, as soon as later messages
prove that no better set can come. :class:`fusion_pipeline.sync.synchronizer.Synchronizer` adds
deadlines, optional streams and audio on top of it. Stamps are int64 nanoseconds of event time.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from fusion_pipeline.sync.errors import SyncError

__all__ = [
    "DROP_REASONS",
    "ApproximateTimePolicy",
    "DropCounter",
    "MatchedSet",
    "P",
    "stamp_of",
]

#: The payload of a discrete stream's message: carried through matching untouched, handed back in its set.
P = TypeVar("P")

#: Why a message was dropped:
#: queue_overflow - its stream's queue held more than queue_size messages (the oldest goes);
#: too_old - it can no longer be part of any set (older than the deadline horizon, no partner within
#:   max_interval, or its set's stamp is older than a set already emitted);
#: out_of_order - its stamp is older than its stream's previous one (by less than time_jump_ns): a set
#:   with it would cross one already emitted, which stands;
#: no_reference - reference mode: no reference message came near its stamp, so no set was opened for it,
#:   the reference stream silent (not started yet, or behind the others by more than time_jump_ns);
#: superseded - a later message of the same stream was chosen, and sets never cross;
#: reset - discarded by a reset after a backward time jump;
#: missing_required - its set was abandoned because a required stream was missing (approximate
#:   mode: it aged past the deadline while a required stream was silent);
#: flushed - left unmatched when the streams ended (Synchronizer.flush): no set can use it;
#: lost - never reached the sync stage: a gap in the seq of its stream's ingest output (SyncStage).
DROP_REASONS: tuple[str, ...] = (
    "queue_overflow",
    "too_old",
    "no_reference",
    "out_of_order",
    "superseded",
    "reset",
    "missing_required",
    "flushed",
    "lost",
)


class DropCounter:
    """Per-stream counts of dropped messages, by reason (one of DROP_REASONS)."""

    def __init__(self, streams: Iterable[str]) -> None:
        self.by_stream: dict[str, dict[str, int]] = {s: dict.fromkeys(DROP_REASONS, 0) for s in streams}

    def count(self, stream: str, reason: str, n: int = 1) -> None:
        self.by_stream[stream][reason] += n

    def total(self, reason: str | None = None) -> int:
        return sum(n for r in self.by_stream.values() for k, n in r.items() if reason in (None, k))


@dataclass(slots=True)
class MatchedSet(Generic[P]):
    """One message per stream, chosen together by the ApproximateTime policy."""

    stamps: dict[str, int]
    payloads: dict[str, P]


def _stream_index(index: Mapping[str, int], stream: str) -> int:
    try:
        return index[stream]
    except (KeyError, TypeError):
        raise SyncError(f"unknown stream {stream!r}; known streams: {list(index)}") from None


def stamp_of(stream: str, stamp_ns: object) -> int:
    """`stamp_ns` as an int, or SyncError naming the stream (a float or str stamp is a caller's bug)."""
    try:
        return operator.index(stamp_ns)  # type: ignore[arg-type]
    except TypeError:
        raise SyncError(f"stream {stream!r}: stamp_ns must be an integer (ns), got {stamp_ns!r}") from None


class ApproximateTimePolicy(Generic[P]):
    """ROS 2 message_filters' ApproximateTime policy, message for message.

    Each stream keeps a queue of unmatched messages. When every queue is non-empty, the oldest head
    starts an interval and the newest head ends it; the stream of the first valid interval's end is
    the *pivot*. Sets containing the pivot message are searched by setting the oldest head aside
    (the C++ ``past_``) until the best one is provably optimal, then it is emitted and the set-aside
    messages return to their queues. Messages set aside count towards ``queue_size``.

    ``age_penalty`` makes a candidate ending later pay ``(1 + age_penalty)`` times its extra age
    (upstream's default is 0.1; this class defaults to 0 = pure minimum span). ``lower_bound_ns``
    (stream -> minimal gap between two of its messages) lets it prove optimality before the next
    message arrives, so it only emits sooner. ``max_interval_ns`` bounds every set's span.

    Each stream should arrive in stamp order (equal stamps allowed). A message older than its
    stream's previous one would cross a set already emitted: upstream warns and takes it, this drops
    it, counted as out_of_order, and goes on; the caller is never failed for a late message.
    """

    def __init__(
        self,
        streams: Sequence[str],
        queue_size: int = 10,
        max_interval_ns: int | None = None,
        age_penalty: float = 0.0,
        lower_bound_ns: Mapping[str, int] | None = None,
        drops: DropCounter | None = None,
    ) -> None:
        self.streams: tuple[str, ...] = tuple(streams)
        if not self.streams:
            raise SyncError("ApproximateTimePolicy needs at least one stream")
        if len(set(self.streams)) != len(self.streams):
            raise SyncError(f"duplicate stream names in {list(self.streams)}")
        if queue_size < 1:
            raise SyncError(f"queue_size must be >= 1, got {queue_size}")
        if max_interval_ns is not None and max_interval_ns < 0:
            raise SyncError(f"max_interval_ns must be >= 0, got {max_interval_ns}")
        if not age_penalty >= 0.0:
            raise SyncError(f"age_penalty must be >= 0, got {age_penalty}")
        self._index = {name: i for i, name in enumerate(self.streams)}
        bounds = [0] * len(self.streams)
        for name, bound in (lower_bound_ns or {}).items():
            if name not in self._index:
                raise SyncError(f"lower_bound_ns: unknown stream {name!r}; streams: {list(self.streams)}")
            if bound is not None and bound < 0:
                raise SyncError(f"stream {name!r}: lower_bound_ns must be >= 0, got {bound}")
            bounds[self._index[name]] = bound or 0
        self.queue_size = queue_size
        self.max_interval_ns = max_interval_ns
        self.age_penalty = age_penalty
        self.drops = drops if drops is not None else DropCounter(self.streams)
        self._n = len(self.streams)
        self._bounds = bounds
        self._factor = 1.0 + age_penalty
        self._queues: list[deque[tuple[int, P]]] = [deque() for _ in self.streams]
        self._aside: list[list[tuple[int, P]]] = [[] for _ in self.streams]
        self._last: list[int | None] = [None] * self._n
        self._dropped = [False] * self._n  # upstream has_dropped_messages_: not a good pivot
        self._non_empty = 0
        self._candidate: list[tuple[int, P]] | None = None
        self._cand_start = 0
        self._cand_end = 0
        self._pivot = -1  # stream index, -1 = no candidate
        self._pivot_t = 0

    def add(self, stream: str, stamp_ns: int, payload: P | None = None) -> list[MatchedSet[P]]:
        """Queue one message; return the sets it completes (usually none or one). Without a payload
        (a stamp-only caller, P = None) the sets carry None."""
        i = _stream_index(self._index, stream)
        stamp_ns = stamp_of(stream, stamp_ns)
        last = self._last[i]
        if last is not None and stamp_ns < last:
            self.drops.count(stream, "out_of_order")
            return []
        self._last[i] = stamp_ns
        queue = self._queues[i]
        queue.append((stamp_ns, cast(P, payload)))
        out: list[MatchedSet[P]] = []
        if len(queue) == 1:
            self._non_empty += 1
            if self._non_empty == self._n:
                self._process(out)
        if len(queue) + len(self._aside[i]) > self.queue_size:
            # Cancel any search, then drop the oldest message of the overfull stream.
            self._recover_all()
            queue.popleft()
            self.drops.count(stream, "queue_overflow")
            self._dropped[i] = True
            if self._pivot >= 0:
                self._candidate = None
                self._pivot = -1
                self._process(out)
        return out

    @property
    def candidate_end_ns(self) -> int | None:
        """Newest stamp of the best set found so far that is not yet proven optimal (None if none)."""
        return self._pivot_t if self._pivot >= 0 else None

    def publish_candidate(self) -> list[MatchedSet[P]]:
        """Emit the best set found so far without waiting for proof, then go on matching; not in
        ROS: the Synchronizer calls it when a deadline passes because a stream fell silent."""
        if self._pivot < 0:
            return []
        out = [self._publish()]
        self._process(out)
        return out

    def depths(self) -> dict[str, int]:
        """Messages held per stream (queued or set aside), each at most queue_size."""
        return {n: len(q) + len(a) for n, q, a in zip(self.streams, self._queues, self._aside, strict=True)}

    def drain(self) -> list[tuple[str, int, P]]:
        """Remove and return every message not emitted yet, as (stream, stamp_ns, payload) in
        per-stream order; the policy is empty afterwards. Used to rebuild over other streams."""
        self._recover_all()
        left = [(self.streams[j], t, p) for j, q in enumerate(self._queues) for t, p in q]
        for q in self._queues:
            q.clear()
        self._non_empty = 0
        self._candidate = None
        self._pivot = -1
        self._last = [None] * self._n
        self._dropped = [False] * self._n
        return left

    # -- the search ---------------------------------------------------------------------------------

    def _aged(self, delta_ns: int) -> int:
        # rclcpp's Duration * double truncates to whole nanoseconds; delta_ns >= 0 here.
        return delta_ns if self._factor == 1.0 else int(delta_ns * self._factor)

    def _process(self, out: list[MatchedSet[P]]) -> None:
        n = self._n
        queues = self._queues
        while self._non_empty == n:
            heads = [q[0][0] for q in queues]
            # Ties: the start is the first oldest head, the end the last newest head (as upstream).
            start_t = min(heads)
            start_i = heads.index(start_t)
            end_t = max(heads)
            end_i = n - 1 - heads[::-1].index(end_t)
            if True in self._dropped:
                # No dropped message could have beaten the heads we hold: a fine pivot again.
                self._dropped = [flag and j == end_i for j, flag in enumerate(self._dropped)]
            if self._pivot < 0:
                if self.max_interval_ns is not None and end_t - start_t > self.max_interval_ns:
                    self._delete_front(start_i, "too_old")
                    continue
                if self._dropped[end_i]:
                    self._delete_front(start_i, "superseded")
                    continue
                self._make_candidate(start_t, end_t)
                self._pivot = end_i
                self._pivot_t = end_t
            elif self._aged(end_t - self._cand_end) < start_t - self._cand_start:
                self._make_candidate(start_t, end_t)  # better; same pivot
            self._set_aside(start_i)
            if start_i == self._pivot:
                out.append(self._publish())  # every set containing the pivot message was tried
            elif self._aged(end_t - self._cand_end) >= self._pivot_t - self._cand_start:
                # Any later set contains [pivot_t, end_t], already wider than the candidate.
                out.append(self._publish())
            elif self._non_empty < n:
                self._virtual_search(out)

    def _virtual_search(self, out: list[MatchedSet[P]]) -> None:
        """With a queue empty, assume its next message comes as early as its lower bound allows;
        if even then no set can beat the candidate, it is optimal now. Undo the moves otherwise."""
        moves = [0] * self._n
        while True:
            times = [self._virtual_time(j) for j in range(self._n)]
            start_t = min(times)
            start_i = times.index(start_t)
            aged_end = self._aged(max(times) - self._cand_end)
            if aged_end >= self._pivot_t - self._cand_start:
                out.append(self._publish())
                return
            if aged_end < start_t - self._cand_start:
                self._undo_moves(moves)  # an optimistic future set would win: cannot prove it yet
                return
            self._set_aside(start_i)
            moves[start_i] += 1

    def _virtual_time(self, j: int) -> int:
        queue = self._queues[j]
        if queue:
            return queue[0][0]
        earliest_next = self._aside[j][-1][0] + self._bounds[j]
        return max(earliest_next, self._pivot_t)

    def _make_candidate(self, start_t: int, end_t: int) -> None:
        self._candidate = [q[0] for q in self._queues]
        for j, aside in enumerate(self._aside):
            if aside:  # older than the new candidate on their stream: sets never cross
                self.drops.count(self.streams[j], "superseded", len(aside))
                aside.clear()
        self._cand_start = start_t
        self._cand_end = end_t

    def _publish(self) -> MatchedSet[P]:
        assert self._candidate is not None
        matched = MatchedSet(
            stamps={name: m[0] for name, m in zip(self.streams, self._candidate, strict=True)},
            payloads={name: m[1] for name, m in zip(self.streams, self._candidate, strict=True)},
        )
        self._candidate = None
        self._pivot = -1
        non_empty = 0
        for queue, aside in zip(self._queues, self._aside, strict=True):
            if aside:
                queue.extendleft(reversed(aside))
                aside.clear()
            queue.popleft()  # the candidate's message is the oldest one left
            if queue:
                non_empty += 1
        self._non_empty = non_empty
        return matched

    def _set_aside(self, j: int) -> None:
        queue = self._queues[j]
        self._aside[j].append(queue.popleft())
        if not queue:
            self._non_empty -= 1

    def _delete_front(self, j: int, reason: str) -> None:
        queue = self._queues[j]
        queue.popleft()
        self.drops.count(self.streams[j], reason)
        if not queue:
            self._non_empty -= 1

    def _undo_moves(self, moves: list[int]) -> None:
        for j, count in enumerate(moves):
            if count:
                aside = self._aside[j]
                self._queues[j].extendleft(reversed(aside[-count:]))
                del aside[-count:]
        self._non_empty = sum(1 for q in self._queues if q)

    def _recover_all(self) -> None:
        for queue, aside in zip(self._queues, self._aside, strict=True):
            if aside:
                queue.extendleft(reversed(aside))
                aside.clear()
        self._non_empty = sum(1 for q in self._queues if q)
