"""DrainTally: what a viewer that fell behind shows, and what it counts for the rest."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_pipeline.transport.wire import Sample
from fusion_pipeline.view.drain import DrainTally


def _sample(stream: str, modality: str, seq: int, stamp_ns: int) -> Sample:
    return Sample(stream, modality, seq, stamp_ns, {"x": np.zeros(1, np.float32)}, "", {})


def test_newest_per_discrete_stream_every_chunk_and_result_in_stamp_order() -> None:
    tally = DrainTally()
    drained = [
        _sample("camera/front", "camera", 0, 100),
        _sample("audio/roof", "audio", 0, 110),
        _sample("camera/front", "camera", 1, 130),
        _sample("result/fused", "result", 0, 100),
        _sample("audio/roof", "audio", 1, 130),
        _sample("camera/front", "camera", 2, 160),
        _sample("lidar/top", "lidar", 0, 150),
    ]
    kept = tally.keep(drained)
    assert [(s.stream, s.seq) for s in kept] == [
        ("result/fused", 0),
        ("audio/roof", 0),
        ("audio/roof", 1),
        ("lidar/top", 0),
        ("camera/front", 2),
    ]
    camera = tally.streams["camera/front"]
    assert (camera.received, camera.shown, camera.skipped, camera.lost) == (3, 1, 2, 0)
    assert tally.streams["audio/roof"].skipped == 0
    counters = tally.counters()
    assert counters["received"] == 7 and counters["skipped"] == 2
    assert counters["camera/front.shown"] == 1


def test_seq_gaps_across_drains_are_lost_upstream() -> None:
    tally = DrainTally()
    tally.keep([_sample("radar/front", "radar", 4, 1)])
    tally.keep([_sample("radar/front", "radar", 7, 2), _sample("radar/front", "radar", 8, 3)])
    radar = tally.streams["radar/front"]
    assert radar.lost == 2  # 5 and 6 never arrived
    assert radar.skipped == 1  # 7 passed over for 8
    assert tally.counters()["lost_upstream"] == 2


def test_max_hz_shows_a_30_hz_camera_at_10_hz_and_keeps_every_result() -> None:
    tally = DrainTally(max_hz=10)
    period_ns = 33_333_333
    shown = []
    for seq in range(30):  # one second, one message per drain, stamps jittered by up to 2 ms
        stamp = seq * period_ns + (seq % 3) * 700_000
        kept = tally.keep(
            [_sample("camera/front", "camera", seq, stamp), _sample("result/fused", "result", seq, stamp)]
        )
        shown += [s.seq for s in kept if s.stream == "camera/front"]
        assert [s.seq for s in kept if s.stream == "result/fused"] == [seq]
    assert shown == list(range(0, 30, 3))
    camera = tally.streams["camera/front"]
    assert (camera.received, camera.shown, camera.skipped) == (30, 10, 20)
    assert tally.streams["result/fused"].skipped == 0
    # stamps that go back (a replay started again) are shown at once
    assert [s.seq for s in tally.keep([_sample("camera/front", "camera", 30, 5)])] == [30]


def test_max_hz_zero_shows_every_frame_and_negative_is_refused() -> None:
    tally = DrainTally(max_hz=0)
    for seq in range(5):
        assert len(tally.keep([_sample("lidar/top", "lidar", seq, seq * 1000)])) == 1
    with pytest.raises(ValueError, match="max_hz"):
        DrainTally(max_hz=-1)
