"""Wire v1 codec: round trips, zero-copy views, and a clear WireError for every malformed case."""

import tracemalloc

import msgpack
import numpy as np
import pytest

from fusion_pipeline.transport import (
    ALLOWED_DTYPES,
    ArraySizeError,
    DTypeError,
    HeaderError,
    LimitError,
    Limits,
    MalformedError,
    Sample,
    UnknownVersionError,
    WireError,
    decode,
    encode,
    wire,
)


def _header(**changes):
    header = {
        "v": 1,
        "stream": "s",
        "modality": "lidar",
        "seq": 0,
        "stamp_ns": 1,
        "frame_id": "",
        "meta": {},
        "arrays": [{"name": "points", "dtype": "<f4", "shape": [2, 4]}],
    }
    header.update(changes)
    return header


def _frames(header, *buffers):
    return [
        header["stream"].encode() if isinstance(header.get("stream"), str) else b"s",
        msgpack.packb(header),
        *buffers,
    ]


@pytest.mark.parametrize("dtype", sorted(ALLOWED_DTYPES))
@pytest.mark.parametrize("shape", [(0,), (3,), (2, 0, 5), (4, 3, 2), ()])
def test_round_trip_every_dtype(dtype: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    array = (rng.random(shape) * 100).astype(dtype)
    empty = np.zeros((2, 0), dtype)
    sample = Sample("x/y", "test", 7, -5, {"a": array, "b": empty}, "frame", {"k": [1, 2]})
    frames = [bytes(memoryview(f)) for f in encode(sample)]
    back = decode(frames)
    assert back.arrays["a"].dtype.str == dtype
    np.testing.assert_array_equal(back.arrays["a"], array)
    assert back.arrays["b"].shape == (2, 0) and back.arrays["b"].dtype.str == dtype
    assert (back.stream, back.seq, back.stamp_ns, back.frame_id, back.meta) == (
        "x/y",
        7,
        -5,
        "frame",
        {"k": [1, 2]},
    )


MODALITY_PAYLOADS = {
    "camera": {"image": np.zeros((48, 64, 3), np.uint8)},
    "camera_jpeg": {"jpeg": np.frombuffer(b"\xff\xd8\xff\xe0fakejpeg\xff\xd9", np.uint8)},
    "lidar": {"points": np.ones((1000, 4), np.float32)},
    "radar": {"detections": np.ones((7, 5), np.float32)},
    "radar_empty": {"detections": np.zeros((0, 5), np.float32)},
    "audio": {"samples": np.arange(320, dtype=np.int16).reshape(320, 1)},
    "set": {"camera": np.ones((3, 96, 128), np.float32), "radar_mask": np.zeros(64, np.float32)},
}


@pytest.mark.parametrize("kind", sorted(MODALITY_PAYLOADS))
def test_round_trip_every_modality(kind: str) -> None:
    modality = kind.split("_")[0]
    meta = {"sample_rate": 16000} if modality == "audio" else {}
    sample = Sample(f"{modality}/front", modality, 2**64 - 1, 2**62, MODALITY_PAYLOADS[kind], "f", meta)
    back = decode([bytes(memoryview(f)) for f in encode(sample)])
    assert list(back.arrays) == list(sample.arrays)
    for name, array in sample.arrays.items():
        np.testing.assert_array_equal(back.arrays[name], array)
    assert back.seq == 2**64 - 1 and back.meta == meta


def test_decoded_arrays_are_read_only_views_of_the_frames() -> None:
    buffer = bytearray(np.arange(8, dtype="<f4").tobytes())
    back = decode(_frames(_header(), buffer))
    points = back.arrays["points"]
    assert not points.flags.writeable and not points.flags.owndata
    buffer[0:4] = np.float32(42).tobytes()  # the view sees the frame's memory: nothing was copied
    assert points[0, 0] == 42


def test_encode_writes_the_frames_protocol_v1_documents() -> None:
    """The header is byte for byte the map of PROTOCOL 3, keys in its order, and the buffer frame the
    array's C-order bytes: peers of any release read what this one writes."""
    image = np.arange(24, dtype="<u2").reshape(2, 3, 4)
    sample = Sample("camera/front", "camera", 3, -7, {"image": image}, "cam", {"encoding": "rgb8"})
    topic, header, buffer = encode(sample)
    documented = {
        "v": 1,
        "stream": "camera/front",
        "modality": "camera",
        "seq": 3,
        "stamp_ns": -7,
        "frame_id": "cam",
        "meta": {"encoding": "rgb8"},
        "arrays": [{"name": "image", "dtype": "<u2", "shape": [2, 3, 4]}],
    }
    assert bytes(topic) == b"camera/front"
    assert bytes(header) == msgpack.packb(documented, use_bin_type=True)
    assert bytes(memoryview(buffer)) == image.tobytes()


def test_encode_converts_big_endian_and_non_contiguous() -> None:
    array = np.arange(12, dtype=">i4").reshape(3, 4)[:, ::2]
    back = decode([bytes(memoryview(f)) for f in encode(Sample("s", "m", 0, 0, {"a": array}))])
    assert back.arrays["a"].dtype.str == "<i4"
    np.testing.assert_array_equal(back.arrays["a"], array)


def test_encode_refuses_object_dtype() -> None:
    with pytest.raises(DTypeError, match="'a'"):
        encode(Sample("s", "m", 0, 0, {"a": np.array(["x"], dtype=object)}))


# The acceptance cases: each gets a WireError naming the reason, without a large allocation.
MALFORMED = {
    "bad msgpack": ([b"s", b"\xc1\xff\x00", b""], MalformedError, "msgpack"),
    "not a map": ([b"s", msgpack.packb([1, 2]), b""], MalformedError, "map"),
    "wrong version": (_frames(_header(v=2), b"\0" * 32), UnknownVersionError, "version 2"),
    "version as a float": (_frames(_header(v=1.0), b"\0" * 32), UnknownVersionError, "version 1.0"),
    "version as a bool": (_frames(_header(v=True), b"\0" * 32), UnknownVersionError, "version True"),
    "keys as bin": (  # a C packer's default: was "version None is not supported"
        [b"s", msgpack.packb({k.encode(): v for k, v in _header().items()}), b"\0" * 32],
        HeaderError,
        "header keys are msgpack bin; they must be str",
    ),
    "length mismatch": (_frames(_header(), b"\0" * 31), ArraySizeError, "needs 32 bytes, buffer has 31"),
    "10^12 bytes": (
        _frames(_header(arrays=[{"name": "points", "dtype": "|u1", "shape": [10**6, 10**6]}]), b""),
        LimitError,
        "1000000000000 bytes",
    ),
    "dtype not allowed": (
        _frames(_header(arrays=[{"name": "p", "dtype": "O", "shape": [1]}]), b"x"),
        DTypeError,
        "'O'",
    ),
    "missing key": (
        _frames({k: v for k, v in _header().items() if k != "seq"}, b"\0" * 32),
        HeaderError,
        "'seq' is missing",
    ),
    "mistyped key": (_frames(_header(stamp_ns="now"), b"\0" * 32), HeaderError, "'stamp_ns' must be int"),
    "negative seq": (_frames(_header(seq=-1), b"\0" * 32), HeaderError, "'seq'"),
    "negative dim": (
        _frames(_header(arrays=[{"name": "p", "dtype": "<f4", "shape": [-1, 4]}]), b""),
        HeaderError,
        "non-negative",
    ),
    "too many dims": (
        _frames(_header(arrays=[{"name": "p", "dtype": "<f4", "shape": [1] * 9}]), b"\0" * 4),
        LimitError,
        "dimensions",
    ),
    "buffer count": (_frames(_header()), MalformedError, "declares 1 arrays but 0 buffers"),
    "topic mismatch": ([b"other", msgpack.packb(_header()), b"\0" * 32], HeaderError, "differs"),
    "one frame": ([b"s"], MalformedError, "at least 2 frames"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_message_gets_a_clear_wire_error(case: str) -> None:
    frames, error, text = MALFORMED[case]
    tracemalloc.start()
    try:
        with pytest.raises(error, match=text.replace("(", r"\(").replace("^", r"\^")) as info:
            decode(frames)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, f"decode allocated {peak} bytes for a {case} message"
    assert isinstance(info.value, WireError) and info.value.reason


def test_limits_are_configurable() -> None:
    frames = [bytes(memoryview(f)) for f in encode(Sample("s", "m", 0, 0, {"a": np.zeros(100, np.float64)}))]
    with pytest.raises(LimitError, match="800 bytes, limit is 400"):
        decode(frames, Limits(max_array_bytes=400))
    with pytest.raises(LimitError, match="total"):
        decode(frames, Limits(max_total_bytes=400))
    with pytest.raises(DTypeError):
        decode(frames, Limits(allowed_dtypes=frozenset({"<f4"})))
    with pytest.raises(LimitError, match="header"):
        decode(frames, Limits(max_header_bytes=16))


def test_version_constant_matches_protocol() -> None:
    assert wire.VERSION == 1


def test_a_refusal_after_the_header_was_read_carries_the_header() -> None:
    """A replay's ingest holds a refused message's place in the send order with its meta.replay_seq."""
    frames = encode(
        Sample("s", "lidar", 3, 1, {"points": np.zeros((2, 4), np.float64)}, "", {"replay_seq": 7})
    )
    with pytest.raises(DTypeError) as refused:
        wire.check(frames, Limits(allowed_dtypes=frozenset({"<f4"})))
    assert refused.value.header is not None and refused.value.header["meta"] == {"replay_seq": 7}
    with pytest.raises(MalformedError) as unread:
        wire.check([frames[0], b"\xc1"])
    assert unread.value.header is None  # nothing was read: no place to hold
