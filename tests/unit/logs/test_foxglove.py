"""Foxglove export's topics: two streams of one source never share a topic; one recording is one source."""

from pathlib import Path

import numpy as np

from fusion_pipeline.logs import LogWriter, SourceTopics, SplitPolicy, export_foxglove, part_path
from fusion_pipeline.transport import Sample

MS = 1_000_000
T0 = 1_700_000_000 * 10**9


def test_two_streams_of_one_source_never_share_a_topic() -> None:
    # b's result/fused takes /result/fused@b first; b's own result/fused@b must not join it.
    topics = SourceTopics()
    assert topics.topic("result/fused", "a") == "/result/fused"
    assert topics.topic("result/fused", "b") == "/result/fused@b"
    assert topics.topic("result/fused@b", "b") == "/result/fused@b@b"
    assert topics.topic("result/fused", "b") == "/result/fused@b"  # the same stream keeps its topic
    assert topics.renamed == [
        "result/fused of b -> /result/fused@b (/result/fused holds a's)",
        "result/fused@b of b -> /result/fused@b@b (/result/fused@b holds b's result/fused)",
    ]


def test_a_split_recording_with_a_part_missing_is_one_source_of_topics(tmp_path: Path) -> None:
    """Its later parts' streams had topics of their own (/radar/front@rec_002), as another recording's."""
    rec = tmp_path / "rec.mcap"
    with LogWriter(rec, split=SplitPolicy(max_duration_ns=100 * MS)) as log:
        for k in range(30):  # 3 parts of 100 ms
            radar = Sample(
                "radar/front", "radar", k, T0 + k * 10 * MS, {"detections": np.ones((2, 5), np.float32)}
            )
            log.write(radar, log_time_ns=T0 + k * 10 * MS)
    parts = [part_path(rec, i) for i in range(3)]
    assert all(p.exists() for p in parts)
    counts = export_foxglove([parts[0], parts[2]], tmp_path / "fox.mcap")
    assert counts == {"/radar/front": 20}
