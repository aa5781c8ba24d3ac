"""Supervisor, its pure parts: node specs, restart backoff, the replay graph, the status line, counter
totals and result statistics. Restarts of real processes: tests/process/test_supervisor.py."""

from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
from pipeline_harness import DEMO_TEXT

from fusion_pipeline.config import doubtful_settings, load_config, parse_config
from fusion_pipeline.ops import (
    FIRST_RATES_S,
    LIVE_GRAPH,
    REPLAY_GRAPH,
    STATUS_PLAIN_S,
    CounterTotals,
    NodeSpec,
    RestartPolicy,
    ResultStats,
    StatusLine,
    Supervisor,
    is_drop_counter,
    node_specs,
    percentiles,
    plain_tcp_endpoints,
    silent_streams,
    statusline,
)
from fusion_pipeline.ops.metrics import Ring
from fusion_pipeline.transport import Sample


def test_node_specs_cover_the_graph_upstream_first() -> None:
    config = load_config()
    names = [s.name for s in node_specs(config)]
    assert names == [
        "sensor_sim:camera/front",
        "sensor_sim:lidar/top",
        "sensor_sim:radar/front",
        "sensor_sim:audio/roof",
        "ingest:camera/front",
        "ingest:lidar/top",
        "ingest:radar/front",
        "ingest:audio/roof",
        "synchronizer",
        "inference",
    ]
    external = parse_config(
        DEMO_TEXT.replace('name = "radar/front"', 'name = "radar/front"\ndriver = "external"')
    )
    assert NodeSpec("sensor_sim", "radar/front") not in node_specs(external)
    assert NodeSpec("ingest", "radar/front") in node_specs(external)


def test_plain_tcp_endpoints_are_the_tcp_ones_without_curve() -> None:
    assert plain_tcp_endpoints(load_config(), Path("/run/x"), "live") == []  # the demo: ipc only
    text = DEMO_TEXT.replace('"ipc://{run_dir}/sets.sock"', '"tcp://127.0.0.1:5601"', 1)
    text = text.replace('"ipc://{run_dir}/results.sock"', '"tcp://0.0.0.0:5602"', 1)
    insecure = parse_config(text.replace("insecure = false", "insecure = true", 1))
    found = [(use.key, use.url) for use in plain_tcp_endpoints(insecure, Path("/run/x"), "live")]
    assert found == [("sync.endpoint", "tcp://127.0.0.1:5601"), ("output.endpoint", "tcp://0.0.0.0:5602")]
    # With a certificate configured the tcp endpoints use CURVE: none is plain.
    curve = parse_config(
        text.replace("insecure = false", 'certificate = "k/p.key_secret"\nauthorized_keys = "k/ok"')
    )
    assert plain_tcp_endpoints(curve, Path("/run/x"), "live") == []


def test_a_live_composed_node_binds_no_ingest_endpoint_to_warn_of() -> None:
    """It warned of a plain tcp ingest endpoint that nothing binds (the frames pass in-process), and kept
    an `insecure tcp` tag for it; a replay of the config runs the separate nodes, which do bind it."""
    text = DEMO_TEXT.replace("insecure = false", "insecure = true", 1)
    text = text.replace(
        'name = "camera/front"', 'name = "camera/front"\ningest_endpoint = "tcp://127.0.0.1:5603"', 1
    )
    composed = parse_config(text.replace("[pipeline]\n", '[pipeline]\ncomposition = "composed"\n', 1))
    assert plain_tcp_endpoints(composed, Path("/run/x"), "live") == []
    (replayed,) = plain_tcp_endpoints(composed, Path("/run/x"), "replay")
    assert (replayed.key, replayed.url) == ("streams[0].ingest_endpoint", "tcp://127.0.0.1:5603")
    (doubt,) = doubtful_settings(composed)
    assert doubt.startswith(
        'streams[0].ingest_endpoint: not bound live with pipeline.composition = "composed"'
    )


def test_the_replay_graph_has_no_recorder_or_viewer_where_the_config_enables_them() -> None:
    """A replay's recorder copied the log it read, cut short and reported whole."""
    demo = load_config()
    config = demo.model_copy(
        update={
            "record": demo.record.model_copy(update={"enabled": True}),
            "view": demo.view.model_copy(update={"enabled": True}),
        }
    )
    assert {"recorder", "viewer"} <= {s.kind for s in LIVE_GRAPH.nodes(config)}
    assert not {"recorder", "viewer"} & {s.kind for s in REPLAY_GRAPH.nodes(config)}


def test_restart_backoff_doubles_up_to_the_cap() -> None:
    policy = RestartPolicy(initial_s=0.25, max_s=2.0)
    assert [policy.delay(k) for k in range(1, 7)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


def test_the_replay_graph_is_the_live_one_without_drivers_with_replay_in_log_time() -> None:
    config = load_config()
    live = [s for s in LIVE_GRAPH.nodes(config) if s.kind != "sensor_sim"]
    assert REPLAY_GRAPH.nodes(config) == live and len(live) < len(LIVE_GRAPH.nodes(config))
    ingest = NodeSpec("ingest", "camera/front")
    argv = LIVE_GRAPH.argv(ingest, Path("/etc/p.toml"), Path("/run/x"))
    assert argv[1:5] == ["-m", "fusion_pipeline.nodes.ingest", "--config", "/etc/p.toml"]
    assert argv[5:] == ["--run-dir", "/run/x", "--stream", "camera/front"]
    assert REPLAY_GRAPH.argv(ingest, Path("/etc/p.toml"), Path("/run/x")) == [*argv, "--replay"]
    assert "--config" not in LIVE_GRAPH.argv(ingest, None, Path("/run/x"))  # the embedded demo
    assert not LIVE_GRAPH.log_time and REPLAY_GRAPH.log_time
    assert [(what, url(Path("/run/x"))) for what, url in REPLAY_GRAPH.sockets] == [
        ("pipeline.run_dir (the end-of-replay socket)", "ipc:///run/x/replay-end.sock")
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_status_line_in_a_log_waits_for_results_then_comes_every_plain_period() -> None:
    out = io.StringIO()
    line, stats = StatusLine(out), ResultStats(["camera/front"])
    line.start(0.0, {"camera/front": 0})
    assert not line.due(0.5) and line.due(1.0)
    line.update(1.0, {"camera/front": 10}, stats, 0, None)
    assert out.getvalue() == "" and line.due(2.0)  # no line of zeros while the nodes start
    stats.results = stats.full = 1
    line.update(2.0, {"camera/front": 30}, stats, 2, None)
    # The first line a while after the first result, its rates over that while (QA: over the second
    # before it, 0.0 Hz for streams whose heartbeat had not come, standing in the journal for 10 s).
    first = 2.0 + FIRST_RATES_S
    assert out.getvalue() == "" and not line.due(first - 0.1) and line.due(first)
    line.update(first, {"camera/front": 30 + 20 * round(FIRST_RATES_S)}, stats, 2, None)
    assert out.getvalue() == (
        "[status] camera 20.0Hz | sets full 1 partial 0 | no results yet | - | restarts 2\n"
    )
    assert not line.due(first + STATUS_PLAIN_S - 0.1) and line.due(first + STATUS_PLAIN_S)
    line.node_output("inference", b"inference: \x1b[1;31mloaded\x1b[0m\n")  # colours stripped in a log
    assert out.getvalue().endswith("[inference] loaded\n")


def test_the_status_line_on_a_terminal_is_redrawn_in_place_and_cleared_by_a_log_line() -> None:
    out = _Terminal()
    line = StatusLine(out)
    line.start(0.0, {"camera/front": 0})
    line.update(
        1.0, {"camera/front": 5}, ResultStats(["camera/front"]), 0, None
    )  # every second, from the start
    assert out.getvalue().startswith("\r\x1b[Kcamera  5.0Hz | ") and line.due(2.0)
    line.node_output("inference", b"\x1b[1mbold\x1b[0m\n")
    line.clear()  # nothing left to clear
    assert out.getvalue().endswith("\r\x1b[K[inference] \x1b[1mbold\x1b[0m\n")


def test_the_status_line_on_a_terminal_fits_its_width_grouping_many_streams_of_a_kind() -> None:
    """A surround suite's line (11 streams) was 230 columns: wrapped, it cannot be redrawn in place, and
    each second's line scrolled the terminal."""
    surround = load_config("package:surround.toml")
    names = [s.name for s in surround.streams]
    stats = ResultStats(names)
    stats.results = stats.full = 1
    columns = [140]
    out = _Terminal()
    line = StatusLine(out, width=lambda: columns[0])
    line.start(0.0, dict.fromkeys(names, 0))
    line.update(1.0, {n: 10 * (i % 3 + 1) for i, n in enumerate(names)}, stats, 0, None)
    shown = out.getvalue().removeprefix("\r\x1b[K")
    assert len(shown) < 140 and shown.startswith(
        "camera x6 10.0-30.0Hz lidar 10.0Hz radar x3 10.0-30.0Hz audio 20.0Hz | "
    )
    assert shown.endswith("| restarts 0")
    columns[0] = 100  # narrower still: the rates are cut, the fields after them kept
    line.update(2.0, {n: 20 * (i % 3 + 1) for i, n in enumerate(names)}, stats, 0, None)
    shown = out.getvalue().rpartition("\r\x1b[K")[2]
    assert len(shown) == 99 and "…" in shown and shown.endswith("| restarts 0")
    columns[0] = 400  # wide enough: every stream by name, as in a log
    line.update(3.0, {n: 30 * (i % 3 + 1) for i, n in enumerate(names)}, stats, 0, None)
    assert "camera/front_left 20.0Hz" in out.getvalue().rpartition("\r\x1b[K")[2]
    columns[0] = 0  # a pty that gave no size: the line as it is, not cut to nothing
    line.update(4.0, {n: 40 * (i % 3 + 1) for i, n in enumerate(names)}, stats, 0, None)
    assert out.getvalue().rpartition("\r\x1b[K")[2].endswith("| restarts 0")


def test_on_a_narrow_terminal_the_tags_stay_and_the_least_telling_fields_go_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At 80 columns the surround suite's fields alone took 85: every redraw lost its tags (SILENT ...)."""
    names = [s.name for s in load_config("package:surround.toml").streams]
    stats = ResultStats(names)
    stats.results, stats.full, stats.partial, stats.provider = 97, 54, 43, "CPUExecutionProvider"
    tag = "SILENT camera/back_left"
    monkeypatch.setattr(statusline, "status_tags", lambda snapshot: [tag])  # the tags of a snapshot
    out = _Terminal()
    line = StatusLine(out, width=lambda: 80)
    line.start(0.0, dict.fromkeys(names, 0))
    line.update(1.0, dict.fromkeys(names, 30), stats, 2, object())  # type: ignore[arg-type]
    shown = out.getvalue().removeprefix("\r\x1b[K")
    assert len(shown) <= 79 and shown.endswith(f"| sets full 54 partial 43 | {tag}")
    assert shown.startswith("camera x6 30.0-30.0Hz") and "CPUExecutionProvider" not in shown


def test_counter_totals_survive_restarts() -> None:
    totals = CounterTotals()
    totals.update("ingest:x", 100, {"produced": 5, "schema_bad_shape": 1, "provider": "cpu"})
    totals.update("ingest:x", 100, {"produced": 9, "schema_bad_shape": 2, "provider": "cpu"})
    totals.update("ingest:x", 200, {"produced": 3, "schema_bad_shape": 0, "provider": "cuda"})  # restarted
    assert totals.totals("ingest:x") == {"produced": 12, "schema_bad_shape": 2, "provider": "cuda"}
    assert totals.drops() == {"ingest:x": {"schema_bad_shape": 2}}


def test_drop_counters_are_recognised_by_name() -> None:
    drops = [
        "dropped.camera/front.superseded",
        "malformed_bad_header",
        "schema_bad_jpeg",
        "skipped",
        "outage",
    ]
    assert all(is_drop_counter(n) for n in drops)
    assert not any(is_drop_counter(n) for n in ("produced", "published", "received", "sets_full"))


DEMO_STREAMS = ["camera/front", "lidar/top", "radar/front", "audio/roof"]


def _result(stamp: int, stages: dict[str, int], mask: list[int], streams: list[str] = DEMO_STREAMS) -> Sample:
    meta = {"stages": {"capture": stamp, **stages}, "provider": "CPUExecutionProvider", "streams": streams}
    return Sample("result/fused", "result", 0, stamp, {"presence": np.array(mask, np.uint8)}, "", meta)


def test_result_stats_split_end_to_end_into_stages_wait_model_and_overhead() -> None:
    stats = ResultStats(DEMO_STREAMS)
    ms = 1_000_000
    stages = {
        "ingest_in": 2 * ms,
        "ingest_out": 4 * ms,
        "sync_in": 24 * ms,  # 20 ms waiting for the other sensors
        "sync_emit": 25 * ms,
        "inference_start": 26 * ms,
        "inference_end": 29 * ms,  # 3 ms model
        "publish": 30 * ms,
    }
    stats.add(_result(0, stages, [1, 1, 1, 1]), received_ns=31 * ms)
    stats.add(_result(0, stages, [0, 1, 1, 1]), received_ns=31 * ms)
    latency = stats.latency()
    assert latency["end_to_end"]["p50"] == 30.0
    assert latency["delivered"]["p50"] == 31.0
    assert latency["model"]["p50"] == 3.0
    assert latency["sync_wait"]["p50"] == 20.0
    assert latency["overhead"]["p50"] == 7.0
    assert latency["ingest_out->sync_in"]["p50"] == 20.0
    assert list(latency)[0] == "capture->ingest_in"  # pipeline order
    assert (stats.full, stats.partial, dict(stats.missing)) == (1, 1, {"camera/front": 1})


def test_result_stats_leave_start_up_out_of_latency_but_count_it() -> None:
    stats = ResultStats(["lidar/top"], since_ns=100)
    stats.add(_result(50, {}, [0, 1, 0, 0]), received_ns=60)
    stats.add(_result(150, {}, [0, 1, 0, 0]), received_ns=170)
    assert stats.results == 2 and stats.full == 2  # only lidar is configured
    assert stats.latency()["end_to_end"]["n"] == 1


def test_result_stats_count_each_missing_stream_by_the_bit_its_result_names() -> None:
    """Two cameras feed two inputs; a result's meta.streams says which stream is behind which bit."""
    streams = ["camera/front", "camera/rear", "lidar/top"]
    stats = ResultStats(streams)
    stats.add(_result(0, {}, [1, 0, 1], streams=["camera/front", "camera/rear", "lidar/top"]), received_ns=1)
    stats.add(_result(0, {}, [1, 0, 1], streams=["lidar/top", "camera/rear", "camera/front"]), received_ns=1)
    stats.add(
        _result(0, {}, [1, 1, 1], streams=["camera/front", "", "lidar/top"]), received_ns=1
    )  # rear unbound
    stats.add(_result(0, {}, [1, 1], streams=streams), received_ns=1)  # a mask shorter than its streams
    assert (stats.full, stats.partial) == (0, 4)
    assert dict(stats.missing) == {"camera/rear": 3, "lidar/top": 1}


def test_the_kept_durations_are_the_last_ones_oldest_first_in_fixed_memory() -> None:
    """A daemon keeps an hour of results: an int64 ring (about a fifth of a deque of ints), which the
    benches read as arrays in result order."""
    ring = Ring(4)
    for value in range(1, 4):
        ring.append(value)
    assert np.asarray(ring).tolist() == [1, 2, 3] and len(ring) == 3
    for value in range(4, 11):
        ring.append(value)
    assert np.asarray(ring).tolist() == [7, 8, 9, 10] and len(ring) == 4
    ring.append(12_000_000)  # 12 ms
    assert percentiles(ring)["max"] == 12.0 and percentiles(ring)["n"] == 4


def test_percentiles_in_ms() -> None:
    p = percentiles(np.arange(1, 101) * 1_000_000)
    assert p["n"] == 100 and p["p50"] == pytest.approx(50.5) and p["p99"] == pytest.approx(99.01)
    assert p["max"] == 100.0
    assert percentiles([]) == {"n": 0}


def test_a_hang_is_said_each_way_and_no_window_across_it_is_judged_behind() -> None:
    """inference stopped for 3 s: only "inference is not keeping up" was said, after it had resumed, and
    nothing said it hung (a hang under the kill timeout left no trace in the log)."""
    out = io.StringIO()
    supervisor = Supervisor(load_config(None), None, out=out)
    context = zmq.Context.instance()
    pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    # Stands for the stopped node: alive, silent, leading its group as a node does (killed as a group).
    stopped = subprocess.Popen(["sleep", "30"], process_group=0)
    try:
        pull.bind("inproc://hung")
        push.connect("inproc://hung")
        now = time.monotonic()
        for node in supervisor.nodes:
            node.process, node.last_beat, node.up_since = stopped, now - 0.5, now - 60
        counts = ("ingest:lidar/top.arrived", "ingest:lidar/top.out", "synchronizer.out", "inference.out")
        supervisor._window.add(now - 5, dict.fromkeys(counts, 0))
        supervisor._window.add(now, dict(zip(counts, (50, 50, 50, 10), strict=True)))
        assert supervisor._throughput(now) is not None  # judged: 10 results for 50 reference messages
        inference = next(n for n in supervisor.nodes if n.spec.name == "inference")
        inference.last_beat = now - 3.0
        supervisor._restart_failed_nodes(now)
        assert f"WARNING: inference (pid {stopped.pid}) hung: no heartbeat for 3.0 s" in out.getvalue()
        assert supervisor._throughput(now) is None and stopped.poll() is None  # not killed before 5 s
        push.send(msgpack.packb({"node": "inference", "pid": stopped.pid, "counters": {}}))
        time.sleep(0.1)
        supervisor._drain_heartbeats(pull)
        assert "inference running again after" in out.getvalue()
        assert supervisor._throughput(time.monotonic()) is None  # its window spans the stall
        assert supervisor._throughput(time.monotonic() + 5.0) is not None
        # Silent past the kill timeout: killed, restarting, no longer hung (its streams judged from now).
        inference.last_beat = now - 6.0
        supervisor._restart_failed_nodes(now)
        assert "sent no heartbeat for 6.0 s: killing it" in out.getvalue() and stopped.poll() is not None
        assert inference.hung_since is None and inference.restart_at is not None
        restarting = next(n for n in supervisor.snapshot(now).nodes if n.name == "inference")
        assert restarting.pid is None  # status gave the dead pid, which the system may give another
    finally:
        stopped.kill()
        stopped.wait()
        push.close(0)
        pull.close(0)
        supervisor._dir.close()


def test_a_garbled_heartbeat_is_ignored_not_fatal() -> None:
    """The control socket is input: a beat whose fields have the wrong types is dropped (a list for the
    node's name crashed the supervisor, and the whole pipeline with it)."""
    supervisor = Supervisor(load_config(None), None)
    context = zmq.Context.instance()
    pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    try:
        pull.bind("inproc://beats")
        push.connect("inproc://beats")
        for beat in (
            {"node": [1], "pid": 1, "counters": {}},
            {"node": "inference", "pid": 1, "counters": [1, 2]},
            {"node": "inference", "pid": 1, "counters": {}, "t_ns": "soon"},
            {"node": {"a": 1}, "pid": "x", "counters": None},
        ):
            push.send(msgpack.packb(beat))
        time.sleep(0.1)  # inproc delivers at once; a moment for the four to queue
        supervisor._drain_heartbeats(pull)
        assert all(node.last_beat is None for node in supervisor.nodes)
    finally:
        push.close(0)
        pull.close(0)
        supervisor._dir.close()  # its private run dir (each run of this test left one in /tmp)


def _beat(supervisor: Supervisor, t: float, but: str | tuple[str, ...] = ()) -> None:
    """Every node but the ones named has just sent a heartbeat at `t`; those have sent none."""
    for node in supervisor.nodes:
        node.last_beat = None if node.spec.name in but else t


def test_a_hung_nodes_streams_are_judged_as_of_its_last_heartbeat() -> None:
    """A composed node in a model run longer than the stale age sends no counters: every stream looked
    silent besides the node hung, then flowing again at its next beat (flapping under overload)."""
    config = parse_config(DEMO_TEXT.replace("[pipeline]\n", '[pipeline]\ncomposition = "composed"\n', 1))
    supervisor = Supervisor(config, None, policy=RestartPolicy(start_timeout_s=5.0))
    try:
        now = time.monotonic()
        supervisor._started = now - 10.0
        _beat(supervisor, now)
        supervisor.snapshot(now)
        composed_node = next(n for n in supervisor.nodes if n.spec.kind == "composed")
        composed_node.hung_since = now  # as the supervisor's watch marks it, past the stale age
        snapshot = supervisor.snapshot(now + 4.0)  # the composed node has not beaten since
        composed = next(n for n in snapshot.nodes if n.kind == "composed")
        assert composed.heartbeat_age_s == pytest.approx(4.0)  # hung, as its state says
        assert not silent_streams(snapshot)
        supervisor.counters.update("composed", 1, {})  # it had sent heartbeats before it hung
        _beat(supervisor, now + 4.0, but="composed")  # restarted: no beat yet, its counters show nothing
        composed_node.hung_since = composed_node.up_since = None  # as _start leaves a new process
        # Its restart is said by its state, not as every stream silent (QA: 3 of 11 were, by timing).
        assert not silent_streams(supervisor.snapshot(now + 4.0))
        composed_node.up_since = composed_node.last_beat = now + 5.0  # back up: judged from then on
        assert not silent_streams(supervisor.snapshot(now + 6.0))
        _beat(supervisor, now + 8.0)
        assert {s.name for s in silent_streams(supervisor.snapshot(now + 8.0))} == {
            s.name for s in config.streams
        }
    finally:
        supervisor._dir.close()


def test_a_hung_node_killed_and_restarting_leaves_its_streams_unjudged_until_it_is_back() -> None:
    """QA: a composed node stopped past the kill timeout, then killed: in its restart's backoff every
    stream was said silent (for the hang), then flowing again as soon as it was back."""
    config = parse_config(DEMO_TEXT.replace("[pipeline]\n", '[pipeline]\ncomposition = "composed"\n', 1))
    supervisor = Supervisor(config, None, policy=RestartPolicy(start_timeout_s=5.0), out=io.StringIO())
    stopped = subprocess.Popen(["sleep", "30"], process_group=0)  # the stopped node, killed as a group
    try:
        now = time.monotonic()
        supervisor._started = now - 20.0
        for node in supervisor.nodes:
            node.process, node.up_since = stopped, now - 15.0
        _beat(supervisor, now - 6.0)
        supervisor.counters.update("composed", stopped.pid, {"received": 0, "results": 0})
        supervisor.snapshot(now - 7.0)
        supervisor.counters.update("composed", stopped.pid, {"received": 300, "results": 100})
        snapshot = supervisor.snapshot(now - 6.0)
        assert next(n for n in snapshot.nodes if n.name == "composed").rates == {"in": 300.0, "out": 100.0}
        supervisor._restart_failed_nodes(now)  # 6 s without a heartbeat: killed, a restart scheduled
        composed_node = next(n for n in supervisor.nodes if n.spec.kind == "composed")
        assert composed_node.restart_at is not None
        snapshot = supervisor.snapshot(now + 0.1)
        assert not silent_streams(snapshot)
        # Nor are its predecessor's rates shown as its own while it restarts (QA: `starting ... 15.9`).
        assert next(n for n in snapshot.nodes if n.name == "composed").rates == {}
    finally:
        stopped.kill()
        stopped.wait()
        supervisor._dir.close()


def test_streams_are_watched_once_the_start_timeout_passed_without_every_node_up() -> None:
    """A driver that crash-looped from its start kept "every node up" from ever coming: no stream was
    ever silent (the crashed one showed 0 msg/s, idle 0 s) and no latency was counted."""
    out = io.StringIO()
    supervisor = Supervisor(load_config(None), None, policy=RestartPolicy(start_timeout_s=5.0), out=out)
    try:
        now = time.monotonic()
        for node in supervisor.nodes:
            node.last_beat = None if node.spec.name == "sensor_sim:radar/front" else now
        supervisor._started = now - 4.0
        supervisor._stop_waiting_for_start(now)
        assert supervisor._all_up is None  # still within its start timeout: starting, not failing
        supervisor._started = now - 6.0
        supervisor._stop_waiting_for_start(now)
        assert supervisor._all_up == now and supervisor.stats.since_ns < 2**63 - 1
        assert "not up after their start timeout: sensor_sim:radar/front" in out.getvalue()
        supervisor.snapshot(now)  # as the supervisor's loop takes them, every second
        _beat(supervisor, now + 3.0, but="sensor_sim:radar/front")
        radar = next(s for s in supervisor.snapshot(now + 3.0).streams if s.name == "radar/front")
        assert radar.idle_s == pytest.approx(3.0)  # silent from then on, as the status will say
    finally:
        supervisor._dir.close()


def test_a_stream_is_watched_once_its_own_nodes_are_up_while_a_model_still_loads() -> None:
    """A TensorRT engine build holds the inference node's first heartbeat for minutes (its start timeout
    is 900 s): every stream's silence waited for it, so a dead sensor went unsaid all that time."""
    supervisor = Supervisor(load_config(None), None, policy=RestartPolicy(start_timeout_s=5.0))
    try:
        supervisor._start_timeout = lambda spec: 900.0 if spec.runs("inference") else 5.0  # type: ignore[method-assign]
        now = time.monotonic()
        supervisor._started = now - 1.0
        _beat(supervisor, now, but=("inference", "sensor_sim:radar/front"))
        supervisor.snapshot(now)
        _beat(supervisor, now + 3.0, but=("inference", "sensor_sim:radar/front"))
        streams = {s.name: s for s in supervisor.snapshot(now + 3.0).streams}
        assert streams["camera/front"].idle_s == pytest.approx(3.0)  # nothing came: silent
        assert streams["radar/front"].idle_s == 0.0  # its driver still within its start timeout
        assert supervisor._all_up is None  # the warm-up still waits for the model
    finally:
        supervisor._dir.close()


def test_the_summary_names_the_streams_of_which_nothing_arrived() -> None:
    supervisor = Supervisor(load_config(None), None)
    try:
        for stream in ("camera/front", "lidar/top"):
            supervisor.counters.update(f"ingest:{stream}", 7, {"received": 12, "produced": 12})
        for stream in ("radar/front", "audio/roof"):
            supervisor.counters.update(f"ingest:{stream}", 7, {"received": 0, "produced": 0})
        for node in supervisor.nodes:
            if node.spec.name.startswith("sensor_sim:") and node.spec.name != "sensor_sim:audio/roof":
                supervisor.counters.update(node.spec.name, 8, {"sent": 0})
        summary = supervisor.summary(10.0)
        # The audio's driver never beat: its stream is not blamed on a dead sensor, the node is said.
        assert summary["nothing_received"] == ["radar/front"]
        assert summary["not_up"] == ["sensor_sim:audio/roof", "synchronizer", "inference"]
        assert summary["silent_at_stop"] == {}  # no snapshot judged any stream yet
        # The camera and the lidar stopped sending after 12 messages: silent at the stop, said apart from
        # the radar, of which nothing ever arrived.
        now = time.monotonic()
        supervisor._started = now - 20.0
        for node in supervisor.nodes:
            node.up_since = now - 19.0
        for stream in ("camera/front", "lidar/top"):
            supervisor.counters.update(f"ingest:{stream}", 7, {"received": 12, "published": 12})
        _beat(supervisor, now - 10.0)
        supervisor.snapshot(now - 10.0)
        _beat(supervisor, now)
        supervisor.snapshot(now)
        silent = supervisor.summary(20.0)["silent_at_stop"]
        assert set(silent) == {"camera/front", "lidar/top"}, silent
        assert silent["lidar/top"]["required"] and not silent["camera/front"]["required"]
        assert silent["lidar/top"]["silent_s"] >= 5.0
    finally:
        supervisor._dir.close()
    replay = Supervisor(load_config(None), None, graph=REPLAY_GRAPH)  # its report says what the log holds
    try:
        assert replay.summary(10.0)["nothing_received"] == []
    finally:
        replay._dir.close()
