"""Property test: a damaged log (bit flips, huge declared lengths, cuts, inserted bytes) makes the reader
raise nothing but LogError, and it never allocates beyond a bound, whatever sizes the file declares."""

import struct
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
from fuzzing import fuzz_examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusion_pipeline.logs import LogError, LogReader, LogWriter
from fusion_pipeline.transport import Sample

T0 = 1_700_000_000_000_000_000
#: What reading a damaged copy of the ~20 KB log may allocate at its peak: its chunks, records and arrays,
#: never a size the file declares (those go up to 2**64 - 1 here).
ALLOCATION_BOUND = 8 * 1024 * 1024


def _valid_log() -> bytes:
    samples = [
        Sample("lidar/top", "lidar", i, T0 + i, {"points": np.full((16, 4), i, np.float32)}, "lidar_top")
        for i in range(12)
    ] + [
        Sample("audio/roof", "audio", 0, T0, {"samples": np.zeros((160, 1), np.int16)}, "mic", {"rate": 8}),
        Sample("result/fused", "result", 0, T0, {"probs": np.full(5, 0.2, np.float32)}, "", {"n": 1}),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "valid.mcap"
        # Small chunks: the file has several, each with its own lengths, sizes and CRCs to damage.
        with LogWriter(path, chunk_bytes=1500, metadata={"note": "fuzz"}) as writer:
            for i, sample in enumerate(samples):
                writer.write(sample, T0 + 100 + i)
        return path.read_bytes()


VALID = _valid_log()

# Integers that stand for lengths, sizes and counts at their limits, little-endian like MCAP's fields.
large_integers = st.sampled_from(
    [2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1, len(VALID), len(VALID) + 1]
) | st.integers(0, 2**64 - 1)

offsets = st.integers(0, len(VALID) - 1)
mutations = st.one_of(
    st.tuples(st.just("flip"), offsets, st.integers(0, 7)),
    st.tuples(st.just("int"), offsets, large_integers, st.sampled_from([4, 8])),
    st.tuples(st.just("cut"), offsets),
    st.tuples(st.just("insert"), offsets, st.binary(min_size=1, max_size=16)),
)


def _mutate(data: bytes, steps: list[tuple]) -> bytes:
    out = bytearray(data)
    for step in steps:
        kind, offset = step[0], min(step[1], max(len(out) - 1, 0))
        if kind == "flip" and out:
            out[offset] ^= 1 << step[2]
        elif kind == "int":
            value = struct.pack("<Q", step[2])[: step[3]]
            out[offset : offset + len(value)] = value
        elif kind == "cut":
            del out[offset:]
        elif kind == "insert":
            out[offset:offset] = step[2]
    return bytes(out)


def _read_all(path: Path, verify_crcs: bool) -> None:
    reader = LogReader(path, verify_crcs=verify_crcs)
    reader.scan_streams()
    reader.count()
    for message in reader.messages():
        assert message.sample.stream in reader.streams
    # A stop before the footer is reported: the caller can tell a damaged log from a whole one.
    assert reader.truncated or reader.files[0].complete


def test_the_valid_log_reads_whole() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.mcap"
        path.write_bytes(VALID)
        reader = LogReader(path)
        assert reader.count() == 14 and len(list(reader.messages())) == 14 and not reader.truncated


@settings(
    max_examples=fuzz_examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps=st.lists(mutations, min_size=1, max_size=4), verify_crcs=st.booleans())
def test_a_damaged_log_raises_only_log_error_within_bounded_memory(
    steps: list[tuple], verify_crcs: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "damaged.mcap"
        path.write_bytes(_mutate(VALID, steps))
        tracemalloc.start()
        try:
            _read_all(path, verify_crcs)
        except LogError as exc:
            assert str(exc)  # it says what is wrong
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert peak < ALLOCATION_BOUND, f"reading allocated {peak} bytes"
