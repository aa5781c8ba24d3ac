"""Composed live mode, its pure parts: the `pipeline.composition` key, the graph it makes, the metrics
read from a composed node's parts, the sync stage's wait. The running node: tests/process/test_composed.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pipeline_harness import DEMO_TEXT
from prometheus_client.core import Metric

from fusion_pipeline.config import parse_config
from fusion_pipeline.contract import default_contract
from fusion_pipeline.errors import ConfigError
from fusion_pipeline.inference import InferenceStage, ModelRuntime, load_bindings
from fusion_pipeline.nodes.composed import InferenceThread
from fusion_pipeline.ops import (
    LIVE_GRAPH,
    REPLAY_GRAPH,
    NodeSnapshot,
    PipelineSnapshot,
    StreamSnapshot,
    metric_families,
    node_specs,
)
from fusion_pipeline.protocol import RESULT_MODALITY, RESULT_STREAM, SET_MODALITY, SET_STREAM
from fusion_pipeline.sync import SyncStage
from fusion_pipeline.transport import Publisher, Role, Sample, Subscriber

COMPOSED_TEXT = DEMO_TEXT.replace("[pipeline]\n", '[pipeline]\ncomposition = "composed"\n', 1)


def test_composition_is_processes_unless_set_and_only_one_of_its_two_values() -> None:
    assert parse_config(DEMO_TEXT).pipeline.composition == "processes"
    assert parse_config(COMPOSED_TEXT).pipeline.composition == "composed"
    for value in ('"threads"', "1", '"Composed"'):
        text = DEMO_TEXT.replace("[pipeline]\n", f"[pipeline]\ncomposition = {value}\n", 1)
        with pytest.raises(ConfigError, match=r"pipeline\.composition"):
            parse_config(text)


def test_a_composed_graph_runs_the_data_path_in_one_node_whose_parts_are_the_separate_nodes() -> None:
    separate = node_specs(parse_config(DEMO_TEXT))
    composed = node_specs(parse_config(COMPOSED_TEXT))
    drivers = [s for s in separate if s.kind == "sensor_sim"]
    assert composed[: len(drivers)] == drivers  # the drivers stay processes of their own
    (node,) = composed[len(drivers) :]
    assert node.name == "composed"
    assert list(node.parts) == separate[len(drivers) :]  # ingest per stream, synchronizer, inference
    assert node.runs("inference") and node.runs("ingest") and not node.runs("sensor_sim")
    argv = LIVE_GRAPH.argv(node, Path("/etc/p.toml"), Path("/run/x"))
    assert argv[1:] == [
        "-m",
        "fusion_pipeline.nodes.composed",
        "--config",
        "/etc/p.toml",
        "--run-dir",
        "/run/x",
    ]


def test_a_replay_of_a_composed_config_runs_the_separate_nodes() -> None:
    composed = REPLAY_GRAPH.nodes(parse_config(COMPOSED_TEXT))
    assert composed == REPLAY_GRAPH.nodes(parse_config(DEMO_TEXT))
    assert all(not node.parts for node in composed)


def _node(
    name: str, counters: dict[str, Any], parts: dict[str, dict[str, Any]] | None = None
) -> NodeSnapshot:
    kind, _, stream = name.partition(":")
    return NodeSnapshot(name, kind, stream or None, 100, True, False, 10.0, 0.2, 0, counters, {}, parts or {})


PART_COUNTERS: dict[str, dict[str, Any]] = {
    "ingest:lidar/top": {"received": 48, "received_bytes": 4800, "skipped": 1, "seq_lost": 5},
    "ingest:radar/front": {"received": 96, "malformed_bad_header": 3, "schema_bad_shape": 1},
    "synchronizer": {"received": 140, "sets_full": 40, "sets_partial": 6, "dropped.radar/front.too_old": 4},
    "inference": {"received": 46, "results": 44, "skipped": 2, "bad_sets": 0, "provider": "CPU"},
}


def _samples(nodes: list[NodeSnapshot]) -> dict[str, list[Any]]:
    """Every metric family but the per-node ones (which name the processes), as comparable samples."""
    streams = [
        StreamSnapshot(s, s.split("/")[0], False, 10.0, 10.0, 0.0, 2.0) for s in ("lidar/top", "radar/front")
    ]
    snapshot = PipelineSnapshot("demo", "/run/x", 12.0, 2.0, nodes, streams, results=40)
    families: list[Metric] = metric_families(snapshot)
    return {f.name: sorted(map(repr, f.samples)) for f in families if not f.name.startswith("fusion_node_")}


def test_metrics_read_a_composed_nodes_parts_as_the_separate_nodes_counters() -> None:
    separate = [_node(name, counters) for name, counters in PART_COUNTERS.items()]
    composed = [_node("composed", {"received": 144, "results": 44}, PART_COUNTERS)]
    found = _samples(composed)
    assert found == _samples(separate)
    assert any("'stream': 'radar/front'" in s and "bad_header" in s for s in found["fusion_stream_malformed"])
    assert any("44" in s for s in found["fusion_inference_results"])


def test_the_sync_stage_waits_for_input_until_its_next_deadline_at_most_the_longest_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = parse_config(DEMO_TEXT)
    stage = SyncStage(config, load_bindings(config))
    now = 1_000_000_000
    assert stage.wait_ms(now, 50) == 50  # no set open: no deadline
    # Rounded up to whole ms (a poll that wakes early ticks for nothing), never negative, capped.
    for deadline_ns, wait in [(now + 2_500_000, 3), (now + 2_000_000, 2), (now - 1, 0), (now + 10**9, 50)]:
        monkeypatch.setattr(stage, "next_deadline_ns", lambda d=deadline_ns: d)
        assert stage.wait_ms(now, 50) == wait


def _set(seq: int) -> Sample:
    arrays = {
        name: np.zeros(shape, np.float32)
        for spec in default_contract().inputs
        for name, shape in spec.tensors.items()
    }
    return Sample(SET_STREAM, SET_MODALITY, seq, seq, arrays, "", {"presence": [1, 1, 1, 1], "stages": {}})


class _HeldClock:
    """The inference stage's clock, which holds a run at its start while `hold` is set, as a model run
    that takes that long; with `fail` set, the run fails (a provider error)."""

    def __init__(self) -> None:
        self.started, self.hold, self.fail = threading.Event(), threading.Event(), threading.Event()
        self.released = threading.Event()

    def __call__(self) -> int:
        self.started.set()
        if self.hold.is_set():
            assert self.released.wait(10)
        if self.fail.is_set():
            raise RuntimeError("the provider failed")
        return time.time_ns()


@pytest.fixture
def held_model(ipc_dir: Path) -> Iterator[tuple[InferenceThread, _HeldClock, Subscriber]]:
    """The composed node's model thread with a held clock, its results read on an ipc socket."""
    clock = _HeldClock()
    stage = InferenceStage(ModelRuntime(parse_config(COMPOSED_TEXT)), clock=clock)
    url = f"ipc://{ipc_dir}/results.sock"
    with (
        Publisher(url, RESULT_STREAM, RESULT_MODALITY, role=Role.RESULT, lossless=True) as sink,
        Subscriber(url, topics=[RESULT_STREAM], role=Role.RESULT) as results,
    ):
        assert sink.wait_for_subscribers()
        model = InferenceThread(stage, sink)
        try:
            yield model, clock, results
        finally:
            clock.released.set()
            model.stop()


def test_the_model_thread_runs_the_newest_set_handed_to_it_and_counts_the_ones_it_replaced(
    held_model: tuple[InferenceThread, _HeldClock, Subscriber],
) -> None:
    """The composed node's model runs on a thread: while a run holds it, the sets handed over replace each
    other (the inference node's drain to the newest); an error on the thread is raised in the loop."""
    model, clock, results = held_model
    clock.hold.set()
    model.hand(_set(0))
    assert clock.started.wait(10)
    time.sleep(0.1)
    assert model.run_s() >= 0.1  # the node withholds its heartbeat while a run lasts over a beat
    for seq in (1, 2, 3):
        model.hand(_set(seq))
    clock.released.set()
    got = [results.recv(timeout_ms=5000) for _ in range(2)]
    assert [r.meta["set_seq"] for r in got if r is not None] == [0, 3]
    assert (model.taken, model.skipped, model.run_s()) == (2, 2, 0.0)
    clock.fail.set()
    model.hand(_set(4))
    deadline = time.monotonic() + 5
    with pytest.raises(RuntimeError, match="the provider failed"):
        while time.monotonic() < deadline:
            model.check()
            time.sleep(0.01)


def test_a_stop_skips_the_waiting_set_publishes_no_more_and_leaves_a_run_that_does_not_end(
    held_model: tuple[InferenceThread, _HeldClock, Subscriber], caplog: pytest.LogCaptureFixture
) -> None:
    """At a stop, the set waiting was counted received and never run nor skipped; the join waited for a
    run however long (a model stuck in its provider kept the node past its stop grace, killed, its
    last counters lost); and an error of the last run went unsaid."""
    model, clock, results = held_model
    clock.hold.set()
    model.hand(_set(0))
    assert clock.started.wait(10)
    model.hand(_set(1))
    started = time.monotonic()
    model.stop(timeout_s=0.3)
    assert time.monotonic() - started < 2
    assert "the model's run in progress" in caplog.text and "did not end at the stop" in caplog.text
    assert (model.taken, model.skipped) == (1, 1)
    clock.released.set()  # the run ends after the stop: its result is not sent on a socket being closed
    assert results.recv(timeout_ms=500) is None


def test_an_error_of_the_last_run_before_a_stop_is_logged(
    held_model: tuple[InferenceThread, _HeldClock, Subscriber], caplog: pytest.LogCaptureFixture
) -> None:
    model, clock, _ = held_model
    clock.hold.set()
    clock.fail.set()
    model.hand(_set(0))
    assert clock.started.wait(10)
    clock.released.set()
    time.sleep(0.2)  # the run fails before the stop: the loop has not looked since
    model.stop()
    assert "the model's thread failed" in caplog.text and "the provider failed" in caplog.text
