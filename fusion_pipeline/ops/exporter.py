"""Prometheus metrics of a running pipeline, served over HTTP by the supervisor.

`metric_families` turns a health.PipelineSnapshot into metric families (no sockets, testable alone);
`PipelineCollector` yields them for the latest snapshot on every scrape, and `MetricsServer` serves a
registry holding only that collector (prometheus_client's HTTP server, in its own daemon thread).

The supervisor's loop builds snapshots; the server thread only reads the newest one, an immutable object,
so no lock is shared with the loop. Counters come from CounterTotals, which sums a node's counters across
its restarts, so they only grow for the lifetime of the supervisor. docs/OPERATIONS.md lists every metric.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from fusion_pipeline.ops.health import (
    LATENCY_BUCKETS_S,
    NodeSnapshot,
    PipelineSnapshot,
    assess,
    node_state,
    silent_streams,
    stream_lags_ms,
)
from fusion_pipeline.ops.metrics import is_drop_counter, prefixed

__all__ = ["MetricsServer", "PipelineCollector", "metric_families", "scrape"]

# Exported as their own metrics, not again as drops.
_NOT_DROPS = ("malformed_", "schema_", "seq_lost", "reconnects", "rejected_", "dropped.")


def metric_families(snapshot: PipelineSnapshot) -> list[Metric]:
    """Every metric of the pipeline, for one snapshot."""
    return [
        *_stream_families(snapshot),
        *_sync_families(snapshot),
        *_inference_families(snapshot),
        *_node_families(snapshot),
    ]


def _count(counters: Mapping[str, Any], key: str) -> int:
    value = counters.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _stream_families(snapshot: PipelineSnapshot) -> Iterator[Metric]:
    messages = CounterMetricFamily(
        "fusion_stream_messages", "Valid messages received by the stream's ingest node", labels=["stream"]
    )
    size = CounterMetricFamily(
        "fusion_stream_bytes", "Bytes of the valid messages received by the ingest node", labels=["stream"]
    )
    malformed = CounterMetricFamily(
        "fusion_stream_malformed",
        "Messages refused by the ingest node: wire decoding (reason) or the stream's schema (schema_*)",
        labels=["stream", "reason"],
    )
    dropped = CounterMetricFamily(
        "fusion_stream_dropped",
        "Messages of the stream dropped on purpose or lost, by the node that dropped them and why",
        labels=["stream", "node", "reason"],
    )
    gaps = CounterMetricFamily(
        "fusion_stream_seq_gaps", "Gaps in the stream's sequence numbers seen at ingest", labels=["stream"]
    )
    lost = CounterMetricFamily(
        "fusion_stream_seq_lost", "Messages missing in those sequence gaps", labels=["stream"]
    )
    reconnects = CounterMetricFamily(
        "fusion_stream_reconnects",
        "Connections to the stream's driver that libzmq dropped for good (a frame over the size limit) "
        "and the ingest node made again",
        labels=["stream"],
    )
    silent = GaugeMetricFamily(
        "fusion_stream_silent",
        "1 while the stream's ingest node has published nothing for a few of its periods (rate_hz): "
        "nothing arrives, or ingest drops all that does (fusion_stream_malformed says why)",
        labels=["stream"],
    )
    synchronized = CounterMetricFamily(
        "fusion_stream_synchronized",
        "Samples of the stream the synchronizer took in (with fusion_stream_messages: none lost between)",
        labels=["stream"],
    )
    lag = GaugeMetricFamily(
        "fusion_stream_lag_seconds",
        "Arrival at the stream's ingest node minus the message's stamp (offset_ms subtracted), over its "
        "latest messages: stat min (negative: the sensor's clock runs ahead of the ingest host's) and "
        "median (the usual latency)",
        labels=["stream", "stat"],
    )
    quiet = {s.name for s in silent_streams(snapshot)}
    sync = snapshot.counters("synchronizer")
    for stream in snapshot.streams:
        name = stream.name
        silent.add_metric([name], 1.0 if name in quiet else 0.0)
        ingest = snapshot.counters(f"ingest:{name}")
        messages.add_metric([name], _count(ingest, "received"))
        size.add_metric([name], _count(ingest, "received_bytes"))
        gaps.add_metric([name], _count(ingest, "seq_gaps"))
        synchronized.add_metric([name], _count(sync, f"received.{name}"))
        lost.add_metric([name], _count(ingest, "seq_lost"))
        reconnects.add_metric([name], _count(ingest, "reconnects"))
        for stat, lag_ms in stream_lags_ms(ingest).items():
            lag.add_metric([name, stat], lag_ms / 1e3)
        for key in sorted(ingest):
            if key.startswith(("malformed_", "schema_")):
                malformed.add_metric([name, key.removeprefix("malformed_")], _count(ingest, key))
        for kind, counters in (("sensor_sim", snapshot.counters(f"sensor_sim:{name}")), ("ingest", ingest)):
            for key in sorted(counters):
                if is_drop_counter(key) and not key.startswith(_NOT_DROPS):
                    dropped.add_metric([name, kind, key], _count(counters, key))
        for reason, count in prefixed(sync, f"dropped.{name}.").items():
            dropped.add_metric([name, "synchronizer", reason], count)
    yield from (messages, size, malformed, dropped, gaps, lost, reconnects, silent, synchronized, lag)


def _sync_families(snapshot: PipelineSnapshot) -> Iterator[Metric]:
    sync = snapshot.counters("synchronizer")
    sets = CounterMetricFamily(
        "fusion_sync_sets",
        "Sets by kind: full (every stream present), partial (an optional stream missing), "
        "missing_required (abandoned: a required stream missing)",
        labels=["kind"],
    )
    for kind in ("full", "partial", "missing_required"):
        sets.add_metric([kind], _count(sync, f"sets_{kind}"))
    yield sets
    yield CounterMetricFamily(
        "fusion_sync_time_jumps",
        "Backward time jumps that reset the synchronizer",
        value=_count(sync, "time_jumps"),
    )
    rejected = CounterMetricFamily(
        "fusion_sync_rejected", "Ingest samples the synchronizer refused, by reason", labels=["reason"]
    )
    for reason, count in prefixed(sync, "rejected_").items():
        rejected.add_metric([reason], count)
    yield rejected
    unbound = CounterMetricFamily(
        "fusion_sync_unbound_held",
        "Sets that held the samples of a generic stream no model input takes (model.unbound_streams)",
        labels=["stream"],
    )
    for stream, count in prefixed(sync, "unbound_held.").items():
        unbound.add_metric([stream], count)
    yield unbound
    presence = GaugeMetricFamily(
        "fusion_sync_presence_ratio",
        "Share of the results received by the supervisor whose set held the stream",
        labels=["stream"],
    )
    if snapshot.results:
        for stream in (s for s in snapshot.streams if s.to_model):
            missing = snapshot.missing.get(stream.name, 0)
            presence.add_metric([stream.name], 1 - missing / snapshot.results)
    yield presence


def _inference_families(snapshot: PipelineSnapshot) -> Iterator[Metric]:
    inference = snapshot.counters("inference")
    latency = HistogramMetricFamily(
        "fusion_inference_latency_seconds",
        "Latency of the results after the warm-up: model (the ONNX Runtime call) and end_to_end "
        "(capture of the reference message to the result's publish)",
        labels=["stage"],
    )
    bounds = [*(f"{b:g}" for b in LATENCY_BUCKETS_S), "+Inf"]
    for stage, (cumulative, total_s, _) in snapshot.latency.items():
        latency.add_metric([stage], list(zip(bounds, cumulative, strict=True)), total_s)
    yield latency
    yield CounterMetricFamily(
        "fusion_inference_results", "Results the inference node published", value=_count(inference, "results")
    )
    yield CounterMetricFamily(
        "fusion_inference_skipped",
        "Sets the inference node skipped to run the newest one",
        value=_count(inference, "skipped"),
    )
    yield CounterMetricFamily(
        "fusion_inference_bad_sets",
        "Sets the model contract refused",
        value=_count(inference, "bad_sets"),
    )
    yield CounterMetricFamily(
        "fusion_inference_sets_lost",
        "Sets the synchronizer sent that never reached the inference node (a full queue dropped them)",
        value=_count(inference, "sets_lost"),
    )
    provider = InfoMetricFamily("fusion_inference_provider", "The ONNX Runtime execution provider in use")
    name = str(inference.get("provider") or snapshot.provider)
    if name:
        provider.add_metric([], {"provider": name})
    yield provider


def _node_families(snapshot: PipelineSnapshot) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "fusion_node_up", "1 when the node runs and its heartbeat is fresh", labels=["node", "kind"]
    )
    restarts = CounterMetricFamily(
        "fusion_node_restarts", "Restarts of the node by the supervisor", labels=["node", "kind"]
    )
    age = GaugeMetricFamily(
        "fusion_node_heartbeat_age_seconds", "Age of the node's last heartbeat", labels=["node", "kind"]
    )
    # Where latency tails come from (node.py's process figures in every heartbeat).
    collections = CounterMetricFamily(
        "fusion_node_gc_collections", "Garbage collections in the node's process", labels=["node", "kind"]
    )
    pause = GaugeMetricFamily(
        "fusion_node_gc_pause_max_seconds",
        "Longest garbage-collection pause of the node's current process",
        labels=["node", "kind"],
    )
    preempted = CounterMetricFamily(
        "fusion_node_preempted",
        "Times the kernel took the CPU from the node while it could run (involuntary context switches)",
        labels=["node", "kind"],
    )
    for node in snapshot.nodes:
        labels = [node.name, node.kind]
        up.add_metric(labels, 1.0 if _running(node, snapshot.stale_s) else 0.0)
        restarts.add_metric(labels, node.restarts)
        if node.heartbeat_age_s is not None:
            age.add_metric(labels, node.heartbeat_age_s)
        counters = snapshot.counters(node.name)
        collections.add_metric(labels, _count(counters, "gc_collections"))
        pause.add_metric(labels, float(counters.get("gc_pause_ms_max", 0.0)) / 1e3)
        preempted.add_metric(labels, _count(counters, "preempted"))
    yield from (up, restarts, age, collections, pause, preempted)
    yield GaugeMetricFamily(
        "fusion_pipeline_degraded",
        "1 when a node is not running, a stream is silent or the results fall behind the reference "
        "(`fusion-pipeline status` says why)",
        value=1.0 if assess(snapshot).degraded else 0.0,
    )
    yield GaugeMetricFamily(
        "fusion_pipeline_uptime_seconds", "Time since the supervisor started", value=snapshot.uptime_s
    )


def _running(node: NodeSnapshot, stale_s: float) -> bool:
    return node_state(node.alive, node.restart_pending, node.heartbeat_age_s, stale_s) == "running"


class PipelineCollector(Collector):
    """Yields the metric families of the newest snapshot `latest()` returns (nothing before the first)."""

    def __init__(self, latest: Callable[[], PipelineSnapshot | None]) -> None:
        self._latest = latest

    def collect(self) -> Iterator[Metric]:
        snapshot = self._latest()
        if snapshot is not None:
            yield from metric_families(snapshot)


class MetricsServer:
    """prometheus_client's HTTP server for one collector on its own registry, in a daemon thread."""

    def __init__(self, collector: Collector, host: str, port: int) -> None:
        registry = CollectorRegistry()
        registry.register(collector)
        self._server, self._thread = start_http_server(port, host, registry)  # OSError: address in use
        self.host = host
        self.port = int(self._server.server_port)  # the chosen one when `port` was 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2.0)


def scrape(url: str, timeout_s: float = 10.0) -> dict[str, float]:
    """A /metrics page read back: {'name{label=value,...}': value}, labels sorted by name."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        text = response.read().decode()
    return {
        f"{s.name}{{{','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))}}}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
