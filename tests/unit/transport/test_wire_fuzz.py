"""Property tests: hostile frames raise nothing but WireError and never allocate beyond the limits."""

import tracemalloc
from collections.abc import Iterator

import msgpack
import numpy as np
import pytest
from fuzzing import fuzz_examples
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fusion_pipeline.binding import bind
from fusion_pipeline.config import parse_config
from fusion_pipeline.contract import default_contract
from fusion_pipeline.ingest import Ingest
from fusion_pipeline.transport import Limits, Sample, WireError, check, decode, encode, shm

LIMITS = Limits(max_header_bytes=4096, max_arrays=4, max_array_bytes=64 * 1024, max_total_bytes=128 * 1024)
# What decode may allocate beyond the input: the header objects and array views, never a declared size.
ALLOCATION_BOUND = 64 * 1024

# The demo model with only its lidar fed: what an ingest node of that stream runs.
INGEST_BINDING = bind(
    parse_config(
        '[[streams]]\nname = "lidar/top"\nmodality = "lidar"\nendpoint = "ipc:///x/l.sock"\nrate_hz = 10\n'
        '[sync]\nreference = "lidar/top"\n[model]\nunbound_inputs = ["camera", "radar", "audio"]\n'
    ),
    default_contract(),
).of("lidar/top")
ARRIVAL_NS = 1_700_000_000_000_000_000

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
    # Measured twice, the lower peak counts: msgpack interns map keys, and a new key can make CPython
    # grow its table of interned strings (~2 MB, once), which is not the message's allocation; a
    # declared size allocated would show in both.
    peaks, outcomes = [], set()
    for _ in range(2):
        tracemalloc.start()
        try:
            try:
                decode(frames, LIMITS, segments)
                outcomes.add("decoded")
            except WireError as exc:
                assert exc.reason
                outcomes.add(f"refused: {exc.reason}")
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    (outcome,) = outcomes  # deterministic
    event(outcome)  # --hypothesis-show-statistics: what the cases exercised (outside the measurement)
    # A shared-memory array is copied out: at most the declared size, which the limits bound.
    copied = LIMITS.max_total_bytes if segments is not None else 0
    assert min(peaks) < ALLOCATION_BOUND + copied + sum(len(f) for f in frames)


@settings(max_examples=fuzz_examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), min_size=0, max_size=6))
def test_random_frames_raise_only_wire_error(frames: list[bytes]) -> None:
    _decode_bounded(frames)


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(header_values, st.lists(st.binary(max_size=200), max_size=6))
def test_random_headers_raise_only_wire_error(header: dict, buffers: list[bytes]) -> None:
    topic = header["stream"].encode() if isinstance(header["stream"], str) else b"x"
    _decode_bounded([topic, msgpack.packb(header), *buffers])


HEADER_KEYS = ["v", "stream", "modality", "seq", "stamp_ns", "frame_id", "meta", "arrays", "extra"]
SPEC_KEYS = ["name", "dtype", "shape", "shm"]


def _mutate_header(frame: bytes, data: st.DataObject) -> bytes:
    """A realistic header edit: one field of the map, or of one array spec, set to another value."""
    try:
        header = msgpack.unpackb(frame)
    except (ValueError, msgpack.UnpackException):
        return frame  # not a header (any more): the byte-level mutations cover it
    if not isinstance(header, dict):
        return frame
    target = header
    if data.draw(st.booleans()) and isinstance(header.get("arrays"), list) and header["arrays"]:
        target = header["arrays"][data.draw(st.integers(0, len(header["arrays"]) - 1))]
        key = data.draw(st.sampled_from(SPEC_KEYS))
    else:
        key = data.draw(st.sampled_from(HEADER_KEYS))
    if not isinstance(target, dict):
        return frame
    if data.draw(st.integers(0, 5)) == 0:
        target.pop(key, None)
    else:
        target[key] = data.draw(
            msgpack_values
            | st.integers(-(2**63), 2**64 - 1)
            | st.lists(st.integers(-3, 2**40), max_size=5)
            | st.fixed_dictionaries(
                {
                    "segment": st.text(max_size=12),
                    "slot": st.integers(-1, 2**64 - 1),
                    "gen": st.integers(0, 3),
                }
            )
        )
    return msgpack.packb(target if target is header else header)


@settings(max_examples=fuzz_examples(500), deadline=None)
@given(st.data())
def test_mutated_valid_frames_raise_only_wire_error(data: st.DataObject) -> None:
    frames = list(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        if not frames:
            break
        index = data.draw(st.integers(0, len(frames) - 1))
        action = data.draw(
            st.sampled_from(["bitflip", "byte", "header", "truncate", "extend", "drop", "duplicate"])
        )
        frame = bytearray(frames[index])
        if action == "bitflip" and frame:
            pos = data.draw(st.integers(0, len(frame) * 8 - 1))
            frame[pos // 8] ^= 1 << (pos % 8)
        elif action == "byte" and frame:
            frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
        elif action == "header":
            frame = bytearray(_mutate_header(bytes(frame), data))
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
    _ingest_survives(frames)


def _ingest_survives(frames: list[bytes]) -> None:
    """What decodes reaches ingest: its header checks and its processing drop (count), never raise."""
    try:
        checked = check(frames, LIMITS)
    except WireError:
        return
    ingest = Ingest(INGEST_BINDING, LIMITS)
    admitted = ingest.admit(checked, ARRIVAL_NS)
    out = ingest.process(checked.materialize(), ARRIVAL_NS)
    assert admitted or out is None
    assert out is not None or ingest.rejected or ingest.seq.last_seq is not None


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


@settings(
    max_examples=fuzz_examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
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
