"""The sync stage without sockets or processes: ingest samples in, finished set messages out."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from config_text import stream_table

from fusion_pipeline.binding import bind
from fusion_pipeline.config import parse_config
from fusion_pipeline.contract import default_contract
from fusion_pipeline.preprocess import preprocess_audio
from fusion_pipeline.sync import SyncStage
from fusion_pipeline.transport import Sample

MS = 1_000_000
T0 = 10**18


CONFIG = parse_config(
    stream_table("camera/front", "camera")
    + stream_table("lidar/top", "lidar", "required = true")
    + stream_table("radar/front", "radar")
    + stream_table("audio/roof", "audio")
    + '[sync]\nreference = "lidar/top"\nmax_wait_ms = 60\n'
)
BINDINGS = bind(CONFIG, default_contract())


def _lidar(stamp: int) -> Sample:
    meta = {"stages": {"ingest_in": stamp + 1, "ingest_out": stamp + 2}}
    return Sample("lidar/top", "lidar", 0, stamp, {"lidar": np.ones((3, 64, 64), np.float32)}, "", meta)


def _camera(stamp: int) -> Sample:
    return Sample("camera/front", "camera", 0, stamp, {"camera": np.ones((3, 96, 128), np.float32)}, "", {})


def _audio(stamp: int, samples: np.ndarray) -> Sample:
    return Sample("audio/roof", "audio", 0, stamp, {"samples": samples}, "", {"sample_rate": 16000})


def test_a_set_carries_the_present_streams_and_the_message_that_completed_it() -> None:
    stage = SyncStage(CONFIG, BINDINGS)
    assert stage.add(_lidar(T0), arrival_ns=5) == []
    (message,) = stage.add(_camera(T0 + 70 * MS), arrival_ns=9)  # later than T0: camera decided
    assert message.stamp_ns == T0 and message.seq == 0
    assert message.meta["presence"] == [0, 1, 0, 0]  # camera too far (max_wait 60 ms), no radar, no audio
    assert message.meta["streams"] == ["camera/front", "lidar/top", "radar/front", "audio/roof"]  # per bit
    assert set(message.arrays) == {"lidar"}
    assert message.meta["completed_by"] == "camera/front" and message.meta["stages"]["sync_in"] == 9
    assert message.meta["stages"]["ingest_in"] == T0 + 1


def test_a_deadline_tick_finishes_a_set_without_the_silent_streams() -> None:
    stage = SyncStage(CONFIG, BINDINGS)
    stage.add(_lidar(T0), arrival_ns=0)
    stage.add(_camera(T0 + 5 * MS), arrival_ns=0)
    assert stage.next_deadline_ns() == T0 + 60 * MS + 1
    assert stage.tick(T0 + 60 * MS) == []
    (message,) = stage.tick(T0 + 61 * MS)
    assert message.meta["presence"] == [1, 1, 0, 0] and set(message.arrays) == {"camera", "lidar"}
    assert message.meta["completed_by"] == "deadline" and message.meta["stages"]["sync_in"] == T0 + 61 * MS


def test_a_set_gets_the_log_mel_of_its_audio_window() -> None:
    stage = SyncStage(CONFIG, BINDINGS)
    tone = np.random.default_rng(0).standard_normal((16000, 1)).astype(np.float32) * 0.1
    stage.add(_lidar(T0 + 600 * MS), arrival_ns=0)
    for k in range(31):  # 20 ms chunks from T0 to T0 + 620 ms: they cover the window (100, 600] ms
        assert stage.add(_audio(T0 + k * 20 * MS, tone[k * 320 : (k + 1) * 320]), arrival_ns=0) == []
    (message,) = stage.tick(T0 + 661 * MS)  # no camera, no radar: the deadline decides
    assert message.meta["presence"] == [0, 1, 0, 1]
    np.testing.assert_array_equal(message.arrays["audio"], preprocess_audio(tone[9601 - 8000 : 9601]))
    assert message.meta["audio_window"] == [T0 + 100 * MS, T0 + 600 * MS]
    assert message.meta["stamps"]["audio/roof"] == T0 + 600 * MS  # frame 9600's capture time


def test_a_flush_at_the_end_of_the_streams_publishes_the_sets_still_open() -> None:
    stage = SyncStage(CONFIG, BINDINGS)
    assert stage.add(_camera(T0 - 10 * MS), arrival_ns=0) == []
    assert stage.add(_lidar(T0), arrival_ns=0) == []  # the camera may still be bettered: open
    (message,) = stage.flush(now_ns=42)
    assert message.meta["presence"] == [1, 1, 0, 0] and message.meta["completed_by"] == "end"
    assert message.meta["stages"]["sync_in"] == 42
    assert stage.flush(now_ns=43) == []
    assert stage.counters()["sets_published"] == 1


def test_samples_the_stage_cannot_use_are_counted_by_reason_not_raised() -> None:
    stage = SyncStage(CONFIG, BINDINGS)
    wrong = Sample("camera/front", "lidar", 0, T0, {"lidar": np.ones((3, 64, 64), np.float32)}, "", {})
    float_stamp = _lidar(T0)
    float_stamp.stamp_ns = 1.5  # type: ignore[assignment]
    assert stage.add(wrong, 0) == [] and stage.add(wrong, 0) == [] and stage.add(float_stamp, 0) == []
    counters = stage.counters()
    assert counters["rejected_wrong_modality"] == 2 and counters["rejected_sync_refused"] == 1
    assert counters["sets_published"] == 0 and counters["sets_full"] == 0


def test_a_sample_its_socket_refused_is_no_loss_of_its_ingest() -> None:
    """Counted by the socket (stale, malformed); a gap in the ingest node's numbering is `lost`."""
    stage = SyncStage(CONFIG, BINDINGS)
    for seq in (0, 1):
        stage.add(replace(_camera(T0 + seq * 33 * MS), seq=seq), arrival_ns=0)
    stage.refused_at_socket({"stream": "camera/front", "seq": 2})
    stage.refused_at_socket({"stream": "camera/back", "seq": 9})  # not a stream of the config: nothing
    stage.add(replace(_camera(T0 + 99 * MS), seq=3), arrival_ns=0)
    assert stage.counters().get("dropped.camera/front.lost", 0) == 0
    stage.add(replace(_camera(T0 + 165 * MS), seq=5), arrival_ns=0)
    assert stage.counters()["dropped.camera/front.lost"] == 1
