"""Event-time synchronization: pure policies with no sockets and no clock reads.

Two layers:

- :class:`ApproximateTimePolicy` reproduces ROS 2 message_filters' C++ ``ApproximateTime`` policy:
  among the sets that follow the last emitted set, it emits the one with the smallest time span, as
  soon as later messages prove that no better set can come. It knows nothing of deadlines.
- :class:`Synchronizer` is what the synchronizer node drives. It adds what ROS lacks for a vehicle:
  required and optional streams, a deadline (``max_wait_ns``) after which a set is emitted without a
  silent optional stream, audio windows cut sample-accurately from a ring of chunks, reset on a
  backward time jump, and a counter for every dropped message with its reason.

Time convention: every stamp is int64 nanoseconds of EVENT time (capture time). The watermark is the
newest stamp seen on any stream, or the ``now_ns`` a live caller passes to :meth:`Synchronizer.tick`,
whichever is later; deadlines advance with the watermark only, so a replay at any speed gives the
same sets (see "Determinism" in :class:`Synchronizer`).

``StreamSync.offset_ns`` is a known sensor latency, subtracted on arrival (event stamp = stamp_ns -
offset_ns), the same convention as the config's ``offset_ms``. The ingest nodes already subtract the
configured offset (DESIGN: "applied at ingest"), so the synchronizer node passes ``offset_ns = 0``
(as :func:`settings_from_config` does); set it only when feeding raw driver stamps.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from fusion_pipeline.errors import FusionError

if TYPE_CHECKING:
    from fusion_pipeline.config import Config

__all__ = [
    "DROP_REASONS",
    "ApproximateTimePolicy",
    "AudioWindow",
    "DropCounter",
    "FusedSet",
    "MatchedSet",
    "StreamSync",
    "SyncCounters",
    "SyncError",
    "SyncSettings",
    "Synchronizer",
    "settings_from_config",
]

NS_PER_S = 1_000_000_000

#: Why a message was dropped:
#: queue_overflow - its stream's queue held more than queue_size messages (the oldest goes);
#: too_old - it can no longer be part of any set (older than the deadline horizon, or no partner
#:   within max_interval);
#: out_of_order - its stamp is older than its stream's previous one (by less than time_jump_ns): a set
#:   with it would cross one already emitted, which stands;
#: superseded - a later message of the same stream was chosen, and sets never cross;
#: reset - discarded by a reset after a backward time jump;
#: missing_required - its set was abandoned because a required stream was missing (approximate
#:   mode: it aged past the deadline while a required stream was silent);
#: flushed - left unmatched when the streams ended (Synchronizer.flush): no set can use it.
DROP_REASONS: tuple[str, ...] = (
    "queue_overflow",
    "too_old",
    "out_of_order",
    "superseded",
    "reset",
    "missing_required",
    "flushed",
)


class SyncError(FusionError):
    """Bad synchronizer settings or input: an unknown stream, a bad stamp or audio chunk."""


class DropCounter:
    """Per-stream counts of dropped messages, by reason (one of DROP_REASONS)."""

    def __init__(self, streams: Iterable[str]) -> None:
        self.by_stream: dict[str, dict[str, int]] = {s: dict.fromkeys(DROP_REASONS, 0) for s in streams}

    def count(self, stream: str, reason: str, n: int = 1) -> None:
        self.by_stream[stream][reason] += n

    def total(self, reason: str | None = None) -> int:
        return sum(n for r in self.by_stream.values() for k, n in r.items() if reason in (None, k))


@dataclass(slots=True)
class MatchedSet:
    """One message per stream, chosen together by the ApproximateTime policy."""

    stamps: dict[str, int]
    payloads: dict[str, object]


def _stream_index(index: Mapping[str, int], stream: str) -> int:
    try:
        return index[stream]
    except (KeyError, TypeError):
        raise SyncError(f"unknown stream {stream!r}; known streams: {list(index)}") from None


def _stamp(stream: str, stamp_ns: object) -> int:
    try:
        return operator.index(stamp_ns)  # type: ignore[arg-type]
    except TypeError:
        raise SyncError(f"stream {stream!r}: stamp_ns must be an integer (ns), got {stamp_ns!r}") from None


class ApproximateTimePolicy:
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
        self._queues: list[deque[tuple[int, object]]] = [deque() for _ in self.streams]
        self._aside: list[list[tuple[int, object]]] = [[] for _ in self.streams]
        self._last: list[int | None] = [None] * self._n
        self._dropped = [False] * self._n  # upstream has_dropped_messages_: not a good pivot
        self._non_empty = 0
        self._candidate: list[tuple[int, object]] | None = None
        self._cand_start = 0
        self._cand_end = 0
        self._pivot = -1  # stream index, -1 = no candidate
        self._pivot_t = 0

    def add(self, stream: str, stamp_ns: int, payload: object = None) -> list[MatchedSet]:
        """Queue one message; return the sets it completes (usually none or one)."""
        i = _stream_index(self._index, stream)
        stamp_ns = _stamp(stream, stamp_ns)
        last = self._last[i]
        if last is not None and stamp_ns < last:
            self.drops.count(stream, "out_of_order")
            return []
        self._last[i] = stamp_ns
        queue = self._queues[i]
        queue.append((stamp_ns, payload))
        out: list[MatchedSet] = []
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

    def publish_candidate(self) -> list[MatchedSet]:
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

    def drain(self) -> list[tuple[str, int, object]]:
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

    def _process(self, out: list[MatchedSet]) -> None:
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

    def _virtual_search(self, out: list[MatchedSet]) -> None:
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

    def _publish(self) -> MatchedSet:
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


# ---------------------------------------------------------------------------------------------------
# The synchronizer the node drives


@dataclass(frozen=True)
class StreamSync:
    """How one stream takes part in synchronization.

    kind: "discrete" streams (camera, lidar, radar) are matched message by message; "continuous"
    streams (audio) give each set the window of samples ending at the set's stamp.
    offset_ns: known latency subtracted from every stamp on arrival (0 when ingest already did it).
    lower_bound_ns: the least gap between two messages of the stream, if known; lets a set be
    emitted before the stream's next message arrives. A stream must honour it.
    sample_rate: frames per second of a continuous stream.
    """

    name: str
    kind: Literal["discrete", "continuous"] = "discrete"
    required: bool = False
    offset_ns: int = 0
    lower_bound_ns: int | None = None
    sample_rate: int | None = None


@dataclass(frozen=True)
class SyncSettings:
    """Synchronizer settings (config section [sync], in nanoseconds).

    mode: "reference" = one set per message of `reference`, with the nearest unused message of every
    other stream; "approximate" = ROS ApproximateTime over the streams that are alive.
    max_interval_ns: approximate mode, the widest span of a set; reference mode, the farthest a
    match may lie from the reference stamp (at most max_wait_ns; None = max_wait_ns).
    max_wait_ns: once the watermark passes a set's stamp + max_wait_ns, what has not matched is
    missing; in approximate mode, a stream silent this long drops out until it sends again, so
    there it must exceed the slowest stream's period (plus jitter).
    audio_window_ns: length W of the window [t - W, t] of a continuous stream; W * sample_rate must
    be a whole number of frames.
    """

    mode: Literal["approximate", "reference"] = "reference"
    reference: str | None = None
    queue_size: int = 10
    max_interval_ns: int | None = None
    age_penalty: float = 0.0
    max_wait_ns: int = 60_000_000
    audio_window_ns: int = 500_000_000
    audio_gap_tolerance_ns: int = 5_000_000
    time_jump_ns: int = 1_000_000_000


def settings_from_config(config: Config) -> tuple[SyncSettings, list[StreamSync]]:
    """The synchronizer settings of a loaded config. Offsets are 0: ingest already applied them."""
    sync = config.sync

    def ns(ms: float | None) -> int | None:
        return None if ms is None else round(ms * 1_000_000)

    settings = SyncSettings(
        mode=sync.mode,
        reference=sync.reference,
        queue_size=sync.queue_size,
        max_interval_ns=ns(sync.max_interval_ms),
        age_penalty=sync.age_penalty,
        max_wait_ns=round(sync.max_wait_ms * 1_000_000),
        audio_window_ns=round(sync.audio_window_ms * 1_000_000),
        audio_gap_tolerance_ns=round(sync.audio_gap_tolerance_ms * 1_000_000),
        time_jump_ns=round(sync.time_jump_ms * 1_000_000),
    )
    streams = [
        StreamSync(
            name=s.name,
            kind="continuous" if s.modality == "audio" else "discrete",
            required=s.required,
            sample_rate=s.sample_rate,
        )
        for s in config.streams
    ]
    return settings, streams


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


@dataclass(slots=True)
class FusedSet:
    """One synchronized set. stamps/payloads hold the present discrete streams; windows every
    continuous stream; presence every stream."""

    stamp_ns: int
    stamps: dict[str, int]
    payloads: dict[str, object]
    presence: dict[str, bool]
    windows: dict[str, AudioWindow] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return all(self.presence.values())

    def presence_mask(self, order: Sequence[str]) -> np.ndarray:
        """The presence mask as float32 1/0 in the given stream order (the model's modality order)."""
        try:
            return np.array([self.presence[name] for name in order], dtype=np.float32)
        except KeyError as exc:
            raise SyncError(
                f"presence_mask: unknown stream {exc.args[0]!r}; sets have {list(self.presence)}"
            ) from None


@dataclass
class SyncCounters:
    drops: DropCounter
    sets_full: int = 0
    sets_partial: int = 0
    sets_missing_required: int = 0
    time_jumps: int = 0

    def as_dict(self) -> dict[str, int]:
        """Flat names for metrics: ``sets_full``, ..., ``dropped.<stream>.<reason>``."""
        flat = {
            "sets_full": self.sets_full,
            "sets_partial": self.sets_partial,
            "sets_missing_required": self.sets_missing_required,
            "time_jumps": self.time_jumps,
        }
        for stream, reasons in self.drops.by_stream.items():
            for reason, n in reasons.items():
                flat[f"dropped.{stream}.{reason}"] = n
        return flat


class _SampleRing:
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

    def check(self, samples: object) -> None:
        """Refuse a chunk that is not a float32 frames x channels array (whatever came before it)."""
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


@dataclass(slots=True)
class _Pending:
    """A set under construction: its stamp, the matches decided so far, what is still open."""

    stamp_ns: int
    stamps: dict[str, int]
    payloads: dict[str, object]
    undecided: set[str]
    windows: dict[str, AudioWindow] = field(default_factory=dict)


class Synchronizer:
    """Aligns discrete and continuous streams by event time; see the module docstring.

    Use: ``add(stream, stamp_ns, payload)`` for every message, ``tick(now_ns)`` from a live loop
    (wall-clock now, in event-time ns) so deadlines pass while streams are silent; both return the
    finished FusedSets in stamp order. ``next_deadline_ns()`` says when a tick can next matter.

    Reference mode: each reference message opens a set at its stamp t. For every other discrete
    stream the match is the nearest unused message within the match window (max_interval_ns, at most
    max_wait_ns) of t, ties to the earlier one. It is decided as soon as the stream shows a message
    later than t (or its lower bound proves nothing nearer can come), else when the watermark passes
    t + max_wait_ns. Matches of one stream never cross: a set only uses messages later than the
    previous set's.

    Approximate mode: ApproximateTimePolicy over the required streams plus the optional ones alive;
    an optional stream whose newest stamp is more than max_wait_ns behind the watermark drops out
    (its bit is 0) and rejoins with its next message. A set the policy holds but cannot yet prove
    optimal (it waits for a stream that fell quiet) is emitted once the watermark passes its newest
    stamp + max_wait_ns. The set's stamp is the reference stream's when
    one is named and present, else its newest stamp.

    Continuous streams: a set at t gets the window (t - W, t]; it is decided once the stream covers
    t, or at the deadline. ``window_transform``, if given, is applied to each window once, when it
    is decided: the node computes the model's log-mel there, so that work happens when the audio
    arrives rather than on the path of the message that completes the set. A required stream
    missing from a set abandons the set (counted once in sets_missing_required, its messages as
    drops with reason missing_required).

    A stamp more than time_jump_ns older than its stream's previous stamp resets every queue (a log
    loop); a smaller step back drops the message, counted as out_of_order. Out-of-order input never
    raises: SyncError is only for an unknown stream or a value of the wrong type.

    ``flush()`` says the streams ended (the end of a replayed log): every open set is finished with
    what arrived, or dropped and counted, and every message no set can use is counted as flushed.

    Determinism (watermark from stamps only, i.e. no tick()): call the lag of an arrival the
    watermark just before it minus its stamp. Two arrival orders that keep each stream's order give
    the same sets if neither overflows a queue and every arrival's lag is at most
    max_wait_ns - match window (reference mode; continuous streams in both modes), assuming streams
    honour their lower_bound_ns. Stamp-sorted arrival (lag <= 0) always qualifies, so a replay at
    any speed yields the same sets. Approximate mode is order independent as long as no stream is
    declared silent (the policy's own output depends on the stamps alone). Counters may attribute a
    drop to a different reason in different orders; the sets do not differ.
    """

    def __init__(
        self,
        settings: SyncSettings,
        streams: Sequence[StreamSync],
        window_transform: Callable[[np.ndarray], np.ndarray | None] | None = None,
    ) -> None:
        self.settings = settings
        self._window_transform = window_transform
        self.streams: dict[str, StreamSync] = {}
        for s in streams:
            if s.name in self.streams:
                raise SyncError(f"stream {s.name!r} is listed twice")
            self.streams[s.name] = s
        self._check(settings)
        self._discrete = [s.name for s in streams if s.kind == "discrete"]
        self._continuous = [s.name for s in streams if s.kind == "continuous"]
        self._required = [s.name for s in streams if s.required]
        self._order = {name: i for i, name in enumerate(self.streams)}
        self.counters = SyncCounters(DropCounter(self.streams))
        wait = settings.max_wait_ns
        interval = settings.max_interval_ns
        self._window = wait if interval is None else min(interval, wait)  # reference-mode match window
        self._rings: dict[str, _SampleRing] = {}
        for name in self._continuous:
            rate = self.streams[name].sample_rate or 0
            frames = settings.audio_window_ns * rate // NS_PER_S
            cap = 2 * (frames + (wait * rate + NS_PER_S - 1) // NS_PER_S) + rate  # + 1 s of slack
            self._rings[name] = _SampleRing(name, rate, frames, settings.audio_gap_tolerance_ns, cap)
        # Reference mode: the unmatched messages of each non-reference discrete stream.
        self._queues: dict[str, deque[tuple[int, object]]] = {}
        if settings.mode == "reference":
            self._queues = {n: deque() for n in self._discrete if n != settings.reference}
        self._policy: ApproximateTimePolicy | None = None
        self._pending: deque[_Pending] = deque()
        self._last: dict[str, int] = {}
        self._epoch: int | None = None  # first stamp since start or reset
        self._stamp_mark: int | None = None
        self._clock_mark: int | None = None

    def _check(self, settings: SyncSettings) -> None:
        if settings.mode not in ("approximate", "reference"):
            raise SyncError(f"sync mode must be 'approximate' or 'reference', got {settings.mode!r}")
        if settings.queue_size < 1:
            raise SyncError(f"queue_size must be >= 1, got {settings.queue_size}")
        for key in ("max_wait_ns", "audio_gap_tolerance_ns", "time_jump_ns", "audio_window_ns"):
            if getattr(settings, key) < 0:
                raise SyncError(f"{key} must be >= 0, got {getattr(settings, key)}")
        if not any(s.kind == "discrete" for s in self.streams.values()):
            raise SyncError("the synchronizer needs at least one discrete stream")
        for s in self.streams.values():
            if s.kind not in ("discrete", "continuous"):
                raise SyncError(f"stream {s.name!r}: kind must be 'discrete' or 'continuous', got {s.kind!r}")
            if s.kind == "continuous":
                if settings.audio_window_ns <= 0:
                    raise SyncError(f"stream {s.name!r}: audio_window_ns must be > 0")
                if not s.sample_rate or s.sample_rate <= 0:
                    raise SyncError(f"stream {s.name!r}: a continuous stream needs a sample_rate > 0")
                if settings.audio_window_ns * s.sample_rate % NS_PER_S:
                    raise SyncError(
                        f"stream {s.name!r}: audio_window_ns={settings.audio_window_ns} is not a whole "
                        f"number of frames at {s.sample_rate} Hz"
                    )
            elif s.sample_rate is not None:
                raise SyncError(f"stream {s.name!r}: only continuous streams have a sample_rate")
        if settings.mode == "reference":
            ref = self.streams.get(settings.reference or "")
            if ref is None:
                raise SyncError(
                    f"reference mode needs a reference stream; {settings.reference!r} is not one of "
                    f"{list(self.streams)}"
                )
            if ref.kind != "discrete":
                raise SyncError(f"reference stream {ref.name!r} is continuous; it must be discrete")
        elif settings.reference is not None and settings.reference not in self.streams:
            raise SyncError(f"reference {settings.reference!r} is not one of {list(self.streams)}")

    # -- public API -----------------------------------------------------------------------------------

    def add(self, stream: str, stamp_ns: int, payload: object = None) -> list[FusedSet]:
        """Take one message (a continuous stream's payload is a float32 frames x channels chunk,
        stamped at its first frame); return the sets that are now finished."""
        config = self.streams.get(stream) if isinstance(stream, str) else None
        if config is None:
            raise SyncError(f"unknown stream {stream!r}; known streams: {list(self.streams)}")
        stamp = _stamp(stream, stamp_ns) - config.offset_ns
        if config.kind == "continuous":
            self._rings[stream].check(payload)  # before any state changes
        out: list[FusedSet] = []
        last = self._last.get(stream)
        if last is not None and stamp < last:
            if last - stamp <= self.settings.time_jump_ns:
                self.counters.drops.count(stream, "out_of_order")  # it would cross an emitted set
                return out
            self._reset()
        self._last[stream] = stamp
        if self._epoch is None:
            self._epoch = stamp
        if self._stamp_mark is None or stamp > self._stamp_mark:
            self._stamp_mark = stamp
        if config.kind == "continuous":
            evicted = self._rings[stream].add(stamp, payload)  # type: ignore[arg-type]
            self.counters.drops.count(stream, "queue_overflow", evicted)
        elif self.settings.mode == "reference":
            self._add_reference_mode(stream, stamp, payload)
        else:
            self._add_approximate_mode(stream, stamp, payload)
        return self._advance(out)

    def tick(self, now_ns: int) -> list[FusedSet]:
        """Advance the watermark to now_ns (event-time ns) and return the sets whose deadline passed."""
        try:
            now = operator.index(now_ns)
        except TypeError:
            raise SyncError(f"tick: now_ns must be an integer (ns), got {now_ns!r}") from None
        if self._clock_mark is not None and now < self._clock_mark - self.settings.time_jump_ns:
            self._reset()
        if self._clock_mark is None or now > self._clock_mark:
            self._clock_mark = now
        return self._advance([])

    def flush(self) -> list[FusedSet]:
        """The streams ended (no message follows): finish every open set with what arrived, or drop
        it counted (a required stream missing), and count each discrete message no set can use as
        flushed. Afterwards nothing discrete is held; a later message is matched as usual."""
        if self._policy is not None:
            self._flush_policy()
        out = self._advance([], end=True)
        for name, queue in self._queues.items():
            self.counters.drops.count(name, "flushed", len(queue))
            queue.clear()
        return out

    def next_deadline_ns(self) -> int | None:
        """The earliest watermark at which tick() can finish a set or drop a silent stream."""
        wait = self.settings.max_wait_ns
        times = [p.stamp_ns + wait + 1 for p in self._pending if p.undecided]
        if self._policy is not None and self._epoch is not None:
            times += [
                self._last.get(name, self._epoch) + wait + 1
                for name in self._policy.streams
                if not self.streams[name].required
            ]
            if self._policy.candidate_end_ns is not None:
                times.append(self._policy.candidate_end_ns + wait + 1)
        return min(times, default=None)

    def depths(self) -> dict[str, int]:
        """Messages each stream holds now: queued, or matched into a set not finished yet (audio:
        chunks in the ring). Every discrete message fed is in a set emitted, dropped (counted) or here."""
        held = dict.fromkeys(self.streams, 0)
        if self._policy is not None:
            held.update(self._policy.depths())
        held.update({n: len(q) for n, q in self._queues.items()})
        held.update({n: len(r.chunks) for n, r in self._rings.items()})
        for pending in self._pending:
            for name in pending.stamps:
                held[name] += 1
        return held

    @property
    def watermark_ns(self) -> int | None:
        marks = [m for m in (self._stamp_mark, self._clock_mark) if m is not None]
        return max(marks, default=None)

    # -- reference mode ---------------------------------------------------------------------------------

    def _add_reference_mode(self, stream: str, stamp: int, payload: object) -> None:
        if stream == self.settings.reference:
            open_streams = set(self._queues) | set(self._rings)
            self._pending.append(_Pending(stamp, {stream: stamp}, {stream: payload}, open_streams))
            if len(self._pending) > self.settings.queue_size:
                self._discard(self._pending.popleft(), "queue_overflow")
            return
        queue = self._queues[stream]
        queue.append((stamp, payload))
        if len(queue) > self.settings.queue_size:
            queue.popleft()
            self.counters.drops.count(stream, "queue_overflow")

    def _decide_discrete(self, name: str, pending: _Pending, deadline: bool) -> bool:
        """Decide stream `name`'s match for `pending` if its messages (or the deadline) allow."""
        queue = self._queues[name]
        t = pending.stamp_ns
        while len(queue) > 1 and queue[1][0] <= t:
            queue.popleft()  # a later message is at least as near to this and every later reference
            self.counters.drops.count(name, "superseded")
        before = queue[0] if queue and queue[0][0] <= t else None
        after_index = 0 if before is None else 1
        after = queue[after_index] if len(queue) > after_index else None
        if after is None:
            bound = self.streams[name].lower_bound_ns or 0
            proven = before is not None and before[0] + bound - t >= t - before[0]
            if not (proven or deadline):
                return False
        best = None
        for candidate in (before, after):
            if candidate is None or abs(candidate[0] - t) > self._window:
                continue
            if best is None or abs(candidate[0] - t) < abs(best[0] - t):
                best = candidate
        if best is not None:
            while queue[0] is not best:
                queue.popleft()
                self.counters.drops.count(name, "superseded")
            queue.popleft()
            pending.stamps[name] = best[0]
            pending.payloads[name] = best[1]
        pending.undecided.discard(name)
        return True

    # -- approximate mode -------------------------------------------------------------------------------

    def _add_approximate_mode(self, stream: str, stamp: int, payload: object) -> None:
        self._refresh_policy()
        if self._policy is not None and stream in self._policy.streams:
            self._take_matched(self._policy.add(stream, stamp, payload))
        else:  # its own stamp is already past the deadline: it cannot rejoin with this message
            self.counters.drops.count(stream, "too_old")

    def _alive(self, name: str, mark: int) -> bool:
        assert self._epoch is not None
        return mark - self._last.get(name, self._epoch) <= self.settings.max_wait_ns

    def _refresh_policy(self) -> None:
        """Rebuild the policy when the set of live streams changed; while a required stream is
        silent, drop what is older than the deadline horizon (no set can use it)."""
        mark = self.watermark_ns
        if mark is None or self._epoch is None:
            return
        wait = self.settings.max_wait_ns
        while self._policy is not None:
            end = self._policy.candidate_end_ns
            if end is None or mark - end <= wait:
                break
            # Unproven only because a stream fell quiet: the set is still the best one seen.
            self._take_matched(self._policy.publish_candidate())
        active = tuple(n for n in self._discrete if self.streams[n].required or self._alive(n, mark))
        required_silent = any(not self._alive(n, mark) for n in self._discrete if self.streams[n].required)
        if self._policy is not None and active == self._policy.streams and not required_silent:
            return
        if self._policy is None and not active:
            return  # every discrete stream is silent: nothing to match
        left = self._policy.drain() if self._policy is not None else []
        if self._policy is None or active != self._policy.streams:
            self._policy = self._new_policy(active) if active else None
        horizon = mark - wait
        for name, stamp, payload in sorted(left, key=lambda m: (m[1], self._order[m[0]])):
            if name not in active:
                self.counters.drops.count(name, "too_old")
            elif required_silent and stamp < horizon:
                self.counters.drops.count(name, "missing_required")
            else:
                assert self._policy is not None
                self._take_matched(self._policy.add(name, stamp, payload))

    def _new_policy(self, streams: tuple[str, ...]) -> ApproximateTimePolicy:
        s = self.settings
        bounds = {n: self.streams[n].lower_bound_ns or 0 for n in streams}
        return ApproximateTimePolicy(
            streams, s.queue_size, s.max_interval_ns, s.age_penalty, bounds, self.counters.drops
        )

    def _flush_policy(self) -> None:
        """The streams ended: take every set the policy can still form. Its best unproven set is
        optimal now (nothing later can come). Then a stream whose queue ran dry has ended: without it
        (an optional one) the rest is matched again; without a required one no set can form."""
        policy = self._policy
        self._policy = None
        while policy is not None:
            while policy.candidate_end_ns is not None:
                self._take_matched(policy.publish_candidate())
            left = policy.drain()
            present = tuple(n for n in policy.streams if any(m[0] == n for m in left))
            ended_required = any(self.streams[n].required for n in policy.streams if n not in present)
            policy = self._new_policy(present) if present and not ended_required else None
            for name, stamp, payload in sorted(left, key=lambda m: (m[1], self._order[m[0]])):
                if policy is None:
                    self.counters.drops.count(name, "flushed")
                else:
                    self._take_matched(policy.add(name, stamp, payload))

    def _take_matched(self, matched: list[MatchedSet]) -> None:
        ref = self.settings.reference
        for m in matched:
            t = m.stamps[ref] if ref in m.stamps else max(m.stamps.values())
            self._pending.append(_Pending(t, m.stamps, m.payloads, set(self._rings)))

    # -- shared: deadlines, emission, pruning, reset ------------------------------------------------------

    def _advance(self, out: list[FusedSet], end: bool = False) -> list[FusedSet]:
        """Decide and emit what the watermark allows; `end` (a flush): every deadline has passed."""
        if self.settings.mode == "approximate" and not end:
            self._refresh_policy()  # the watermark may have moved past a stream's deadline
        mark = self.watermark_ns
        if mark is None:
            return out
        horizon = mark - self.settings.max_wait_ns
        for name in [*self._queues, *self._rings]:
            for pending in self._pending:
                if name not in pending.undecided:
                    continue
                deadline = end or pending.stamp_ns < horizon  # mark > stamp + max_wait
                if not self._decide(name, pending, deadline):
                    break  # a stream decides its sets in order
        while self._pending and not self._pending[0].undecided:
            fused = self._finish(self._pending.popleft())
            if fused is not None:
                out.append(fused)
        for name, queue in self._queues.items():
            while queue and queue[0][0] < horizon - self._window:
                queue.popleft()  # no pending or future reference can match it
                self.counters.drops.count(name, "too_old")
        for ring in self._rings.values():
            ring.prune(horizon - 2 * self.settings.audio_window_ns)
        return out

    def _decide(self, name: str, pending: _Pending, deadline: bool) -> bool:
        ring = self._rings.get(name)
        if ring is None:
            return self._decide_discrete(name, pending, deadline)
        t = pending.stamp_ns
        if not (deadline or ring.reaches_past(t)):
            return False
        samples, last_ns = ring.window(t) or (None, None)
        if samples is not None and self._window_transform is not None:
            samples = self._window_transform(samples)  # None: unusable, the window counts as missing
        start = t - self.settings.audio_window_ns
        pending.windows[name] = AudioWindow(start, t, samples, None if samples is None else last_ns)
        pending.undecided.discard(name)
        return True

    def _finish(self, pending: _Pending) -> FusedSet | None:
        presence = {name: name in pending.stamps for name in self._discrete}
        presence.update({name: pending.windows[name].samples is not None for name in self._continuous})
        presence = {name: presence[name] for name in self.streams}  # config order
        if not all(presence[name] for name in self._required):
            self.counters.sets_missing_required += 1
            self._discard(pending, "missing_required")
            return None
        if all(presence.values()):
            self.counters.sets_full += 1
        else:
            self.counters.sets_partial += 1
        return FusedSet(pending.stamp_ns, pending.stamps, pending.payloads, presence, pending.windows)

    def _discard(self, pending: _Pending, reason: str) -> None:
        for name in pending.stamps:
            self.counters.drops.count(name, reason)

    def _reset(self) -> None:
        """A backward time jump: forget everything queued (counted as reset) and start afresh."""
        drops = self.counters.drops
        for pending in self._pending:
            self._discard(pending, "reset")
        self._pending.clear()
        for name, queue in self._queues.items():
            drops.count(name, "reset", len(queue))
            queue.clear()
        for name, ring in self._rings.items():
            drops.count(name, "reset", ring.clear())
        if self._policy is not None:
            for name, _, _ in self._policy.drain():
                drops.count(name, "reset")
            self._policy = None
        self._last.clear()
        self._epoch = None
        self._stamp_mark = None
        self._clock_mark = None
        self.counters.time_jumps += 1
