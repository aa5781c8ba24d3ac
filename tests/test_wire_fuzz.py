"""Property tests: hostile frames raise nothing but WireError and never allocate beyond the limits."""

import tracemalloc
from collections.abc import Iterator

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusion_pipeline import shm
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


def _decode_bounded(frames: list[bytes], segments: shm.SegmentReader | None = None) -> None:
    tracemalloc.start()
    try:
        try:
            decode(frames, LIMITS, segments)
        except WireError as exc:
            assert exc.reason
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A shared-memory array is copied out: at most the declared size, which the limits bound.
    copied = LIMITS.max_total_bytes if segments is not None else 0
    assert peak < ALLOCATION_BOUND + copied + sum(len(f) for f in frames)


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


@pytest.fixture(scope="module")
def ring() -> Iterator[tuple[shm.SegmentWriter, list[bytes]]]:
    """A live segment holding VALID's arrays (every array by reference), and those frames."""
    if not shm.available():
        pytest.skip("needs Linux /dev/shm and OFD locks")
    writer = shm.SegmentWriter("fuzz", slots=2, min_bytes=1)
    sample = decode(VALID, LIMITS)
    yield writer, [bytes(memoryview(f)) for f in encode(sample, writer)]
    writer.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_hostile_shared_memory_references_raise_only_wire_error(
    ring: tuple[shm.SegmentWriter, list[bytes]], data: st.DataObject
) -> None:
    writer, frames = ring
    header = msgpack.unpackb(frames[1])
    real = writer.path.name
    for spec in header["arrays"]:
        spec["shm"] = data.draw(
            st.fixed_dictionaries(
                {
                    "segment": st.sampled_from(
                        [real, real + "x", "fp-1-x", "../fp-1-x", "", "fp-99999999-a-b"]
                    ),
                    "slot": st.integers(-1, 3) | st.integers(0, 2**64 - 1),
                    "gen": st.integers(0, 4),
                }
            )
            | msgpack_values
        )
        spec["shape"] = data.draw(st.sampled_from([spec["shape"], [16 * 1024], [0], [3, 5]]))
    buffers = [data.draw(st.sampled_from([b"", bytes(8)])) for _ in header["arrays"]]
    _decode_bounded([frames[0], msgpack.packb(header), *buffers], shm.SegmentReader())


def test_the_shared_memory_frames_decode(ring: tuple[shm.SegmentWriter, list[bytes]]) -> None:
    _, frames = ring
    assert frames[2:] == [b"", b""]
    sample = decode(frames, LIMITS, shm.SegmentReader())
    assert np.array_equal(sample.arrays["points"], decode(VALID, LIMITS).arrays["points"])
