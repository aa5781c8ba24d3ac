"""Health and metrics, the pure parts: node states, the degraded decision, rates, histograms, the metric
families of a snapshot, the [metrics] config and the run file."""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from paths import ROOT
from prometheus_client.core import Metric

from fusion_pipeline.cli.status import format_status
from fusion_pipeline.config import load_config, parse_config
from fusion_pipeline.errors import ConfigError
from fusion_pipeline.ops import (
    CounterWindow,
    LatencyHistogram,
    NodeSnapshot,
    Notice,
    PipelineSnapshot,
    ResultRatio,
    SilenceWatch,
    StatusError,
    StreamSnapshot,
    Throughput,
    arrived,
    assess,
    behind,
    flow_counts,
    forget_run_dir,
    ingest_drops,
    metric_families,
    node_state,
    record_run_dir,
    recorded_run_dir,
    run_file,
    silent_after_s,
    stale_after_s,
    status_report,
    status_tags,
)

DEMO = (ROOT / "configs" / "demo.toml").read_text()


def _node(name: str, **kw: Any) -> NodeSnapshot:
    kind, _, stream = name.partition(":")
    fields: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "stream": stream or None,
        "pid": 100,
        "alive": True,
        "restart_pending": False,
        "uptime_s": 10.0,
        "heartbeat_age_s": 0.2,
        "restarts": 0,
        "counters": {},
        "rates": {},
    }
    return NodeSnapshot(**{**fields, **kw})


def _stream(name: str, required: bool = False, idle_s: float = 0.0) -> StreamSnapshot:
    return StreamSnapshot(name, name.split("/")[0], required, 10.0, 10.0, idle_s, 2.0)


def _snapshot(nodes: list[NodeSnapshot], streams: list[StreamSnapshot], **kw: Any) -> PipelineSnapshot:
    return PipelineSnapshot("demo", "/run/x", 12.0, 2.0, nodes, streams, **kw)


@pytest.mark.parametrize(
    ("alive", "pending", "age", "state"),
    [
        (True, False, 0.5, "running"),
        (True, False, None, "starting"),
        (True, False, 2.5, "hung"),
        (True, True, None, "restarting"),
        (False, False, 0.5, "restarting"),  # exited, not yet seen by the supervisor's watch
    ],
)
def test_node_state(alive: bool, pending: bool, age: float | None, state: str) -> None:
    assert node_state(alive, pending, age, stale_s=2.0) == state


def test_healthy_pipeline_is_not_degraded() -> None:
    health = assess(
        _snapshot([_node("ingest:lidar/top"), _node("synchronizer")], [_stream("lidar/top", True)])
    )
    assert not health.degraded and health.reasons == []


def test_degraded_names_every_node_not_running_and_silent_required_streams() -> None:
    nodes = [
        _node("ingest:lidar/top"),
        _node("synchronizer", alive=False, restart_pending=True, heartbeat_age_s=None),
        _node("inference", heartbeat_age_s=None),
        _node("ingest:radar/front", heartbeat_age_s=3.25),
    ]
    streams = [_stream("lidar/top", required=True, idle_s=4.0), _stream("radar/front", idle_s=60.0)]
    health = assess(_snapshot(nodes, streams))
    assert health.degraded
    assert health.reasons == [
        "synchronizer restarting",
        "inference starting",
        "ingest:radar/front hung (no heartbeat for 3.2 s)",
        "required stream lidar/top silent for 4.0 s (expects 10 Hz)",
        "stream radar/front silent for 60.0 s (expects 10 Hz)",  # an optional stream's silence counts too
    ]


def test_a_silent_stream_is_named_with_its_driver_and_reported_once_until_it_comes_back() -> None:
    camera = StreamSnapshot(
        "camera/front", "camera", False, 30.0, 0.0, 5.0, 2.0, driver="external", endpoint="ipc:///r/cam.sock"
    )
    reasons = assess(_snapshot([], [camera])).reasons
    assert reasons == [
        "stream camera/front silent for 5.0 s (expects 30 Hz from its external driver on ipc:///r/cam.sock)"
    ]
    watch = SilenceWatch()
    quiet, flowing = _snapshot([], [camera]), _snapshot([], [_stream("camera/front")])
    assert watch.changes(_snapshot([], [_stream("camera/front")])) == ([], [])
    assert watch.changes(quiet) == ([camera], [])
    assert watch.changes(quiet) == ([], [])  # said once
    assert [s.name for s in watch.changes(flowing)[1]] == ["camera/front"]


def test_a_silent_stream_whose_driver_refuses_the_handshake_says_so() -> None:
    """A driver that refused this host's key showed as a bare silence in `status`, the metrics and the
    run's log: the one line that said why was in its ingest node's log."""
    refused = "the CURVE server refused this client's key"
    lidar = StreamSnapshot(
        "lidar/top", "lidar", True, 10.0, 0.0, 5.0, 2.0, driver="external", endpoint="tcp://10.0.0.1:5555"
    )
    failing = StreamSnapshot(**{**lidar.__dict__, "handshake_failing": refused})
    assert assess(_snapshot([], [failing])).reasons == [
        "required stream lidar/top silent for 5.0 s (expects 10 Hz from its external driver on "
        f"tcp://10.0.0.1:5555): {refused}"
    ]
    assert status_tags(_snapshot([], [failing])) == ["SILENT lidar/top (handshake failing)"]
    watch = SilenceWatch()
    assert watch.changes(_snapshot([], [lidar])) == ([lidar], [])
    assert watch.changes(_snapshot([], [failing])) == ([failing], [])  # the reason came: said again
    assert watch.changes(_snapshot([], [failing])) == ([], [])


def test_a_stream_whose_messages_all_are_dropped_by_ingest_is_silent_and_says_why() -> None:
    """Issue 12 item 21, audit: frames arrive (27 msg/s received) but ingest drops every one; silence
    is measured on what ingest publishes, and the warning names the count and the top drop reason."""
    counters = {  # an ingest heartbeat: source counters, ingest counters, published
        "received": 150,
        "received_bytes": 9000,
        "skipped": 3,
        "refused": 2,
        "stale": 1,
        "malformed_bad_header": 1,
        "produced": 0,
        "schema_preprocess": 150,
        "schema_stamp_skew": 2,
        "seq_lost": 4,
        "duplicates": 0,
        "published": 0,
    }
    assert arrived(counters) == 157  # read whole, passed over, refused, overwritten, malformed
    assert ingest_drops(counters) == {
        "schema_preprocess": 150,
        "schema_stamp_skew": 2,
        "stale": 1,
        "malformed_bad_header": 1,
        "duplicates": 0,
    }
    window = CounterWindow()
    window.add(0.0, {"n.out": 0, "n.arrived": 0})
    window.add(1.0, {"n.out": 5, "n.arrived": 5})
    window.add(2.0, {"n.out": 5, "n.arrived": 40})
    assert window.grown("n.arrived", since="n.out") == 35  # since publishing stopped
    assert window.grown("n.missing", since="n.out") == 0
    assert window.grown("n.arrived", since="n.never") == 40  # since the first sample

    camera = StreamSnapshot(
        "camera/front",
        "camera",
        False,
        30.0,
        27.4,
        5.0,
        2.0,
        driver="external",
        endpoint="ipc:///r/cam.sock",
        arrived=150,
        arrived_idle_s=0.1,
        dropped={"schema_preprocess": 148, "stale": 2},
    )
    snapshot = _snapshot([], [camera, _stream("lidar/top")])
    reason = "stream camera/front silent for 5.0 s: 150 received, all dropped (reason: schema_preprocess)"
    assert assess(snapshot).reasons == [reason]
    assert status_report(snapshot)["degraded"] is True
    assert format_status(status_report(snapshot)).splitlines()[0] == f"demo: DEGRADED: {reason}"
    assert status_tags(snapshot) == ["SILENT camera/front (all dropped: schema_preprocess)"]
    gauge = _families(snapshot)["fusion_stream_silent"]
    assert _value(gauge, stream="camera/front") == 1 and _value(gauge, stream="lidar/top") == 0
    # Nothing arriving any more: the silence of a driver again, warned anew, as is the change back.
    stopped = StreamSnapshot(
        "camera/front", "camera", False, 30.0, 0.0, 9.0, 2.0, arrived=150, arrived_idle_s=4.0
    )
    assert assess(_snapshot([], [stopped])).reasons == [
        "stream camera/front silent for 9.0 s (expects 30 Hz)"
    ]
    watch = SilenceWatch()
    assert watch.changes(snapshot) == ([camera], [])
    assert watch.changes(snapshot) == ([], [])
    assert watch.changes(_snapshot([], [stopped])) == ([stopped], [])
    assert watch.changes(snapshot) == ([camera], [])


def test_notices_and_silent_streams_make_the_status_line_tags() -> None:
    notices = [
        Notice("insecure tcp", "output.endpoint tcp://127.0.0.1:5 is plain tcp"),
        Notice("insecure tcp", "sync.endpoint tcp://127.0.0.1:6 is plain tcp"),
        Notice("metrics off (port taken)", "metrics off (port taken): cannot serve on 127.0.0.1:9464"),
    ]
    snapshot = _snapshot([], [_stream("camera/front", idle_s=3.0), _stream("lidar/top")], notices=notices)
    assert status_tags(snapshot) == ["SILENT camera/front", "insecure tcp x2", "metrics off (port taken)"]
    assert status_tags(_snapshot([], [_stream("lidar/top")])) == []
    # A hung node is tagged first (a stall under the kill timeout showed nothing on the line).
    stalled = [_node("composed", heartbeat_age_s=3.5), _node("inference"), _node("recorder", alive=False)]
    assert status_tags(_snapshot(stalled, [_stream("lidar/top")])) == ["HUNG composed"]


def test_recovered_once_every_node_runs_again() -> None:
    down = _snapshot([_node("synchronizer", alive=False)], [])
    up = _snapshot([_node("synchronizer", restarts=1)], [])
    assert assess(down).degraded and not assess(up).degraded


def test_thresholds() -> None:
    assert stale_after_s(500, heartbeat_timeout_s=5.0) == 2.0
    assert stale_after_s(1000, heartbeat_timeout_s=5.0) == 4.0
    assert stale_after_s(5000, heartbeat_timeout_s=5.0) == 5.0  # never past the supervisor's kill
    assert silent_after_s(10.0, 500) == 2.0
    assert silent_after_s(0.5, 500) == 10.0  # five periods of a slow stream


def test_flow_counts_by_kind() -> None:
    assert flow_counts("ingest", {"received": 5, "published": 4, "produced": 4}) == {"in": 5, "out": 4}
    assert flow_counts("synchronizer", {"received": 9, "sets_published": 3}) == {"in": 9, "out": 3}
    assert flow_counts("sensor_sim", {"published": 7, "late": 1}) == {"out": 7}
    assert flow_counts("inference", {"provider": "cpu"}) == {}


def test_counter_window_rates_and_idle_time() -> None:
    window = CounterWindow(window_s=5.0)
    window.add(0.0, {"a": 0, "b": 10})
    assert window.rate("a") is None  # one sample: no rate yet
    for t in range(1, 11):
        window.add(float(t), {"a": 20 * t, "b": 10})
    assert window.rate("a") == pytest.approx(20.0)  # over the last 5 s only
    assert window.rate("b") == 0.0
    assert window.idle_s("a", 10.5) == pytest.approx(0.5)
    assert window.idle_s("b", 10.5) == pytest.approx(10.5)  # never grew: idle since the first sample
    assert window.rate("missing") is None  # no node reports it: no rate, not a zero one


def test_a_rate_counts_from_the_first_sample_that_holds_its_key() -> None:
    """Status 8 s after start said 3.5 Hz for a 10 Hz stream: its node came up 3 s into the window, and
    the rate spread its messages over time the node did not exist."""
    window = CounterWindow(window_s=5.0)
    for t in range(4):
        window.add(float(t), {"supervisor": t})
    for t in range(4, 8):
        window.add(float(t), {"supervisor": t, "ingest.in": 10 * (t - 4)})
    assert window.rate("ingest.in") == pytest.approx(10.0)


def test_latency_histogram_buckets_are_cumulative_and_inclusive() -> None:
    histogram = LatencyHistogram(bounds_s=(0.001, 0.01))
    for value in (500_000, 1_000_000, 5_000_000, 20_000_000):  # 0.5 ms, exactly 1 ms (le is inclusive)...
        histogram.observe(value)
    cumulative, total_s, count = histogram.cumulative()
    assert cumulative == [2, 3, 4] and count == 4
    assert total_s == pytest.approx(0.0265)


def _families(snapshot: PipelineSnapshot) -> dict[str, Metric]:
    return {f.name: f for f in metric_families(snapshot)}


def _value(family: Metric, suffix: str = "", **labels: str) -> float:
    for sample in family.samples:
        if sample.name == family.name + suffix and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise AssertionError(f"no {family.name}{suffix} {labels} in {family.samples}")


def test_metric_families_of_a_snapshot() -> None:
    nodes = [
        _node("sensor_sim:lidar/top", counters={"published": 50, "late": 2}),
        _node(
            "ingest:lidar/top",
            restarts=1,
            counters={
                "received": 48,
                "received_bytes": 4800,
                "skipped": 1,
                "malformed_bad_header": 3,
                "schema_bad_shape": 1,
                "seq_gaps": 2,
                "seq_lost": 5,
                "lag_ms_min": -1.5,
                "lag_ms_median": 2.25,
            },
        ),
        _node(
            "synchronizer",
            alive=False,
            counters={
                "sets_full": 40,
                "sets_partial": 6,
                "time_jumps": 1,
                "rejected_wrong_modality": 2,
                "dropped.lidar/top.too_old": 4,
            },
        ),
        _node(
            "inference",
            counters={"results": 44, "skipped": 2, "bad_sets": 0, "sets_lost": 27, "provider": "CPU"},
        ),
    ]
    snapshot = _snapshot(
        nodes,
        [_stream("lidar/top", required=True), _stream("radar/front", idle_s=9.0)],
        results=40,
        missing={"lidar/top": 10},  # by stream name (a result's meta.streams)
        latency={"model": ([1] * 14 + [2], 0.5, 2)},
    )
    families = _families(snapshot)
    assert _value(families["fusion_stream_messages"], "_total", stream="lidar/top") == 48
    assert _value(families["fusion_stream_silent"], stream="lidar/top") == 0
    assert _value(families["fusion_stream_silent"], stream="radar/front") == 1
    assert _value(families["fusion_stream_bytes"], "_total", stream="lidar/top") == 4800
    malformed = families["fusion_stream_malformed"]
    assert _value(malformed, "_total", reason="bad_header") == 3
    assert _value(malformed, "_total", reason="schema_bad_shape") == 1
    dropped = families["fusion_stream_dropped"]
    assert _value(dropped, "_total", node="sensor_sim", reason="late") == 2
    assert _value(dropped, "_total", node="ingest", reason="skipped") == 1
    assert _value(dropped, "_total", node="synchronizer", reason="too_old") == 4
    assert {s.labels["reason"] for s in dropped.samples} == {"late", "skipped", "too_old"}
    assert _value(families["fusion_stream_seq_gaps"], "_total") == 2
    assert _value(families["fusion_stream_seq_lost"], "_total") == 5
    lag = families["fusion_stream_lag_seconds"]
    assert _value(lag, stream="lidar/top", stat="min") == -0.0015
    assert _value(lag, stream="lidar/top", stat="median") == 0.00225
    assert {s.labels["stream"] for s in lag.samples} == {"lidar/top"}  # radar/front: no message yet
    assert _value(families["fusion_sync_sets"], "_total", kind="partial") == 6
    assert _value(families["fusion_sync_time_jumps"], "_total") == 1
    assert _value(families["fusion_sync_rejected"], "_total", reason="wrong_modality") == 2
    assert _value(families["fusion_sync_presence_ratio"], stream="lidar/top") == 0.75
    latency = families["fusion_inference_latency_seconds"]
    assert _value(latency, "_bucket", stage="model", le="0.001") == 1
    assert _value(latency, "_bucket", stage="model", le="+Inf") == 2
    assert _value(latency, "_count", stage="model") == 2
    assert _value(families["fusion_inference_skipped"], "_total") == 2
    assert _value(families["fusion_inference_sets_lost"], "_total") == 27
    assert _value(families["fusion_inference_provider"], "_info", provider="CPU") == 1
    assert _value(families["fusion_node_up"], node="ingest:lidar/top") == 1
    assert _value(families["fusion_node_up"], node="synchronizer") == 0
    assert _value(families["fusion_node_restarts"], "_total", node="ingest:lidar/top") == 1
    assert _value(families["fusion_pipeline_degraded"]) == 1


def test_status_report_and_table() -> None:
    counters = {
        "received": 99,
        "malformed_size_mismatch": 2,
        "schema_non_finite": 1,
        "seq_lost": 4,
        "lag_ms_min": 0.8,
        "lag_ms_median": 1.26,
    }
    lidar = _node("ingest:lidar/top", rates={"in": 10.04, "out": 9.96}, counters=counters)
    nodes = [lidar, _node("inference", pid=None)]
    report = status_report(_snapshot(nodes, [_stream("lidar/top", True)]))
    assert report["streams"][0]["dropped"] == {"malformed_size_mismatch": 2, "schema_non_finite": 1}
    assert report["streams"][0]["lost"] == 4
    assert report["degraded"] is False
    assert report["nodes"][0] == {
        "name": "ingest:lidar/top",
        "state": "running",
        "pid": 100,
        "uptime_s": 10.0,
        "restarts": 0,
        "heartbeat_age_s": 0.2,
        "rates": {"in": 10.04, "out": 9.96},
    }
    table = format_status(report)
    assert table.splitlines()[0] == "demo: healthy"
    assert "ingest:lidar/top" in table and "10.0" in table
    assert "lidar/top dropped: malformed_size_mismatch 2, schema_non_finite 1" in table.splitlines()
    row = next(line for line in table.splitlines() if line.startswith("lidar/top "))
    assert row.split()[4:7] == ["1.3", "3", "4"]  # lag ms (median), dropped, lost
    assert report["streams"][0]["lag_ms"] == {"min": 0.8, "median": 1.26}
    assert report["warnings"] == []  # a lag of a millisecond or so: no clock ahead
    served = _snapshot(
        nodes,
        [_stream("lidar/top", True)],
        notices=[Notice("insecure tcp", "output.endpoint tcp://127.0.0.1:5555 is plain tcp")],
        metrics="http://127.0.0.1:9464/metrics",
        results_endpoint="tcp://127.0.0.1:5555",
    )
    report = status_report(served)
    assert report["warnings"] == ["output.endpoint tcp://127.0.0.1:5555 is plain tcp"]
    assert report["metrics"] == "http://127.0.0.1:9464/metrics"
    assert report["results_endpoint"] == "tcp://127.0.0.1:5555"
    table = format_status(report).splitlines()
    assert table[0] == "demo: healthy"  # a warning is no fault
    assert "WARNING: output.endpoint tcp://127.0.0.1:5555 is plain tcp" in table
    assert any(
        "results tcp://127.0.0.1:5555" in line and "metrics http://127.0.0.1:9464/metrics" in line
        for line in table
    )
    degraded = status_report(_snapshot([_node("inference", heartbeat_age_s=None)], []))
    assert format_status(degraded).splitlines()[0] == "demo: DEGRADED: inference starting"


def test_status_says_a_stream_whose_clock_runs_ahead() -> None:
    """A sensor clock ahead of the ingest host's decides the other streams' sets early, which shows as
    their too_old drops, not its own: the status names the stream whose stamps come after their arrival."""
    ahead = _node("ingest:radar/front", counters={"lag_ms_min": -42.0, "lag_ms_median": -40.5})
    # A driver stamping with its time since boot: its lag is decades, in a column of 7 characters.
    behind = _node("ingest:lidar/top", counters={"lag_ms_min": 1.7e12, "lag_ms_median": 1.7e12})
    streams = [_stream("lidar/top", True), _stream("radar/front")]
    report = status_report(_snapshot([behind, ahead], streams))
    assert report["warnings"] == [
        "stream radar/front: stamps up to 42.0 ms later than their arrival at ingest: its clock runs ahead "
        "of this host's (fix the clock sync, or raise its offset_ms by that much); the too_old drops of "
        "the other streams, and its own once it is ahead by more than about max_wait_ms, come from it"
    ]
    assert report["degraded"] is False  # results still come: a warning, not a fault
    table = format_status(report).splitlines()
    assert table[3].startswith("WARNING: stream radar/front: stamps up to 42.0 ms later")
    row = next(line for line in table if line.startswith("radar/front "))
    assert row.split()[4] == "-40.5"
    row = next(line for line in table if line.startswith("lidar/top "))
    assert row.split()[4] == "1.7e+12"
    # Silent, its figures are its last messages': no standing warning for a sensor that sends nothing.
    quiet = [_stream("lidar/top", True), _stream("radar/front", idle_s=9.0)]
    assert status_report(_snapshot([behind, ahead], quiet))["warnings"] == []


def test_status_says_a_stream_whose_messages_all_come_later_than_max_wait() -> None:
    """A CAN bus stamping 2 s in the past was in a fifth of the sets, its lag 2000 ms in the table, and
    status said healthy without a word (a clock ahead had its warning)."""
    late = _node("ingest:lidar/top", counters={"lag_ms_min": 2000.5, "lag_ms_median": 2001.0})
    usual = _node("ingest:radar/front", counters={"lag_ms_min": 1.2, "lag_ms_median": 3.0})
    streams = [_stream("lidar/top", True), _stream("radar/front")]
    live = replace(_snapshot([late, usual], streams), max_wait_ms=60.0)
    assert status_report(live)["warnings"] == [
        "stream lidar/top: every recent message reached ingest at least 2000.5 ms after its stamp, more "
        "than sync.max_wait_ms (60 ms): its clock runs behind this host's or its driver sends late (fix "
        "the clock sync, or lower its offset_ms by that much); sets are decided before its messages come"
    ]
    assert status_report(replace(live, max_wait_ms=math.inf))["warnings"] == []  # a replay: not judged


def test_status_table_columns_stay_in_line_with_long_names() -> None:
    """The name column is as wide as the longest name: surround's node names pass 26 characters."""
    long = "sensor_sim:camera/front_left"
    nodes = [_node(long), _node("inference")]
    table = format_status(status_report(_snapshot(nodes, [_stream("lidar/top", True)]))).splitlines()
    header, *rows = table[table.index("") + 1 : table.index("", table.index("") + 1)]
    assert [row.index("running") for row in rows] == [header.index("state")] * 2 == [len(long) + 1] * 2
    stream_header, stream_row = table[-2:]
    assert stream_row.index("10.0") + 4 == stream_header.index("msg/s") + 5  # right-aligned under it


def test_metrics_config() -> None:
    config = load_config()
    assert config.metrics.enabled and (config.metrics.host, config.metrics.port) == ("127.0.0.1", 9464)
    v6 = parse_config(DEMO.replace('address = "127.0.0.1:9464"', 'address = "[::1]:0"'))
    assert (v6.metrics.host, v6.metrics.port) == ("::1", 0)
    for bad in ("9464", "localhost:http", "127.0.0.1:70000", ":9464", "127.0.0.1:\u00b2"):
        with pytest.raises(ConfigError, match=r"metrics.address: Value error, expected HOST:PORT"):
            parse_config(DEMO.replace('address = "127.0.0.1:9464"', f'address = "{bad}"'))


def test_run_file_is_private_and_forgotten_only_by_its_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    path = record_run_dir("my-pipe", Path("/run/a"))
    assert path == run_file("my-pipe") == tmp_path / "fusion-pipeline" / "my-pipe.run"
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert recorded_run_dir("my-pipe") == Path("/run/a")
    record_run_dir("my-pipe", Path("/run/b"))  # a second run of the same pipeline takes it over
    forget_run_dir(path, Path("/run/a"))
    assert recorded_run_dir("my-pipe") == Path("/run/b")
    forget_run_dir(path, Path("/run/b"))
    with pytest.raises(StatusError, match="no supervisor recorded one in .*my-pipe.run"):
        recorded_run_dir("my-pipe")
    os.chmod(path.parent, 0o755)  # others could have planted a run file: refused
    with pytest.raises(StatusError, match="not a private"):
        record_run_dir("my-pipe", Path("/run/c"))


def test_result_ratio_counts_between_marks_in_bounded_memory() -> None:
    ratio = ResultRatio(kept=50)
    ratio.result(5)  # before the first mark: not in the window
    ratio.mark(10, 100)
    for stamp in range(10, 40):  # one result per stamp 10..39
        ratio.result(stamp)
    ratio.mark(20, 110)
    ratio.mark(30, 120)
    ratio.mark(45, 135)
    assert ratio.counts(until_ns=35) == (20, 20)  # stamps 10..29 against marks 10 and 30
    assert ratio.counts(until_ns=50) == (30, 35)
    assert ratio.counts(until_ns=5) == (0, 0)  # no settled mark after the first


def test_result_ratio_never_passes_one_when_heartbeats_miss_messages() -> None:
    """A reference ingest node killed by SIGKILL never reports what it sent after its last heartbeat, and
    its successor counts from 0: the results of those messages count them, and say how many they were."""
    ratio = ResultRatio()
    ratio.mark(0, 0)
    for stamp in range(10):  # 10 messages, 10 results; the node reports 5 of them, then dies
        ratio.result(stamp)
    ratio.mark(5, 5)
    ratio.mark(20, 5 + 2)  # its successor: 2 messages, stamps 10 and 11, both with a result
    ratio.result(10)
    ratio.result(11)
    assert ratio.counts(until_ns=30) == (12, 12)
    assert ratio.unreported(until_ns=30) == 5
    ratio.mark(40, 20)  # the heartbeats report more than results came: counted as reported
    assert ratio.counts(until_ns=40) == (12, 20) and ratio.unreported(until_ns=40) == 0


@pytest.mark.parametrize(
    ("rates", "silent", "said"),
    [
        ((10.0, 10.0, 10.0, 9.6), None, ""),
        ((4.0, 4.0, 4.0, 4.0), None, ""),  # a sensor slower than its rate_hz: every message answered
        ((10.0, 10.0, 10.0, 2.0), None, "inference is not keeping up"),
        ((10.0, 10.0, 10.0, 0.0, 10.0), None, "the model refuses the sets"),  # a model that fits no set
        ((10.0, 1.5, 1.5, 1.5), None, "its ingest passes most of them over or drops them"),
        ((10.0, 10.0, 2.0, 2.0), None, "the synchronizer makes no set of most of them"),
        ((10.0, 10.0, 10.0, 2.0), "lidar/top", None),  # the reference silent: said as silence only
        ((10.0, 10.0, 2.0, 2.0), "radar/front", None),  # a required stream silent: the same
        ((10.0, 10.0, 2.0, 2.0), "camera/front", "the synchronizer"),  # an optional one: judged
    ],
)
def test_results_behind_the_reference_messages_arriving_name_the_stage_that_loses_them(
    rates: tuple[float, ...], silent: str | None, said: str | None
) -> None:
    streams = [
        _stream("lidar/top", True, idle_s=30.0 if silent == "lidar/top" else 0.0),
        _stream("radar/front", True, idle_s=30.0 if silent == "radar/front" else 0.0),
        _stream("camera/front", False, idle_s=30.0 if silent == "camera/front" else 0.0),
    ]
    snapshot = _snapshot([_node("composed")], streams, throughput=Throughput("lidar/top", *rates))
    why = behind(snapshot)
    reasons = assess(snapshot).reasons
    if said is None or said == "":
        assert why == said and not any("results " in r for r in reasons)
        assert not any(tag.startswith("BEHIND") for tag in status_tags(snapshot))
    else:
        assert why is not None and why.startswith(
            f"results {rates[3]:.1f}/s for {rates[0]:.1f}/s of the reference lidar/top arriving: {said}"
        )
        assert why in reasons and f"BEHIND {rates[3]:.1f}/s of {rates[0]:.1f}/s" in status_tags(snapshot)
