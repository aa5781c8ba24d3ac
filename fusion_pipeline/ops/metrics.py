"""Run statistics: latency per stage from the results' stage stamps, set presence, and node counters.

Pure (no sockets, no clock): the supervisor feeds `ResultStats` every result message with the time it
received it, and `CounterTotals` every heartbeat; both produce plain dicts for the status line, the final
summary and ``--summary-json``.

Latency vocabulary (all from the wall-clock stamps in ``meta.stages``, docs/PROTOCOL.md section 8):

- ``end_to_end``: capture (the reference stamp) to the result's publish: when a consumer can have it;
- ``delivered``: capture to the result's arrival at this consumer (end_to_end plus the last hop and the
  consumer's own scheduling);
- ``model``: inference_start to inference_end (the onnxruntime call);
- ``sync_wait``: ingest_out of the reference message to sync_in, the arrival of the message (or the
  deadline) that completed the set: the designed wait for the other sensors' matching messages;
- ``overhead``: end_to_end minus model minus sync_wait: what the pipeline itself costs (transport,
  ingest preprocessing, set building, queueing, scheduling);
- one entry per pair of consecutive stages present, e.g. ``ingest_in->ingest_out``.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import Any

import numpy as np

from fusion_pipeline.protocol import (
    CAPTURE,
    INFERENCE_END,
    INFERENCE_START,
    INGEST_OUT,
    PUBLISH,
    SYNC_IN,
)
from fusion_pipeline.protocol import STAGES as PIPELINE_STAGES
from fusion_pipeline.transport.wire import Sample

__all__ = [
    "KEPT_RESULTS",
    "STAGES",
    "CounterTotals",
    "ResultRatio",
    "ResultStats",
    "is_drop_counter",
    "percentiles",
    "prefixed",
    "unbound_held",
]

#: Results behind the latency percentiles (the most recent ones): an hour at 10 sets/s. A daemon runs for
#: months, so nothing here grows with the run's length.
KEPT_RESULTS = 36_000

#: When the consumer that measures received a result: a stage of its own after the pipeline's.
RECEIVED = "received"
#: Stage stamps in pipeline order, the consumer's last.
STAGES: tuple[str, ...] = (*PIPELINE_STAGES, RECEIVED)

_DROP_PREFIXES = ("dropped", "malformed_", "schema_", "rejected_")
_DROP_NAMES = frozenset(
    {
        "outage",
        "late",
        "skipped",
        "stale",
        "bad_sets",
        "sets_lost",
        "seq_lost",
        "duplicates",
        "out_of_order",
        "seq_jumps",
        "sets_missing_required",
        "reconnects",  # libzmq dropped a connection (a frame over the size limit): what was in flight is lost
    }
)


class Ring:
    """The last `size` integers (ns), oldest first, in one preallocated int64 array: 8 bytes a value
    where a deque of Python ints takes about 40, and a daemon keeps an hour of results."""

    def __init__(self, size: int) -> None:
        self._values = np.empty(size, np.int64)
        self._added = 0

    def append(self, value: int) -> None:
        self._values[self._added % len(self._values)] = value
        self._added += 1

    def __len__(self) -> int:
        return min(self._added, len(self._values))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        size = len(self._values)
        if self._added <= size:
            ordered = self._values[: self._added].copy()
        else:  # wrapped: the oldest value is where the next one goes
            ordered = np.roll(self._values, -(self._added % size))
        return ordered if dtype is None else ordered.astype(dtype, copy=False)


def unbound_held(held: Mapping[str, int], sets: int) -> str:
    """How many of `sets` held each generic stream that feeds no model input (the synchronizer's
    ``unbound_held.STREAM``): no result says it, so the summaries do."""
    return ", ".join(f"{stream} in {n} of {sets} sets" for stream, n in sorted(held.items()))


def is_drop_counter(name: str) -> bool:
    """True for counters that count lost or refused data (the summary's "drops by reason")."""
    return name in _DROP_NAMES or name.startswith(_DROP_PREFIXES)


def percentiles(values_ns: Iterable[int]) -> dict[str, float]:
    """n, p50, p95, p99, mean and max of durations in ns, reported in ms."""
    v = np.asarray(values_ns if isinstance(values_ns, Ring) else list(values_ns), dtype=np.float64) / 1e6
    if not len(v):
        return {"n": 0}
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {
        "n": int(len(v)),
        "p50": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(v.mean()), 3),
        "max": round(float(v.max()), 3),
    }


def _present(presence: list[int], bit: int | None) -> bool:
    return bit is not None and bit < len(presence) and bool(presence[bit])


class ResultStats:
    """Accumulates result messages: per-stage latencies, full/partial sets, provider.

    `streams` are the config's: a set is full when all of them are present (a result's meta.streams
    names the stream behind each presence bit).
    Results captured before `since_ns` are counted but left out of the latency figures (start-up). The
    figures cover the last `kept` results. `log_time`: the stamps are a log's capture times (a replay),
    not comparable with the wall-clock stages, so the figures measured from the capture (end_to_end,
    delivered, overhead, capture->ingest_in) are left out and the stages start at ingest_in.
    """

    def __init__(
        self,
        streams: Iterable[str],
        since_ns: int = 0,
        recent: int = 50,
        kept: int = KEPT_RESULTS,
        log_time: bool = False,
    ) -> None:
        self.log_time = log_time
        self.configured = list(streams)
        self.since_ns = since_ns
        self.results = 0
        self.timed = 0  # results captured after since_ns: those in the latency figures
        self.full = 0
        self.partial = 0
        self.missing: Counter[str] = Counter()
        self.provider = ""
        self.kept = kept
        self.durations: dict[str, Ring] = {}
        self._recent_model: deque[int] = deque(maxlen=recent)
        self._recent_e2e: deque[int] = deque(maxlen=recent)

    def add(self, result: Sample, received_ns: int) -> dict[str, int]:
        """Count a result; its stage durations in ns, or {} when it was captured before since_ns."""
        self.results += 1
        presence = [int(x) for x in np.asarray(result.arrays.get("presence", ())).ravel()]
        bits = result.meta.get("streams")
        bit_of = {name: i for i, name in enumerate(bits)} if isinstance(bits, list) else {}
        absent = [s for s in self.configured if not _present(presence, bit_of.get(s))]
        self.missing.update(absent)
        if absent:
            self.partial += 1
        else:
            self.full += 1
        self.provider = str(result.meta.get("provider", self.provider))
        raw = result.meta.get("stages")
        stages = {k: int(v) for k, v in raw.items() if isinstance(v, int)} if isinstance(raw, Mapping) else {}
        stages[RECEIVED] = received_ns
        if self.log_time:
            stages.pop(CAPTURE, None)
        else:
            stages.setdefault(CAPTURE, result.stamp_ns)
        derived = self._derived(stages)
        if "model" in derived:
            self._recent_model.append(derived["model"])
        if "end_to_end" in derived:
            self._recent_e2e.append(derived["end_to_end"])
        if result.stamp_ns < self.since_ns:
            return {}
        self.timed += 1
        for name, value in derived.items():
            if name not in self.durations:
                self.durations[name] = Ring(self.kept)
            self.durations[name].append(value)
        return derived

    @staticmethod
    def _derived(stages: dict[str, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        present = [s for s in STAGES if s in stages]
        for a, b in pairwise(present):
            out[f"{a}->{b}"] = stages[b] - stages[a]
        if CAPTURE in stages:
            out["end_to_end"] = stages.get(PUBLISH, stages[RECEIVED]) - stages[CAPTURE]
            out["delivered"] = stages[RECEIVED] - stages[CAPTURE]
        if INFERENCE_START in stages and INFERENCE_END in stages:
            out["model"] = stages[INFERENCE_END] - stages[INFERENCE_START]
        if INGEST_OUT in stages and SYNC_IN in stages:
            out["sync_wait"] = max(0, stages[SYNC_IN] - stages[INGEST_OUT])
        if "end_to_end" in out:
            out["overhead"] = out["end_to_end"] - out.get("model", 0) - out.get("sync_wait", 0)
        return out

    def recent_ms(self) -> tuple[float | None, float | None]:
        """Median model and end-to-end latency of the most recent results, in ms (status line)."""
        model = float(np.median(self._recent_model)) / 1e6 if self._recent_model else None
        e2e = float(np.median(self._recent_e2e)) / 1e6 if self._recent_e2e else None
        return model, e2e

    def latency(self) -> dict[str, dict[str, float]]:
        order = [f"{a}->{b}" for a, b in pairwise(STAGES)]
        keys = sorted(self.durations, key=lambda k: (order.index(k) if k in order else len(order), k))
        return {k: percentiles(self.durations[k]) for k in keys}

    def summary(self) -> dict[str, Any]:
        return {
            "results": self.results,
            "results_timed": self.timed,
            "sets_full": self.full,
            "sets_partial": self.partial,
            "missing": dict(self.missing),
            "provider": self.provider,
            "latency_ms": self.latency(),
        }


class ResultRatio:
    """The share of reference messages that yielded a result, in bounded memory.

    Marks are (t_ns, messages so far) from the reference stream's ingest heartbeats after the warm-up. The
    ratio runs from the first mark to the last one at or before a given time (messages after it may still
    be in flight when the nodes stop): results whose reference stamp lies between the two marks, over
    the messages counted between them, and never fewer messages than results (see `counts`).
    """

    def __init__(self, kept: int = KEPT_RESULTS) -> None:
        self.first: tuple[int, int] | None = None
        self._recent_marks: deque[tuple[int, int]] = deque(maxlen=64)  # 32 s of 2 Hz heartbeats
        self._recent_stamps = Ring(kept)
        self._since_first = 0  # results stamped at or after the first mark

    def mark(self, t_ns: int, messages: int) -> None:
        if self.first is None:
            self.first = (t_ns, messages)
            self._since_first = int(np.count_nonzero(np.asarray(self._recent_stamps) >= t_ns))
        else:
            self._recent_marks.append((t_ns, messages))

    def result(self, stamp_ns: int) -> None:
        self._recent_stamps.append(stamp_ns)
        if self.first is not None and stamp_ns >= self.first[0]:
            self._since_first += 1

    def counts(self, until_ns: int) -> tuple[int, int]:
        """(results, reference messages) between the first mark and the last one at or before until_ns."""
        results, reported = self._window(until_ns)
        # Every result stands for a reference message captured in the window, so there were at least as
        # many messages as results; the heartbeats can report fewer (an ingest node killed by SIGKILL
        # never reports what it sent after its last one). Such messages are counted from their results,
        # so the ratio never passes 1; `unreported` says how many were.
        return results, max(results, reported)

    def unreported(self, until_ns: int) -> int:
        """Reference messages of the window counted from their results, no heartbeat having reported them."""
        results, reported = self._window(until_ns)
        return max(0, results - reported)

    def _window(self, until_ns: int) -> tuple[int, int]:
        """(results, messages the heartbeats reported) between the first mark and the last settled one."""
        settled = [m for m in self._recent_marks if m[0] <= until_ns]
        if self.first is None or not settled:
            return 0, 0
        t1, n1 = settled[-1]
        after = int(np.count_nonzero(np.asarray(self._recent_stamps) >= t1))
        return self._since_first - after, n1 - self.first[1]


class CounterTotals:
    """Per-node counters from heartbeats, summed across restarts (a restarted node counts from 0)."""

    def __init__(self) -> None:
        self._base: dict[str, Counter[str]] = {}
        self._current: dict[str, tuple[int, dict[str, Any]]] = {}

    def update(self, node: str, pid: int, counters: Mapping[str, Any]) -> None:
        previous = self._current.get(node)
        if previous is not None and previous[0] != pid:
            base = self._base.setdefault(node, Counter())
            base.update({k: v for k, v in previous[1].items() if is_count(v)})
        self._current[node] = (pid, dict(counters))

    def totals(self, node: str) -> dict[str, Any]:
        current = self._current.get(node, (0, {}))[1]
        out: dict[str, Any] = dict(self._base.get(node, Counter()))
        for key, value in current.items():
            out[key] = out.get(key, 0) + value if is_count(value) else value
        return out

    def nodes(self) -> list[str]:
        return sorted(self._current)

    def drops(self) -> dict[str, dict[str, int]]:
        """Non-zero drop counters by node, then by reason."""
        out: dict[str, dict[str, int]] = {}
        for node in self.nodes():
            reasons = {k: v for k, v in self.totals(node).items() if is_drop_counter(k) and is_count(v) and v}
            if reasons:
                out[node] = dict(sorted(reasons.items()))
        return out


def is_count(value: Any) -> bool:
    """Whether a heartbeat counter's value is a count (an int, not a bool or a provider name)."""
    return isinstance(value, int) and not isinstance(value, bool)


def prefixed(counters: Mapping[str, Any], prefix: str) -> dict[str, int]:
    """The counts among `counters` whose key starts with `prefix`, keyed by the rest of the key, in key
    order (``unbound_held.imu/body`` -> ``imu/body``)."""
    return {
        key.removeprefix(prefix): counters[key]
        for key in sorted(counters)
        if key.startswith(prefix) and is_count(counters[key])
    }
