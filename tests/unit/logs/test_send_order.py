"""send_order: what a replay sends, in which order and with which meta (the replayer's and the offline
graph's), without sockets."""

from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from fusion_pipeline.config import load_config
from fusion_pipeline.logs import (
    LOOP_GAP_NS,
    LogError,
    LogReader,
    LogWriter,
    ReplaySettings,
    left_out_streams,
    message_total,
    plan_streams,
    send_order,
)
from fusion_pipeline.transport import Sample

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def _log(path: Path) -> list[tuple[Sample, int]]:
    """Radar every 10 ms and lidar every 30 ms for 0.1 s, logged 2 ms after each stamp."""
    written = []
    for i in range(10):
        stamp = T0 + i * 10 * MS
        detections = np.full((1, 5), i, np.float32)
        written.append(Sample("radar/rear", "radar", i, stamp, {"detections": detections}))
        if i % 3 == 0:
            points = np.zeros((2, 4), np.float32)
            written.append(Sample("lidar/top", "lidar", i // 3, stamp, {"points": points}))
    with LogWriter(path) as writer:
        for sample in written:
            writer.write(sample, sample.stamp_ns + 2 * MS)
    return [(s, s.stamp_ns + 2 * MS) for s in written]


def test_log_order_renamed_with_replay_meta_into_a_graph(tmp_path: Path) -> None:
    logged = _log(tmp_path / "a.mcap")
    plan = {"radar/rear": "radar/front", "lidar/top": "lidar/top"}
    sent = list(send_order(LogReader(tmp_path / "a.mcap"), plan, ReplaySettings(graph=True)))
    assert [(m.sample.stream, m.sample.seq, m.sample.stamp_ns) for m in sent] == [
        (plan[s.stream], s.seq, s.stamp_ns) for s, _ in logged
    ]
    assert [m.sample.meta for m in sent] == [
        {"replay_seq": i, "log_time_ns": log_time} for i, (_, log_time) in enumerate(logged)
    ]
    assert [(m.log_time_ns, m.offset_ns, m.pass_index) for m in sent] == [
        (log_time, log_time - logged[0][1], 0) for _, log_time in logged
    ]
    # Publishing into something else than a graph (a recorder) adds no meta.
    plain = send_order(LogReader(tmp_path / "a.mcap"), plan, ReplaySettings())
    assert all(m.sample.meta == {} for m in plain)


def test_window_and_plan_choose_the_messages(tmp_path: Path) -> None:
    _log(tmp_path / "a.mcap")
    settings = ReplaySettings(start_s=0.025, end_s=0.065, graph=True)
    sent = list(send_order(LogReader(tmp_path / "a.mcap"), {"radar/rear": "radar/front"}, settings))
    # Offsets counted from the log's first message: radar 3..6 lie within [25, 65] ms.
    assert [m.sample.seq for m in sent] == [3, 4, 5, 6]
    assert [m.sample.meta["replay_seq"] for m in sent] == [0, 1, 2, 3]  # numbered as sent
    assert sent[0].offset_ns == 0


def test_a_loop_continues_stamps_seq_and_replay_seq(tmp_path: Path) -> None:
    logged = _log(tmp_path / "a.mcap")
    plan = {"radar/rear": "radar/front", "lidar/top": "lidar/top"}
    n = len(logged)
    settings = ReplaySettings(loop=True, graph=True)
    sent = list(islice(send_order(LogReader(tmp_path / "a.mcap"), plan, settings), 2 * n + 1))
    shift = 90 * MS + LOOP_GAP_NS  # the pass's span plus the gap
    for first, again in zip(sent[:n], sent[n : 2 * n], strict=True):
        assert again.pass_index == 1 and again.offset_ns == first.offset_ns
        assert again.sample.stamp_ns == first.sample.stamp_ns + shift
        assert again.log_time_ns == again.sample.meta["log_time_ns"] == first.log_time_ns + shift
    radar = [m.sample.seq for m in sent[: 2 * n] if m.sample.stream == "radar/front"]
    assert radar == list(range(20))  # seq shifted by the stream's count: no restart, no duplicate
    assert [m.sample.meta["replay_seq"] for m in sent] == list(range(2 * n + 1))
    assert sent[-1].pass_index == 2


def test_the_progress_total_is_the_send_count_or_unknown(tmp_path: Path) -> None:
    _log(tmp_path / "a.mcap")
    reader = LogReader(tmp_path / "a.mcap")
    plan = {"radar/rear": "radar/front", "lidar/top": "lidar/top"}
    whole = ReplaySettings()
    assert message_total(reader, plan, whole) == len(list(send_order(reader, plan, whole))) == 14
    assert message_total(reader, {"lidar/top": "lidar/top"}, whole) == 4
    for windowed in (ReplaySettings(start_s=0.05), ReplaySettings(end_s=0.05), ReplaySettings(loop=True)):
        assert message_total(reader, plan, windowed) is None  # the files' counts are the whole log's


def test_plan_refuses_a_remap_that_does_nothing_or_merges_two_streams() -> None:
    config = load_config(None)
    logged = {name: {"modality": name.split("/")[0]} for name in ("radar/front", "radar/rear", "lidar/top")}
    unused = ReplaySettings(streams=("lidar/top",), remap={"radar/rear": "radar/front"})
    with pytest.raises(LogError, match=r"--remap radar/rear=radar/front: not a stream --streams replays"):
        plan_streams(config, logged, unused)
    merged = ReplaySettings(remap={"radar/rear": "radar/front"})
    match = "log streams 'radar/front' and 'radar/rear' would both be replayed as 'radar/front'"
    with pytest.raises(LogError, match=match):
        plan_streams(config, logged, merged)
    # Leaving the config's own radar out makes the remap fit; a stream named twice is refused.
    chosen = ReplaySettings(streams=("radar/rear", "lidar/top"), remap={"radar/rear": "radar/front"})
    assert plan_streams(config, logged, chosen) == {"radar/rear": "radar/front", "lidar/top": "lidar/top"}
    with pytest.raises(LogError, match=r"--streams \['lidar/top'\]: given twice"):
        plan_streams(config, logged, ReplaySettings(streams=("lidar/top", "lidar/top")))


def test_a_log_of_another_suite_names_both_sides_and_the_way_out() -> None:
    """Without -c the demo's config is used: the message said neither that nor what to give."""
    logged = {"cam/wide": {"modality": "camera"}, "lidar/roof": {"modality": "lidar"}}
    with pytest.raises(LogError) as info:
        plan_streams(load_config(None), logged, ReplaySettings())
    message = str(info.value)
    assert "log has ['cam/wide', 'lidar/roof'], the config ['camera/front', 'lidar/top'" in message
    assert "give the config the log was recorded with (-c; without it, the demo's), or map" in message
    assert "(replay --remap LOG=CONFIG)" in message  # batch has no --remap


def test_a_recordings_own_results_are_said_as_such_not_as_unknown(caplog: pytest.LogCaptureFixture) -> None:
    """`record` takes the results by default: every replay of such a log said "not replaying result/fused:
    no such stream in the config", which reads as a problem."""
    config = load_config(None)
    logged = {name: {} for name in ("radar/front", "result/fused", "imu/body")}
    with caplog.at_level("INFO", "fusion_pipeline.logs.send_order"):
        left_out = left_out_streams(config, logged, {"radar/front": "radar/front"}, ReplaySettings())
    assert left_out == ["imu/body", "result/fused"]
    assert [r.getMessage() for r in caplog.records] == [
        "not replaying result/fused: the recorded pipeline output, which the replay makes anew",
        "not replaying imu/body: no such stream in the config",
    ]
