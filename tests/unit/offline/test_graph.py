"""OfflineGraph on a 1 s demo log: every reference message becomes a result, the stages' stamps come from
the clock it is given, runs are independent, the replay options choose what is replayed, refused
messages are counted by stage and reason. Its equality with the socket graph: tests/process/
test_offline_replay.py."""

from __future__ import annotations

import dataclasses
import itertools
import sys
from pathlib import Path

import pytest
from paths import ROOT
from pipeline_harness import DEMO_TEXT

from fusion_pipeline.config import Config, load_config, parse_config
from fusion_pipeline.logs import LogError, LogReader, LogWriter
from fusion_pipeline.offline import RECORDED_BY, OfflineGraph
from fusion_pipeline.protocol import STAGES
from fusion_pipeline.transport import Sample

sys.path.insert(0, str(ROOT / "tools"))  # make_sample_log is a script of tools/, not a package

from make_sample_log import DEFAULT_START_S, make_log  # noqa: E402


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("offline") / "demo.mcap"
    make_log(load_config(None), path, 1.0, DEFAULT_START_S * 1_000_000_000)
    return path


@pytest.fixture(scope="module")
def graph() -> OfflineGraph:
    return OfflineGraph(load_config(None))


def _results(path: Path) -> list[Sample]:
    return [m.sample for m in LogReader(path)]


def _key(result: Sample) -> tuple:
    """What a result says about its set and the model's outputs (not when the stages ran)."""
    meta = {k: v for k, v in result.meta.items() if k != "stages"}
    arrays = {name: (a.dtype.str, a.shape, a.tobytes()) for name, a in result.arrays.items()}
    return result.seq, result.stamp_ns, meta, arrays


def _count(log: Path, stream: str) -> int:
    return sum(1 for _ in LogReader(log).messages([stream]))


def test_every_reference_message_becomes_a_result(
    graph: OfflineGraph, demo_log: Path, tmp_path: Path
) -> None:
    report = graph.run(demo_log, tmp_path / "results.mcap", sets=tmp_path / "sets.mcap")
    lidar = _count(demo_log, "lidar/top")
    assert report.results == report.sets == lidar  # the last set too: the end of the log flushes it
    streams = ("camera/front", "lidar/top", "radar/front", "audio/roof")
    assert report.sent == {stream: _count(demo_log, stream) for stream in streams}
    assert report.ingested == report.sent  # a clean log: ingest refuses nothing
    assert report.log_s > 0.9 and report.wall_s > 0 and report.speedup == report.log_s / report.wall_s
    results, sets = _results(tmp_path / "results.mcap"), _results(tmp_path / "sets.mcap")
    assert [r.meta["set_seq"] for r in results] == [s.seq for s in sets] == list(range(lidar))
    for result, set_message in zip(results, sets, strict=True):
        assert result.stamp_ns == set_message.stamp_ns
        assert result.meta["stamps"] == set_message.meta["stamps"]
        assert list(result.arrays["presence"]) == set_message.meta["presence"]
    # Audio (the last presence bit) is absent until its 500 ms window has arrived, present after.
    assert {tuple(r.arrays["presence"]) for r in results} == {(1, 1, 1, 0), (1, 1, 1, 1)}
    reader = LogReader(tmp_path / "results.mcap")
    list(reader)
    assert reader.metadata["fusion_pipeline.report"] == {"results": str(lidar)}


def test_stage_stamps_and_log_times_come_from_the_clock(demo_log: Path, tmp_path: Path) -> None:
    ticks = itertools.count(1)
    graph = OfflineGraph(load_config(None), clock=lambda: next(ticks))
    graph.run(demo_log, tmp_path / "results.mcap")
    messages = list(LogReader(tmp_path / "results.mcap"))
    stamped = [m.sample.meta["stages"] for m in messages]
    for stages in stamped:
        # capture is the log's stamp; every later stage is a tick of the clock, in pipeline order.
        ticked = [stages[name] for name in STAGES[1:]]
        assert ticked == sorted(ticked) and ticked[-1] < 10_000
    log_times = [m.log_time_ns for m in messages]
    assert log_times == sorted(log_times) and log_times[-1] < 10_000


def test_runs_are_independent(graph: OfflineGraph, demo_log: Path, tmp_path: Path) -> None:
    graph.run(demo_log, tmp_path / "a.mcap")
    graph.run(demo_log, tmp_path / "b.mcap")
    a, b = _results(tmp_path / "a.mcap"), _results(tmp_path / "b.mcap")
    assert a and [_key(r) for r in a] == [_key(r) for r in b]


def test_remap_window_and_streams_choose_what_is_replayed(
    graph: OfflineGraph, demo_log: Path, tmp_path: Path
) -> None:
    renamed = tmp_path / "renamed.mcap"
    with LogWriter(renamed) as writer:
        for m in LogReader(demo_log):
            stream = "lidar/roof" if m.sample.stream == "lidar/top" else m.sample.stream
            writer.write(dataclasses.replace(m.sample, stream=stream), m.log_time_ns)
    graph.run(demo_log, tmp_path / "original.mcap")
    graph.run(renamed, tmp_path / "remapped.mcap", remap={"lidar/roof": "lidar/top"})
    original = [_key(r) for r in _results(tmp_path / "original.mcap")]
    assert [_key(r) for r in _results(tmp_path / "remapped.mcap")] == original

    only_lidar = graph.run(demo_log, tmp_path / "lidar.mcap", streams=["lidar/top"])
    assert set(only_lidar.sent) == {"lidar/top"}
    assert {tuple(r.arrays["presence"]) for r in _results(tmp_path / "lidar.mcap")} == {(0, 1, 0, 0)}

    late = graph.run(demo_log, start_s=0.5)
    first = next(iter(LogReader(demo_log))).log_time_ns
    later = [m for m in LogReader(demo_log) if m.log_time_ns >= first + 500_000_000]
    assert late.sent["lidar/top"] == sum(m.sample.stream == "lidar/top" for m in later) > 0
    with pytest.raises(LogError, match=r"config stream 'lidar/top' \(the reference stream\) is not replayed"):
        graph.run(demo_log, streams=["camera/front"])


def _limited(config_text: str) -> Config:
    camera = 'frame_id = "camera_front"'
    assert camera in config_text
    return parse_config(config_text.replace(camera, camera + "\nlimits = { max_array_mb = 0.5 }"))


def test_messages_over_the_limits_are_counted_by_stage_and_reason(demo_log: Path) -> None:
    report = OfflineGraph(_limited(DEMO_TEXT)).run(demo_log)
    frames = _count(demo_log, "camera/front")  # 640x480 rgb8: 0.9 MB, over 0.5
    assert report.drops["ingest:camera/front"] == {"malformed_over_limit": frames}
    assert "camera/front" not in report.ingested and report.results == _count(demo_log, "lidar/top")


def test_stop_ends_the_run_and_flushes_what_is_open(
    graph: OfflineGraph, demo_log: Path, tmp_path: Path
) -> None:
    # Stop right after the fifth lidar message: nothing after it has decided its set yet.
    order = [m.sample.stream for m in LogReader(demo_log)]
    sent = [i for i, stream in enumerate(order) if stream == "lidar/top"][4] + 1
    fed = itertools.count()
    report = graph.run(demo_log, sets=tmp_path / "sets.mcap", stop=lambda: next(fed) >= sent)
    assert report.messages == sent and report.sent["lidar/top"] == 5
    sets = _results(tmp_path / "sets.mcap")
    assert report.sets == len(sets) == report.results == 5
    assert sets[-1].meta["completed_by"] == "end"  # flushed


def test_an_existing_output_is_never_written_over(
    graph: OfflineGraph, demo_log: Path, tmp_path: Path
) -> None:
    taken = tmp_path / "taken.mcap"
    taken.write_bytes(b"keep")
    with pytest.raises(LogError):
        graph.run(demo_log, tmp_path / "results.mcap", sets=taken)
    assert taken.read_bytes() == b"keep"
    assert _results(tmp_path / "results.mcap") == []  # created first, closed as an empty log


def test_written_logs_say_who_wrote_them(graph: OfflineGraph, demo_log: Path, tmp_path: Path) -> None:
    graph.run(demo_log, tmp_path / "results.mcap")
    reader = LogReader(tmp_path / "results.mcap")
    assert {m.sample.stream for m in reader} == {"result/fused"}
    assert reader.metadata["fusion_pipeline"]["recorded_by"] == RECORDED_BY
