"""Property tests: hostile frames raise nothing but WireError and never allocate beyond the limits."""

import tracemalloc

import msgpack
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusion_pipeline.wire import Limits, Sample, WireError, decode, encode

LIMITS = Limits(max_header_bytes=4096, max_arrays=4, max_array_bytes=64 * 1024, max_total_bytes=128 * 1024)
# What decode may allocate beyond the input: the header objects and array views, never a declared size.
ALLOCATION_BOUND = 64 * 1024

VALID = [
    bytes(memoryview(f))
    for f in encode(
        Sample(
            "lidar/top",
            "lidar",
            5,
            1_700_000_000_000_000_000,
            {"points": np.arange(32, dtype=np.float32).reshape(8, 4), "ring": np.arange(8, dtype=np.uint8)},
            "lidar_top",
            {"model": "sim"},
        )
    )
]

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)

header_values = st.fixed_dictionaries(
    {
        "v": st.sampled_from([1, 1, 1, 2, "1", None]),
        "stream": st.sampled_from(["s", "", 5]),
        "modality": st.text(max_size=5),
        "seq": st.integers(-5, 2**64 - 1),
        "stamp_ns": st.integers(-(2**63), 2**64 - 1),
        "frame_id": st.text(max_size=5),
        "meta": msgpack_values,
        "arrays": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["a", "b", 3]),
                    "dtype": st.sampled_from(["<f4", "|u1", "<f8", ">f4", "O", "<U4", "float32", 7]),
                    "shape": st.lists(st.integers(-3, 2**40), max_size=10) | msgpack_values,
                }
            ),
            max_size=6,
        ),
    },
)


def _decode_bounded(frames: list[bytes]) -> None:
    tracemalloc.start()
    try:
        try:
            decode(frames, LIMITS)
        except WireError as exc:
            assert exc.reason
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < ALLOCATION_BOUND + sum(len(f) for f in frames)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), min_size=0, max_size=6))
def test_random_frames_raise_only_wire_error(frames: list[bytes]) -> None:
    _decode_bounded(frames)


@settings(max_examples=300, deadline=None)
@given(header_values, st.lists(st.binary(max_size=200), max_size=6))
def test_random_headers_raise_only_wire_error(header: dict, buffers: list[bytes]) -> None:
    topic = header["stream"].encode() if isinstance(header["stream"], str) else b"x"
    _decode_bounded([topic, msgpack.packb(header), *buffers])


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_mutated_valid_frames_raise_only_wire_error(data: st.DataObject) -> None:
    frames = list(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(frames) - 1)) if frames else 0
        action = data.draw(st.sampled_from(["flip", "truncate", "extend", "drop", "duplicate"]))
        if not frames:
            break
        frame = bytearray(frames[index])
        if action == "flip" and frame:
            pos = data.draw(st.integers(0, len(frame) - 1))
            frame[pos] = data.draw(st.integers(0, 255))
        elif action == "truncate":
            frame = frame[: data.draw(st.integers(0, len(frame)))]
        elif action == "extend":
            frame += data.draw(st.binary(min_size=1, max_size=64))
        elif action == "drop":
            del frames[index]
            continue
        elif action == "duplicate":
            frames.insert(index, bytes(frame))
        frames[index] = bytes(frame)
    _decode_bounded(frames)


def test_the_unmutated_frames_decode() -> None:
    sample = decode(VALID, LIMITS)
    assert sample.arrays["points"].shape == (8, 4) and sample.meta == {"model": "sim"}
