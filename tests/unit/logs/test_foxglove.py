"""Foxglove export's topics: two streams of one source never share a topic."""

from fusion_pipeline.logs import SourceTopics


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
