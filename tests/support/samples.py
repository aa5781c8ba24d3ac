"""Samples for the tests: a radar sample that carries its seq; two samples compared field by field."""

import numpy as np

from fusion_pipeline.transport import Sample


def numbered_radar(seq: int) -> Sample:
    """Radar sample `seq`: seq % 4 detections filled with seq, stamped seq ms."""
    detections = np.full((seq % 4, 5), seq, np.float32)
    return Sample("radar/front", "radar", seq, 1_000_000 * seq, {"detections": detections}, "radar_front")


def same_sample(a: Sample, b: Sample) -> bool:
    """Whether every field and every array (dtype, shape and values) of `a` and `b` agree."""
    return (a.stream, a.modality, a.seq, a.stamp_ns, a.frame_id, a.meta) == (
        b.stream, b.modality, b.seq, b.stamp_ns, b.frame_id, b.meta
    ) and a.arrays.keys() == b.arrays.keys() and all(
        a.arrays[k].dtype == v.dtype and a.arrays[k].shape == v.shape and np.array_equal(a.arrays[k], v)
        for k, v in b.arrays.items()
    )  # fmt: skip
