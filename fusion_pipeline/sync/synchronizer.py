"""Event-time synchronization of discrete and continuous streams: pure, no sockets, no clock reads.

Two layers:

- :class:`~fusion_pipeline.sync.policy.ApproximateTimePolicy` (sync/policy.py) reproduces ROS 2
  message_filters' C++ ``ApproximateTime`` policy: among the sets that follow the last emitted set, it
  emits the one with the smallest time span, as soon as later messages prove that no better set can
  come. It knows nothing of deadlines.
- :class:`Synchronizer` is what the sync stage (sync/stage.py) drives. It adds what ROS lacks for a vehicle:
  required and optional streams, a deadline (``max_wait_ns``) after which a set is emitted without a
  silent optional stream, audio windows cut sample-accurately from a ring of chunks, a generic
  stream's nearest sample or window of samples (sync/sampled.py), reset on a backward time jump, and a
  counter for every dropped message with its reason.

Time convention: every stamp is int64 nanoseconds of EVENT time (capture time). The watermark is the
newest stamp seen on any stream, or the ``now_ns`` a live caller passes to :meth:`Synchronizer.tick`,
whichever is later; deadlines advance with the watermark only, so a replay at any speed gives the
same sets (see "Determinism" in :class:`Synchronizer`).

Settings (offsets, modes, windows) are in sync/settings.py, the audio ring in sync/audio.py, the
generic streams' buffer in sync/sampled.py.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, cast

import numpy as np

from fusion_pipeline.protocol import NS_PER_S
from fusion_pipeline.sync.audio import AudioWindow, SampleRing
from fusion_pipeline.sync.errors import SyncError
from fusion_pipeline.sync.policy import ApproximateTimePolicy, DropCounter, MatchedSet, P, stamp_of
from fusion_pipeline.sync.sampled import SampleBuffer, TakenSamples
from fusion_pipeline.sync.settings import SampledSync, StreamSync, SyncSettings

__all__ = ["FusedSet", "SyncCounters", "Synchronizer"]


@dataclass(slots=True)
class FusedSet(Generic[P]):
    """One synchronized set. stamps/payloads hold the present discrete streams; windows every
    continuous stream; taken the present sampled streams; presence every stream."""

    stamp_ns: int
    stamps: dict[str, int]
    payloads: dict[str, P]
    presence: dict[str, bool]
    windows: dict[str, AudioWindow] = field(default_factory=dict)
    taken: dict[str, TakenSamples] = field(default_factory=dict)

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


@dataclass(slots=True)
class _Pending(Generic[P]):
    """A set under construction: its stamp, the matches decided so far, what is still open."""

    stamp_ns: int
    stamps: dict[str, int]
    payloads: dict[str, P]
    undecided: set[str]
    windows: dict[str, AudioWindow] = field(default_factory=dict)
    taken: dict[str, TakenSamples] = field(default_factory=dict)


class Synchronizer(Generic[P]):
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
    t, or at the deadline. Sampled streams (generic): a set at t gets the nearest sample or the last
    samples up to t (sync/sampled.py), decided once a later sample arrived, or at the deadline; a
    sample may serve several sets, and one no set takes is not a drop.
    ``window_transform(stream, samples, first)``, if given, is applied to each audio window once, when
    it is decided (`first`: the index of the window's first frame in the stream, SampleRing.window):
    the sync stage computes the model's log-mel there, so that work happens when the audio arrives
    rather than on the path of the message that completes the set. A required stream
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
        window_transform: Callable[[str, np.ndarray, int], np.ndarray | None] | None = None,
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
        self._sampled = [s.name for s in streams if s.kind == "sampled"]
        self._required = [s.name for s in streams if s.required]
        self._order = {name: i for i, name in enumerate(self.streams)}
        self.counters = SyncCounters(DropCounter(self.streams))
        wait = settings.max_wait_ns
        interval = settings.max_interval_ns
        self._window = wait if interval is None else min(interval, wait)  # reference-mode match window
        self._rings: dict[str, SampleRing] = {}
        for name in self._continuous:
            rate = self.streams[name].sample_rate or 0
            frames = settings.audio_window_ns * rate // NS_PER_S
            cap = 2 * (frames + (wait * rate + NS_PER_S - 1) // NS_PER_S) + rate  # + 1 s of slack
            self._rings[name] = SampleRing(name, rate, frames, settings.audio_gap_tolerance_ns, cap)
        self._buffers: dict[str, SampleBuffer] = {}
        for name in self._sampled:
            sampled = self.streams[name].sampled
            assert sampled is not None  # _check
            self._buffers[name] = SampleBuffer(name, sampled, self._buffer_capacity(name, sampled))
        # Reference mode: the unmatched messages of each non-reference discrete stream.
        self._queues: dict[str, deque[tuple[int, P]]] = {}
        if settings.mode == "reference":
            self._queues = {n: deque() for n in self._discrete if n != settings.reference}
        self._policy: ApproximateTimePolicy[P] | None = None
        self._all_alive_until: int | None = None  # approximate mode: see _refresh_policy
        self._pending: deque[_Pending[P]] = deque()
        self._last: dict[str, int] = {}
        self._epoch: int | None = None  # first stamp since start or reset
        self._emitted_ns: int | None = None  # the stamp of the last set emitted since start or reset
        self._stamp_mark: int | None = None
        self._clock_mark: int | None = None

    def _buffer_capacity(self, name: str, sampled: SampledSync) -> int:
        """Samples a generic stream's buffer may hold: twice what the deadline and the window span at the
        stream's least sample spacing (its lower bound, else 1 ms), plus 1,000 of slack."""
        spacing = self.streams[name].lower_bound_ns or 1_000_000
        reach = self.settings.max_wait_ns + max(sampled.span_ns, sampled.tolerance_ns)
        return 2 * (reach // spacing + sampled.samples) + 1000

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
            if s.kind not in ("discrete", "continuous", "sampled"):
                raise SyncError(
                    f"stream {s.name!r}: kind must be 'discrete', 'continuous' or 'sampled', got {s.kind!r}"
                )
            if (s.kind == "sampled") != (s.sampled is not None):
                raise SyncError(
                    f"stream {s.name!r}: a sampled stream, and only one, has its `sampled` settings"
                )
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
                raise SyncError(f"reference stream {ref.name!r} is {ref.kind}; it must be discrete")
        elif settings.reference is not None and settings.reference not in self.streams:
            raise SyncError(f"reference {settings.reference!r} is not one of {list(self.streams)}")

    # -- public API -----------------------------------------------------------------------------------

    def add(self, stream: str, stamp_ns: int, payload: P | np.ndarray | None = None) -> list[FusedSet[P]]:
        """Take one message (a continuous stream's payload is a float32 frames x channels chunk,
        stamped at its first frame; a sampled one's its sample, an array; a discrete one's is a P,
        handed back in its set, None for a stamp-only caller); return the sets that are now finished."""
        config = self.streams.get(stream) if isinstance(stream, str) else None
        if config is None:
            raise SyncError(f"unknown stream {stream!r}; known streams: {list(self.streams)}")
        stamp = stamp_of(stream, stamp_ns) - config.offset_ns
        # A bad audio chunk is refused before any state changes.
        chunk = self._rings[stream].check(payload) if config.kind == "continuous" else None
        sample = self._buffers[stream].check(payload) if config.kind == "sampled" else None
        out: list[FusedSet[P]] = []
        last = self._last.get(stream)
        if last is not None and stamp < last:
            if last - stamp <= self.settings.time_jump_ns:
                self.counters.drops.count(stream, "out_of_order")  # it would cross an emitted set
                return out
            self._reset()
        if last is None and self._epoch is not None and stamp < self._epoch:
            # A stream counted alive since the epoch starts before it: its newest stamp moved back,
            # which the shortcut in _refresh_policy assumes never happens.
            self._all_alive_until = None
        self._last[stream] = stamp
        if self._epoch is None:
            self._epoch = stamp
        if self._stamp_mark is None or stamp > self._stamp_mark:
            self._stamp_mark = stamp
        if chunk is not None:
            evicted = self._rings[stream].add(stamp, chunk)
            self.counters.drops.count(stream, "queue_overflow", evicted)
        elif sample is not None:
            evicted = self._buffers[stream].add(stamp, sample)
            self.counters.drops.count(stream, "queue_overflow", evicted)
        elif self.settings.mode == "reference":
            self._add_reference_mode(stream, stamp, cast(P, payload))
        else:
            self._add_approximate_mode(stream, stamp, cast(P, payload))
        return self._advance(out)

    def tick(self, now_ns: int) -> list[FusedSet[P]]:
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

    def flush(self) -> list[FusedSet[P]]:
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
        chunks in the ring; generic: samples in the buffer). Every discrete message fed is in a set
        emitted, dropped (counted) or here."""
        held = dict.fromkeys(self.streams, 0)
        if self._policy is not None:
            held.update(self._policy.depths())
        held.update({n: len(q) for n, q in self._queues.items()})
        held.update({n: len(r.chunks) for n, r in self._rings.items()})
        held.update({n: len(b.samples) for n, b in self._buffers.items()})
        for pending in self._pending:
            for name in pending.stamps:
                held[name] += 1
        return held

    @property
    def watermark_ns(self) -> int | None:
        marks = [m for m in (self._stamp_mark, self._clock_mark) if m is not None]
        return max(marks, default=None)

    # -- reference mode ---------------------------------------------------------------------------------

    def _add_reference_mode(self, stream: str, stamp: int, payload: P) -> None:
        if stream == self.settings.reference:
            open_streams = set(self._queues) | set(self._rings) | set(self._buffers)
            # More than queue_size open sets: _advance decides the oldest now, with what it has.
            self._pending.append(_Pending(stamp, {stream: stamp}, {stream: payload}, open_streams))
            return
        queue = self._queues[stream]
        queue.append((stamp, payload))
        if len(queue) > self.settings.queue_size:
            queue.popleft()
            self.counters.drops.count(stream, "queue_overflow")

    def _decide_discrete(self, name: str, pending: _Pending[P], deadline: bool) -> bool:
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

    def _unmatched_reason(self, stamp: int, mark: int) -> str:
        """Why a message no reference can match any more is dropped: no_reference while the reference is
        silent (not started, or behind the other streams by more than a time jump: an outage) and none
        came near it; else too_old (a slow link or a clock offset, which max_wait_ms or offset_ms fix)."""
        last = self._last.get(self.settings.reference or "")  # reference mode: the reference is set
        silent = last is None or mark - last > self.settings.time_jump_ns
        near_one = last is not None and stamp <= last + self._window
        return "no_reference" if silent and not near_one else "too_old"

    # -- approximate mode -------------------------------------------------------------------------------

    def _add_approximate_mode(self, stream: str, stamp: int, payload: P) -> None:
        self._refresh_policy()
        if self._policy is not None and stream in self._policy.streams:
            self._take_matched(self._policy.add(stream, stamp, payload))
        else:  # its own stamp is already past the deadline: it cannot rejoin with this message
            self.counters.drops.count(stream, "too_old")

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
        if self._policy is not None and self._all_alive_until is not None and mark <= self._all_alive_until:
            return  # every discrete stream is alive, so the policy already spans them all
        newest = {n: self._last.get(n, self._epoch) for n in self._discrete}
        silent = {n for n, last in newest.items() if mark - last > wait}
        # A stream's newest stamp only grows until a reset, which drops the policy: while the mark
        # stays within max_wait of the oldest of them, no stream can have fallen silent.
        self._all_alive_until = None if silent else min(newest.values()) + wait
        active = tuple(n for n in self._discrete if n not in silent or self.streams[n].required)
        required_silent = any(self.streams[n].required for n in silent)
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

    def _new_policy(self, streams: tuple[str, ...]) -> ApproximateTimePolicy[P]:
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

    def _take_matched(self, matched: list[MatchedSet[P]]) -> None:
        ref = self.settings.reference
        for m in matched:
            t = m.stamps[ref] if ref in m.stamps else max(m.stamps.values())
            self._pending.append(_Pending(t, m.stamps, m.payloads, set(self._rings) | set(self._buffers)))

    # -- shared: deadlines, emission, pruning, reset ------------------------------------------------------

    def _advance(self, out: list[FusedSet[P]], end: bool = False) -> list[FusedSet[P]]:
        """Decide and emit what the watermark allows; `end` (a flush): every deadline has passed."""
        if self.settings.mode == "approximate" and not end:
            self._refresh_policy()  # the watermark may have moved past a stream's deadline
        mark = self.watermark_ns
        if mark is None:
            return out
        horizon = mark - self.settings.max_wait_ns
        # Open sets beyond queue_size are decided now (a silent optional stream, a max_wait longer than
        # queue_size reference periods): dropping them would stall the output, not degrade it.
        overflow = len(self._pending) - self.settings.queue_size
        for name in [*self._queues, *self._rings, *self._buffers]:
            for i, pending in enumerate(self._pending):
                if name not in pending.undecided:
                    continue
                deadline = end or pending.stamp_ns < horizon or i < overflow  # mark > stamp + max_wait
                if not self._decide(name, pending, deadline):
                    break  # a stream decides its sets in order
        while self._pending and not self._pending[0].undecided:
            fused = self._finish(self._pending.popleft())
            if fused is not None:
                out.append(fused)
        for name, queue in self._queues.items():
            while queue and queue[0][0] < horizon - self._window:
                stamp = queue.popleft()[0]  # no pending or future reference can match it
                self.counters.drops.count(name, self._unmatched_reason(stamp, mark))
        for ring in self._rings.values():
            ring.prune(horizon - 2 * self.settings.audio_window_ns)
        for buffer in self._buffers.values():
            buffer.prune(horizon)
        return out

    def _decide(self, name: str, pending: _Pending[P], deadline: bool) -> bool:
        buffer = self._buffers.get(name)
        if buffer is not None:
            if not (deadline or buffer.reaches_past(pending.stamp_ns)):
                return False
            taken = buffer.take(pending.stamp_ns)
            if taken is not None:
                pending.taken[name] = taken
            pending.undecided.discard(name)
            return True
        ring = self._rings.get(name)
        if ring is None:
            return self._decide_discrete(name, pending, deadline)
        t = pending.stamp_ns
        if not (deadline or ring.reaches_past(t)):
            return False
        samples, last_ns, first = ring.window(t) or (None, None, 0)
        if samples is not None and self._window_transform is not None:
            samples = self._window_transform(name, samples, first)  # None: unusable, counts as missing
        start = t - self.settings.audio_window_ns
        pending.windows[name] = AudioWindow(start, t, samples, None if samples is None else last_ns)
        pending.undecided.discard(name)
        return True

    def _finish(self, pending: _Pending[P]) -> FusedSet[P] | None:
        presence = {name: name in pending.stamps for name in self._discrete}
        presence.update({name: pending.windows[name].samples is not None for name in self._continuous})
        presence.update({name: name in pending.taken for name in self._sampled})
        presence = {name: presence[name] for name in self.streams}  # config order
        if not all(presence[name] for name in self._required):
            self.counters.sets_missing_required += 1
            self._discard(pending, "missing_required")
            return None
        if self._emitted_ns is not None and pending.stamp_ns < self._emitted_ns:
            # Approximate mode: an optional stream rejoining with a message older than sets already out
            # matched it into a set that would go back in time. Sets leave in stamp order.
            self._discard(pending, "too_old")
            return None
        self._emitted_ns = pending.stamp_ns
        if all(presence.values()):
            self.counters.sets_full += 1
        else:
            self.counters.sets_partial += 1
        return FusedSet(
            pending.stamp_ns, pending.stamps, pending.payloads, presence, pending.windows, pending.taken
        )

    def _discard(self, pending: _Pending[P], reason: str) -> None:
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
        for name, buffer in self._buffers.items():
            drops.count(name, "reset", buffer.clear())
        if self._policy is not None:
            for name, _, _ in self._policy.drain():
                drops.count(name, "reset")
            self._policy = None
        self._all_alive_until = None
        self._last.clear()
        self._epoch = None
        self._emitted_ns = None
        self._stamp_mark = None
        self._clock_mark = None
        self.counters.time_jumps += 1
