"""Pipeline health from the supervisor's state: node states, rates, silent streams, degraded or not.

Pure (no sockets, no clock): the supervisor builds a `PipelineSnapshot` from its node table, its
`CounterTotals` and `ResultStats` (with the monotonic time passed in); `status_report` turns a snapshot into
the map `fusion-pipeline status` prints, and fusion_pipeline.ops.exporter turns one into Prometheus metrics.

Node states:

- ``starting``: the process runs but has sent no heartbeat yet (imports, model warm-up);
- ``running``: its last heartbeat is at most `stale_s` old;
- ``hung``: alive, but its last heartbeat is older than `stale_s` (the supervisor kills it once it is
  older than its heartbeat timeout);
- ``restarting``: it exited (or was killed) and waits for its restart backoff.

The pipeline is degraded when any node is not ``running`` or a configured stream is silent: its ingest
node published nothing for `silent_s` (a few of its periods) since the pipeline came up, either because
nothing arrives (look at the driver) or because everything arriving is dropped (look at the data: the
warning names the top drop reason); while that node is hung, as of its last heartbeat (its counters
come with them: a composed node in a long model run is hung, its streams are not silent). It has
recovered once every node runs again and every stream flows. Standing conditions that are no fault
(plain tcp under ``security.insecure``, metrics off because the port is taken) are `Notice`s: logged at
start, listed by `status` and tagged in the status line (`status_tags`).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fusion_pipeline.ops.metrics import is_count

__all__ = [
    "LATENCY_BUCKETS_S",
    "NODE_STATES",
    "CounterWindow",
    "Health",
    "INGEST_DROPS",
    "LatencyHistogram",
    "NodeSnapshot",
    "Notice",
    "PipelineSnapshot",
    "SilenceWatch",
    "StreamSnapshot",
    "Throughput",
    "arrived",
    "assess",
    "behind",
    "flow_counts",
    "ingest_drops",
    "node_state",
    "silence",
    "silent_after_s",
    "silent_streams",
    "stale_after_s",
    "status_report",
    "status_tags",
]

NODE_STATES: tuple[str, ...] = ("starting", "running", "hung", "restarting")

#: Upper bounds of the latency histogram buckets, in seconds: 1 ms to 10 s (CPU model runs take tens of ms,
#: a GPU run a few ms, a stalled pipeline seconds).
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: Counters that measure a node's flow: what it took in and what it sent on, by node kind.
IN_COUNTER = "received"
OUT_COUNTERS: dict[str, str] = {
    "sensor_sim": "published",
    "ingest": "published",
    "synchronizer": "sets_published",
    "inference": "results",
    "composed": "results",
    "recorder": "written",
}


#: Ingest counters of messages that reached the node: read whole, passed over for a newer one, refused on
#: their header (their reason counted by Ingest), overwritten in shared memory; plus malformed_*.
ARRIVED_COUNTERS: tuple[str, ...] = ("received", "skipped", "refused", "stale")

#: Ingest counters of messages that arrived and were not published, by why: their reason names what is
#: wrong with the data. Not "skipped" (a newer message went on instead) nor "seq_lost" (never arrived).
INGEST_DROPS: tuple[str, ...] = ("malformed_", "schema_", "stale", "duplicates", "out_of_order", "seq_jumps")


def arrived(counters: Mapping[str, Any]) -> int:
    """Messages that reached an ingest node (its heartbeat counters), whatever became of them: its
    `received` alone misses those refused before they are read whole."""
    return sum(
        v
        for k, v in counters.items()
        if (k in ARRIVED_COUNTERS or k.startswith("malformed_")) and is_count(v)
    )


def stream_lags_ms(counters: Mapping[str, Any]) -> dict[str, float]:
    """An ingest node's lag figures (`Ingest.counters`): stat ("min", "median") -> ms; {} before its
    first message."""
    lags = {stat: counters.get(f"lag_ms_{stat}") for stat in ("min", "median")}
    return {stat: lag for stat, lag in lags.items() if isinstance(lag, float)}


def clock_off(snapshot: PipelineSnapshot) -> dict[str, str]:
    """A warning per flowing stream whose stamps disagree with its arrival at ingest, by name: stamps
    later than their arrival by more than CLOCK_AHEAD_MS (its sensor's clock runs ahead: it has sets
    decided early), or every recent message arriving later than its stamp by more than the snapshot's
    `max_wait_ms` (its clock runs behind, or its driver sends late: sets are decided without it). A
    silent stream's figures are of its last messages: not said as standing."""
    silent = {s.name for s in silent_streams(snapshot)}
    warnings = {}
    for stream in snapshot.streams:
        lag_ms = stream_lags_ms(snapshot.counters(f"ingest:{stream.name}")).get("min", 0.0)
        if stream.name in silent:
            continue
        if lag_ms < -CLOCK_AHEAD_MS:
            warnings[stream.name] = (
                f"stream {stream.name}: stamps up to {-lag_ms:.1f} ms later than their arrival at ingest: "
                "its clock runs ahead of this host's (fix the clock sync, or raise its offset_ms by that "
                "much); the too_old drops of the other streams, and its own once it is ahead by more than "
                "about max_wait_ms, come from it"
            )
        elif lag_ms > snapshot.max_wait_ms:
            warnings[stream.name] = (
                f"stream {stream.name}: every recent message reached ingest at least {lag_ms:.1f} ms after "
                f"its stamp, more than sync.max_wait_ms ({snapshot.max_wait_ms:g} ms): its clock runs "
                "behind this host's or its driver sends late (fix the clock sync, or lower its offset_ms "
                "by that much); sets are decided before its messages come"
            )
    return warnings


def ingest_drops(counters: Mapping[str, Any]) -> dict[str, int]:
    """An ingest node's counters of messages dropped for something wrong with them, by reason."""
    return {k: v for k, v in counters.items() if k.startswith(INGEST_DROPS) and is_count(v)}


def flow_counts(kind: str, counters: Mapping[str, Any]) -> dict[str, int]:
    """The node's flow counters present in `counters`: ``in`` (received) and ``out`` (sent on)."""
    keys = {"in": IN_COUNTER, "out": OUT_COUNTERS.get(kind, "")}
    return {k: v for k, key in keys.items() if isinstance(v := counters.get(key), int)}


def stale_after_s(heartbeat_ms: int, heartbeat_timeout_s: float) -> float:
    """Heartbeat age from which a live node counts as hung: four missed beats (at least 2 s, which a
    loaded machine's scheduling can take), never later than the supervisor's own kill timeout."""
    return min(heartbeat_timeout_s, max(2.0, 4 * heartbeat_ms / 1000))


def silent_after_s(rate_hz: float, heartbeat_ms: int) -> float:
    """How long a stream may deliver nothing before it counts as silent: five of its periods or three
    heartbeats (counters arrive with the heartbeats), at least 2 s."""
    return max(2.0, 5 / rate_hz, 3 * heartbeat_ms / 1000)


def node_state(alive: bool, restart_pending: bool, heartbeat_age_s: float | None, stale_s: float) -> str:
    """One of NODE_STATES. A process that exited but is not yet noticed by the supervisor's watch counts
    as restarting too: it will be."""
    if restart_pending or not alive:
        return "restarting"
    if heartbeat_age_s is None:
        return "starting"
    return "hung" if heartbeat_age_s > stale_s else "running"


@dataclass(frozen=True)
class NodeSnapshot:
    """One node as the supervisor sees it at snapshot time."""

    name: str
    kind: str
    stream: str | None
    pid: int | None
    alive: bool
    restart_pending: bool
    uptime_s: float | None  # since the current process started
    heartbeat_age_s: float | None  # None: no heartbeat from the current process yet
    restarts: int
    counters: Mapping[str, Any]  # totals across restarts (CounterTotals)
    rates: Mapping[str, float]  # per second over the recent window: "in", "out"
    parts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # a composed node's, by node name


@dataclass(frozen=True)
class StreamSnapshot:
    name: str
    modality: str
    required: bool
    rate_hz: float  # configured
    messages_per_s: float | None  # received by its ingest node, over the recent window
    idle_s: float  # since its ingest node last published a message (at most since the pipeline came up)
    silent_s: float  # idle longer than this is silent
    driver: str = "sim"  # StreamConfig.driver
    endpoint: str = ""  # where its driver publishes
    arrived: int = 0  # messages that reached its ingest node since it last published (`arrived`)
    arrived_idle_s: float = float("inf")  # since a message last reached its ingest node
    dropped: Mapping[str, int] = field(default_factory=dict)  # why those were dropped: reason -> count
    to_model: bool = True  # False for a generic stream in model.unbound_streams: never in a result
    handshake_failing: str = ""  # how its ingest node's handshake with the driver fails, if it does

    @property
    def all_dropped(self) -> bool:
        """Whether its messages still arrive (within `silent_s`) but none is published: the data is
        refused, the driver runs."""
        return self.arrived > 0 and self.arrived_idle_s <= self.silent_s

    @property
    def drop_reason(self) -> str:
        """The reason most of those messages were dropped for ("" when none is counted)."""
        counted = [(n, reason) for reason, n in self.dropped.items() if n > 0]
        return min(counted, key=lambda c: (-c[0], c[1]))[1] if counted else ""


@dataclass(frozen=True)
class Throughput:
    """The reference stream's messages per second over the recent window, stage by stage: those that
    reached its ingest node, those it published, the sets made of them, the results (live, reference
    mode, every data-path node up a whole window: Supervisor._throughput)."""

    reference: str
    arrived: float
    ingested: float
    sets: float
    results: float
    refused: float = 0.0  # sets the model refused (inference's bad_sets), of any reference stamp


#: A stream's stamps later than their arrival at ingest by more than this: its clock runs ahead (clocks
#: kept by NTP on one network agree within about a millisecond).
CLOCK_AHEAD_MS = 5.0
#: Results under this share of the reference messages that arrive: most reference stamps get none.
BEHIND_SHARE = 0.5


@dataclass(frozen=True)
class Notice:
    """A standing condition an operator must know of, but no fault: `text` for the log and `status`,
    `short` for the status line."""

    short: str
    text: str


@dataclass(frozen=True)
class PipelineSnapshot:
    """Everything the status reply and the metrics are made of; immutable once built, so the metrics
    thread can read the latest one while the supervisor's loop builds the next."""

    pipeline: str
    run_dir: str
    uptime_s: float
    stale_s: float
    nodes: Sequence[NodeSnapshot]
    streams: Sequence[StreamSnapshot]
    results: int = 0
    sets_full: int = 0
    sets_partial: int = 0
    missing: Mapping[str, int] = field(default_factory=dict)  # stream -> results whose set lacked it
    provider: str = ""
    latency: Mapping[str, tuple[Sequence[int], float, int]] = field(default_factory=dict)  # stage -> buckets
    notices: Sequence[Notice] = ()
    throughput: Throughput | None = None
    metrics: str = ""  # the /metrics URL, or "off (why)"
    results_endpoint: str = ""
    max_wait_ms: float = math.inf  # sync.max_wait_ms live; inf where arrival says nothing (a replay)

    def node(self, name: str) -> NodeSnapshot | None:
        return next((n for n in self.nodes if n.name == name), None)

    def counters(self, name: str) -> Mapping[str, Any]:
        """The counters of node `name`, a process of its own or a part of a composed node; {} if none."""
        for node in self.nodes:
            if node.name == name:
                return node.counters
            if name in node.parts:
                return node.parts[name]
        return {}


@dataclass(frozen=True)
class Health:
    degraded: bool
    reasons: list[str]


def silent_streams(snapshot: PipelineSnapshot) -> list[StreamSnapshot]:
    return [s for s in snapshot.streams if s.idle_s > s.silent_s]


def silence(stream: StreamSnapshot) -> str:
    """What is wrong with a silent stream: where its data should come from when nothing arrives, how
    much arrived and why it was dropped otherwise."""
    kind = "required stream" if stream.required else "stream"
    if stream.all_dropped:
        reason = f" (reason: {stream.drop_reason})" if stream.drop_reason else ""
        return (
            f"{kind} {stream.name} silent for {stream.idle_s:.1f} s: "
            f"{stream.arrived} received, all dropped{reason}"
        )
    source = f" from its external driver on {stream.endpoint}" if stream.driver == "external" else ""
    failing = f": {stream.handshake_failing}" if stream.handshake_failing else ""
    return (
        f"{kind} {stream.name} silent for {stream.idle_s:.1f} s (expects {stream.rate_hz:g} Hz{source})"
        f"{failing}"
    )


def status_tags(snapshot: PipelineSnapshot) -> list[str]:
    """The status line's warnings: each hung node, each silent stream, results behind the reference,
    then each kind of notice (counted when repeated)."""
    counts = Counter(n.short for n in snapshot.notices)
    t = snapshot.throughput
    lagging = [f"BEHIND {t.results:.1f}/s of {t.arrived:.1f}/s"] if t and behind(snapshot) else []
    hung = [
        f"HUNG {n.name}"
        for n in snapshot.nodes
        if node_state(n.alive, n.restart_pending, n.heartbeat_age_s, snapshot.stale_s) == "hung"
    ]
    return (
        hung
        + [_silent_tag(s) for s in silent_streams(snapshot)]
        + lagging
        + [short if n == 1 else f"{short} x{n}" for short, n in counts.items()]
    )


def _silent_tag(stream: StreamSnapshot) -> str:
    if not stream.all_dropped:
        return f"SILENT {stream.name}" + (" (handshake failing)" if stream.handshake_failing else "")
    return f"SILENT {stream.name} (all dropped{': ' + stream.drop_reason if stream.drop_reason else ''})"


class SilenceWatch:
    """The streams that went silent and those that came back since the previous snapshot, so that the
    supervisor logs each change once. A silent stream whose messages start or stop arriving (all
    dropped), or whose driver's handshake starts or stops failing, changes what an operator should look
    at: it counts as going silent again."""

    def __init__(self) -> None:
        self._silent: dict[str, tuple[bool, str]] = {}  # name -> (all_dropped, handshake_failing)

    def changes(self, snapshot: PipelineSnapshot) -> tuple[list[StreamSnapshot], list[StreamSnapshot]]:
        silent = {s.name: (s.all_dropped, s.handshake_failing) for s in silent_streams(snapshot)}
        went = [
            s for s in snapshot.streams if s.name in silent and self._silent.get(s.name) != silent[s.name]
        ]
        back = [s for s in snapshot.streams if s.name in self._silent and s.name not in silent]
        self._silent = silent
        return went, back


def behind(snapshot: PipelineSnapshot) -> str | None:
    """Why most reference messages get no result, naming the stage that loses most of them ("" when
    they get one); None when it cannot be judged: no throughput figures, or the reference or a required
    stream silent (which says why by itself)."""
    t = snapshot.throughput
    if t is None or any(s.name == t.reference or s.required for s in silent_streams(snapshot)):
        return None
    if t.results >= BEHIND_SHARE * t.arrived:
        return ""
    # Where the reference's messages are lost: the stage that loses most is the one to look at.
    ingest, sync, inference = t.arrived - t.ingested, t.ingested - t.sets, t.sets - t.results
    if inference >= max(ingest, sync) and t.refused >= inference / 2:
        why = "the model refuses the sets (inference's bad_sets; its log says why)"
    elif inference >= max(ingest, sync):
        why = "inference is not keeping up (the summary's `model` stage says how long a set takes)"
    elif sync >= ingest:
        why = "the synchronizer makes no set of most of them (its drops say why: the summary, /metrics)"
    else:
        why = (
            "its ingest passes most of them over or drops them (in a composed node the front ends "
            "share its loop; drops: `fusion-pipeline status`)"
        )
    return f"results {t.results:.1f}/s for {t.arrived:.1f}/s of the reference {t.reference} arriving: {why}"


def assess(snapshot: PipelineSnapshot) -> Health:
    """Degraded, and why: nodes not running, streams silent, results far behind the reference."""
    reasons = []
    for node in snapshot.nodes:
        state = node_state(node.alive, node.restart_pending, node.heartbeat_age_s, snapshot.stale_s)
        if state == "hung":
            reasons.append(f"{node.name} hung (no heartbeat for {node.heartbeat_age_s:.1f} s)")
        elif state != "running":
            reasons.append(f"{node.name} {state}")
    reasons += [silence(stream) for stream in silent_streams(snapshot)]
    reasons += [why] if (why := behind(snapshot)) else []
    return Health(degraded=bool(reasons), reasons=reasons)


def status_report(snapshot: PipelineSnapshot) -> dict[str, Any]:
    """The status reply: plain types only (msgpack and JSON)."""
    health = assess(snapshot)
    silent = {s.name for s in silent_streams(snapshot)}
    return {
        "pipeline": snapshot.pipeline,
        "run_dir": snapshot.run_dir,
        "uptime_s": round(snapshot.uptime_s, 3),
        "degraded": health.degraded,
        "reasons": health.reasons,
        "warnings": [n.text for n in snapshot.notices] + list(clock_off(snapshot).values()),
        "provider": snapshot.provider,
        "results": snapshot.results,
        "results_endpoint": snapshot.results_endpoint,
        "metrics": snapshot.metrics,
        "nodes": [
            {
                "name": n.name,
                "state": node_state(n.alive, n.restart_pending, n.heartbeat_age_s, snapshot.stale_s),
                "pid": n.pid,
                "uptime_s": _round(n.uptime_s),
                "restarts": n.restarts,
                "heartbeat_age_s": _round(n.heartbeat_age_s),
                "rates": {k: round(v, 2) for k, v in n.rates.items()},
            }
            for n in snapshot.nodes
        ],
        "streams": [
            {
                "name": s.name,
                "required": s.required,
                "rate_hz": s.rate_hz,
                "messages_per_s": _round(s.messages_per_s),
                "idle_s": round(s.idle_s, 3),
                "silent": s.name in silent,
                "handshake_failing": s.handshake_failing,  # how its driver's handshake fails, "" when not
                # since the run began: what arrived and was refused, by reason, and the gaps in seq (never
                # arrived, or too damaged to read their seq: those are malformed_* drops too)
                "dropped": {k: v for k, v in sorted(ingest_drops(ingest).items()) if v},
                "lost": ingest.get("seq_lost", 0),
                "lag_ms": {stat: round(lag, 3) for stat, lag in stream_lags_ms(ingest).items()},
            }
            for s in snapshot.streams
            for ingest in [snapshot.counters(f"ingest:{s.name}")]
        ],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class CounterWindow:
    """Samples of monotonic counters over the last `window_s`: per-key rates, and the time since each key
    last grew. Keys are arbitrary strings (the supervisor uses ``node.counter``)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, dict[str, int]]] = deque()
        self._changed: dict[str, float] = {}
        # The sample in which each key last grew, and the first one: `grown` counts from them. They
        # are the samples' own dicts, so this holds at most one extra sample per key.
        self._at_change: dict[str, dict[str, int]] = {}
        self._first: dict[str, int] = {}
        self._started: float | None = None

    def add(self, t: float, counts: Mapping[str, int]) -> None:
        sample = dict(counts)
        if self._started is None:
            self._started, self._first = t, sample
        last = self._samples[-1][1] if self._samples else {}
        for key, value in counts.items():
            if value > last.get(key, 0):
                self._changed[key] = t
                self._at_change[key] = sample
        self._samples.append((t, sample))
        # Keep one sample at or before the window's start, so the rate spans the whole window.
        while len(self._samples) > 2 and self._samples[1][0] <= t - self.window_s:
            self._samples.popleft()

    def rate(self, key: str) -> float | None:
        """Per second over the window, from the first sample that holds `key` (a node that came up
        within the window counts from then, not from before it existed); None until two such samples at
        least 0.5 s apart exist."""
        held = [(t, sample[key]) for t, sample in self._samples if key in sample]
        if len(held) < 2 or held[-1][0] - held[0][0] < 0.5:
            return None
        (t0, first), (t1, last) = held[0], held[-1]
        return max(0, last - first) / (t1 - t0)

    def grown(self, key: str, since: str) -> int:
        """How much `key` grew since `since` last grew (since the first sample when it never did)."""
        if not self._samples:
            return 0
        then = self._at_change.get(since, self._first)
        return max(0, self._samples[-1][1].get(key, 0) - then.get(key, 0))

    def idle_s(self, key: str, t: float) -> float:
        """Seconds since `key` last grew (since the first sample when it never did)."""
        since = self._changed.get(key, self._started)
        return 0.0 if since is None else max(0.0, t - since)


class LatencyHistogram:
    """Cumulative Prometheus bucket counts of durations in ns, fed one result at a time."""

    def __init__(self, bounds_s: Sequence[float] = LATENCY_BUCKETS_S) -> None:
        self.bounds_ns = [round(b * 1e9) for b in bounds_s]
        self._counts = [0] * (len(self.bounds_ns) + 1)  # the last one is +Inf
        self.sum_s = 0.0

    def observe(self, value_ns: int) -> None:
        self._counts[bisect.bisect_left(self.bounds_ns, value_ns)] += 1
        self.sum_s += value_ns / 1e9

    def cumulative(self) -> tuple[list[int], float, int]:
        """(cumulative count per bound and +Inf, sum in s, count)."""
        out, total = [], 0
        for n in self._counts:
            total += n
            out.append(total)
        return out, self.sum_s, total
