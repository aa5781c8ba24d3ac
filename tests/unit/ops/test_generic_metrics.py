"""Metrics of a generic stream (issue 16): the samples the synchronizer took in beside those ingest
received, a gap between them as a synchronizer drop (`lost`), and no presence ratio for a stream no
result holds (model.unbound_streams)."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client.core import Metric

from fusion_pipeline.ops import (
    NodeSnapshot,
    PipelineSnapshot,
    StreamSnapshot,
    is_drop_counter,
    metric_families,
)


def _node(name: str, counters: dict[str, int]) -> NodeSnapshot:
    kind, _, stream = name.partition(":")
    return NodeSnapshot(name, kind, stream or None, 100, True, False, 10.0, 0.2, 0, counters, {})


def _value(family: Metric, suffix: str = "", **labels: str) -> float | None:
    for sample in family.samples:
        if sample.name == family.name + suffix and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


def test_the_synchronizer_counts_per_stream_and_an_unbound_stream_has_no_presence_ratio() -> None:
    lidar = StreamSnapshot("lidar/top", "lidar", True, 10.0, 10.0, 0.0, 2.0)
    imu = replace(StreamSnapshot("imu", "generic", False, 1000.0, 1000.0, 0.0, 2.0), to_model=False)
    nodes = [
        _node("ingest:imu", {"received": 5000, "published": 5000}),
        _node("ingest:lidar/top", {"received": 50, "published": 50, "reconnects": 1}),
        _node(
            "synchronizer",
            {"received.imu": 4998, "received.lidar/top": 50, "dropped.imu.lost": 2, "unbound_held.imu": 48},
        ),
    ]
    snapshot = PipelineSnapshot("imu-demo", "/run/x", 12.0, 2.0, nodes, [lidar, imu], results=50, missing={})
    families = {f.name: f for f in metric_families(snapshot)}
    assert _value(families["fusion_stream_messages"], "_total", stream="imu") == 5000
    assert _value(families["fusion_stream_synchronized"], "_total", stream="imu") == 4998
    assert _value(families["fusion_stream_synchronized"], "_total", stream="lidar/top") == 50
    assert _value(families["fusion_stream_reconnects"], "_total", stream="lidar/top") == 1
    assert _value(families["fusion_stream_reconnects"], "_total", stream="imu") == 0
    # its own metric, not also a drop reason there; the summary's drops name it (what was in flight is lost)
    assert (
        _value(families["fusion_stream_dropped"], "_total", stream="lidar/top", reason="reconnects") is None
    )
    assert is_drop_counter("reconnects")
    dropped = families["fusion_stream_dropped"]
    assert _value(dropped, "_total", stream="imu", node="synchronizer", reason="lost") == 2
    presence = families["fusion_sync_presence_ratio"]
    assert _value(presence, stream="lidar/top") == 1.0
    assert _value(presence, stream="imu") is None  # no result holds it
    assert _value(families["fusion_sync_unbound_held"], "_total", stream="imu") == 48  # but the sets do
