"""MCAP log format: record layout, round trips, channel metadata, splitting, truncated files, bad records."""

import errno
import os
import re
import stat
import struct
from pathlib import Path

import mcap.writer
import msgpack
import numpy as np
import pytest
from mcap.reader import make_reader

from fusion_pipeline.logs import (
    MESSAGE_ENCODING,
    REPORT_METADATA,
    LogError,
    LogReader,
    LogWriteError,
    LogWriter,
    SplitPolicy,
    next_part,
    pack_record,
    part_path,
    unpack_record,
)
from fusion_pipeline.transport import Limits, Sample, encode


def _lidar(seq: int, n: int = 5) -> Sample:
    points = np.arange(n * 4, dtype=np.float32).reshape(n, 4) + seq
    return Sample(
        "lidar/top",
        "lidar",
        seq,
        1_700_000_000_000_000_000 + seq * 100_000_000,
        {"points": points},
        "lidar_top",
    )


def _camera(seq: int) -> Sample:
    image = np.full((24, 32, 3), seq % 256, np.uint8)
    return Sample("camera/front", "camera", seq, 1_000 + seq, {"image": image}, "cam", {"encoding": "rgb8"})


def _same(a: Sample, b: Sample) -> bool:
    return (
        (a.stream, a.modality, a.seq, a.stamp_ns, a.frame_id, a.meta)
        == (b.stream, b.modality, b.seq, b.stamp_ns, b.frame_id, b.meta)
        and list(a.arrays) == list(b.arrays)
        and all(
            a.arrays[k].dtype == b.arrays[k].dtype and np.array_equal(a.arrays[k], b.arrays[k])
            for k in a.arrays
        )
    )


def test_record_is_one_msgpack_array_of_header_and_buffers() -> None:
    sample = _lidar(3)
    frames = encode(sample)
    data = pack_record(frames)
    # Any msgpack library reads it: element 0 is the header map, then one bin per array.
    header, points = msgpack.unpackb(data, raw=False)
    assert header == msgpack.unpackb(bytes(frames[1]), raw=False)
    assert header["arrays"] == [{"name": "points", "dtype": "<f4", "shape": [5, 4]}]
    assert points == sample.arrays["points"].tobytes()
    # Byte layout: fixarray of 2, the header frame verbatim, then bin 32 with a big-endian length.
    assert data[0] == 0x92
    assert data[1 : 1 + len(frames[1])] == bytes(frames[1])
    rest = data[1 + len(frames[1]) :]
    assert rest[0] == 0xC6 and struct.unpack(">I", rest[1:5])[0] == 80 and len(rest) == 85


def test_unpack_accepts_any_bin_width_and_returns_readonly_views() -> None:
    sample = _lidar(1, n=2)
    frames = encode(sample)
    # Written by a third-party msgpack encoder: bin 8 for the 32-byte buffer.
    data = msgpack.packb(
        [msgpack.unpackb(bytes(frames[1])), sample.arrays["points"].tobytes()], use_bin_type=True
    )
    assert data[-34] == 0xC4
    back = unpack_record("lidar/top", data)
    assert _same(back, sample)
    assert not back.arrays["points"].flags.writeable


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x81\xa1a\x01", "not a msgpack array"),
        (msgpack.packb([]), "0 elements"),
        (msgpack.packb([{"v": 1}, b"x"]) + b"\x00", "trailing"),
        (msgpack.packb([{"v": 1}, "not bin"]), "not a msgpack bin"),
        (msgpack.packb([{"v": 2}]), "invalid wire message"),
    ],
)
def test_bad_records_are_refused_naming_the_stream(data: bytes, message: str) -> None:
    with pytest.raises(LogError, match=message) as info:
        unpack_record("radar/front", data)
    assert "radar/front" in str(info.value)


def test_record_limits_apply_before_allocation() -> None:
    frames = encode(_lidar(0, n=1000))
    with pytest.raises(LogError, match="over|limit"):
        unpack_record("lidar/top", pack_record(frames), Limits(max_array_bytes=1000))


def test_round_trip_keeps_every_field_and_mcap_fields(tmp_path: Path) -> None:
    path = tmp_path / "log.mcap"
    samples = [s for i in range(20) for s in (_lidar(i), _camera(i))]
    with LogWriter(path, chunk_bytes=2000, streams={"lidar/top": {"rate_hz": "10"}}) as writer:
        for i, sample in enumerate(samples):
            writer.write(sample, log_time_ns=5_000 + i)
    reader = LogReader(path)
    back = list(reader)
    assert len(back) == len(samples)
    assert all(_same(a, b.sample) for a, b in zip(samples, back, strict=True))
    assert [m.log_time_ns for m in back] == [5_000 + i for i in range(len(samples))]
    assert reader.truncated == []
    assert reader.streams["lidar/top"] == {
        "modality": "lidar",
        "frame_id": "lidar_top",
        "wire_version": "1",
        "rate_hz": "10",
    }
    assert reader.count() == 40 and reader.count(["camera/front"]) == 20
    # What other MCAP tools see: zstd chunks, msgpack channels, publish_time = stamp, sequence = seq.
    with open(path, "rb") as f:
        mcap = make_reader(f)
        summary = mcap.get_summary()
        assert {c.message_encoding for c in summary.channels.values()} == {MESSAGE_ENCODING}
        assert {i.compression for i in summary.chunk_indexes} == {"zstd"} and len(summary.chunk_indexes) > 1
        messages = list(mcap.iter_messages(topics=["lidar/top"]))
        assert [m.publish_time for _, _, m in messages] == [s.stamp_ns for s in samples[::2]]
        assert [m.sequence for _, _, m in messages] == list(range(20))


def test_streams_filter_and_report_metadata(tmp_path: Path) -> None:
    path = tmp_path / "log.mcap"
    writer = LogWriter(path)
    for i in range(3):
        writer.write(_lidar(i), i)
        writer.write(_camera(i), i)
    writer.close({"written": 6})
    reader = LogReader(path)
    assert [m.sample.stream for m in reader.messages(["camera/front"])] == ["camera/front"] * 3
    assert reader.metadata[REPORT_METADATA] == {"written": "6"}


def test_split_by_size_and_duration(tmp_path: Path) -> None:
    by_size = LogWriter(tmp_path / "s.mcap", chunk_bytes=1000, split=SplitPolicy(max_bytes=3000))
    for i in range(30):
        by_size.write(_camera(i), i)  # ~2.3 kB each before compression
    by_size.close()
    assert len(by_size.paths) > 2
    assert by_size.paths[0] == part_path(tmp_path / "s.mcap", 0) == tmp_path / "s_000.mcap"
    back = list(LogReader(by_size.paths))
    assert [m.sample.seq for m in back] == list(range(30))

    by_time = LogWriter(tmp_path / "t.mcap", split=SplitPolicy(max_duration_ns=1_000))
    for i in range(10):
        by_time.write(_lidar(i), log_time_ns=i * 500)
    by_time.close()
    counts = [sum(1 for _ in LogReader(p)) for p in by_time.paths]
    assert counts == [2, 2, 2, 2, 2]
    # Each part but the last names the part that follows it, so that a missing last part can be said.
    assert [next_part(p) for p in by_time.paths] == [*by_time.paths[1:], None]
    assert next_part(tmp_path / "nothing.mcap") is None


def test_parts_that_go_back_in_time_are_refused_not_skipped(tmp_path: Path) -> None:
    """Two drives named as parts of one recording (drive_000, drive_001): the second begins before the
    first ends, so it cannot be the next part; a replay would have dropped its messages silently."""
    paths = [tmp_path / f"drive_00{i}.mcap" for i in range(3)]
    for path, log_times in zip(paths, ((500, 600, 700), (100, 800), (900, 5_000_000_000)), strict=True):
        with LogWriter(path) as writer:
            for seq, log_time in enumerate(log_times):
                writer.write(_lidar(seq), log_time)
    read: list[int] = []
    with pytest.raises(LogError, match=r"drive_001.mcap: begins at log time 100 ns, 0.000 s before .*_000"):
        for message in LogReader(paths[:2]).messages():
            read.append(message.log_time_ns)
    assert read == [500, 600, 700]  # the first part, then the refusal: nothing of the second
    # Parts in time order read through, a gap between them or not.
    assert [m.log_time_ns for m in LogReader([paths[0], paths[2]])] == [500, 600, 700, 900, 5_000_000_000]


def test_a_recording_split_as_the_clock_steps_back_still_reads(tmp_path: Path) -> None:
    """The writer's own parts carry one `recording` id: an NTP step back at a split is no reason to refuse
    the recording (its parts follow each other, whatever their log times say)."""
    parts = [tmp_path / "r_000.mcap", tmp_path / "r_001.mcap"]
    seq = 0
    for path, log_times in zip(parts, ((100, 200, 300), (50, 60)), strict=True):  # stepped back at the split
        with LogWriter(path, metadata={"recording": "one"}) as writer:  # as one writer's split parts
            for log_time in log_times:
                writer.write(_lidar(seq), log_time)
                seq += 1
    assert [m.log_time_ns for m in LogReader(parts)] == [100, 200, 300, 50, 60]
    with LogWriter(tmp_path / "other.mcap") as writer:  # another recording: its own id
        writer.write(_lidar(9), 50)
    with pytest.raises(LogError, match="other.mcap: begins at log time 50 ns"):
        list(LogReader([parts[0], tmp_path / "other.mcap"]))


def test_truncated_file_reads_up_to_its_last_whole_chunk(tmp_path: Path) -> None:
    path = tmp_path / "full.mcap"
    with LogWriter(path, chunk_bytes=3000) as writer:
        for i in range(60):
            writer.write(_camera(i), i)
    data = path.read_bytes()
    for cut in (len(data) // 3, len(data) // 2, len(data) - 100):
        part = tmp_path / f"cut{cut}.mcap"
        part.write_bytes(data[:cut])
        reader = LogReader(part)
        seqs = [m.sample.seq for m in reader]
        # A prefix of the recording, whole messages only, and the reader says the file was cut.
        assert seqs == list(range(len(seqs))) and 0 < len(seqs) <= 60
        assert len(reader.truncated) == 1 and str(part) in reader.truncated[0]
        assert reader.count() is None
        assert list(LogReader(part).scan_streams()) == ["camera/front"]  # no summary: found by reading
    # Cut inside its first chunk: no stream to work on, said as the cut (it was "nothing to replay: no
    # log stream matches a config stream (log has [])", naming neither the file nor the cut).
    first = tmp_path / "first.mcap"
    first.write_bytes(data[:40])
    with pytest.raises(LogError, match=f"^log cut short: {first}: .*; it holds no stream before that$"):
        LogReader(first).scan_streams()
    # A whole file the caller stops reading early (replay --end, Ctrl-C) is not "cut short".
    whole = LogReader(path)
    for _ in zip(range(5), whole, strict=False):
        pass
    assert whole.truncated == []


def test_a_cut_is_said_with_one_count_whichever_streams_are_read(tmp_path: Path) -> None:
    """A replay reads the config's streams only: it said "(1084 messages before it)" where an export of
    the same file said 1183, the count of every stream."""
    path = tmp_path / "full.mcap"
    with LogWriter(path, chunk_bytes=3000) as writer:
        for i in range(60):
            writer.write(_camera(i), 2 * i)
            writer.write(_lidar(i), 2 * i + 1)
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    every, lidar = LogReader(cut), LogReader(cut)
    read = len(list(every))
    assert len(list(lidar.messages(["lidar/top"]))) < read
    assert every.truncated == lidar.truncated and f"({read} messages before it)" in every.truncated[0]


def test_reader_refuses_foreign_files_clearly(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="no such log file"):
        LogReader(tmp_path / "missing.mcap")
    with pytest.raises(LogError, match=f"^{tmp_path}: a directory, not a log file"):
        LogReader(tmp_path)
    os.mkfifo(tmp_path / "fifo.mcap")  # it said "no such log file"
    with pytest.raises(LogError, match=r"fifo.mcap: not a regular file \(a FIFO, a socket or a device\)"):
        LogReader(tmp_path / "fifo.mcap")
    for name, data in (("junk.mcap", b"not an mcap file at all"), ("empty.mcap", b"")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(LogError, match=f"{name}: not an MCAP file"):
            LogReader(tmp_path / name)


@pytest.mark.parametrize(
    ("metadata", "streams", "refused"),
    [
        (
            {"format": "fusion-pipeline-log/2"},
            {},
            "a log of format 'fusion-pipeline-log/2'; this fusion-pipeline reads 'fusion-pipeline-log/1'",
        ),
        (
            {},
            {"lidar/top": {"wire_version": "2"}},
            "channel 'lidar/top' holds wire version 2 messages; this fusion-pipeline reads version 1",
        ),
    ],
    ids=["log-format", "wire-version"],
)
def test_a_log_of_another_version_is_refused_not_read_as_ours(
    tmp_path: Path, metadata: dict, streams: dict, refused: str
) -> None:
    """A log that says another format or wire version was replayed and exported as if it were ours."""
    path = tmp_path / "other.mcap"
    with LogWriter(path, metadata=metadata, streams=streams) as writer:
        writer.write(_lidar(0), 1)
    with pytest.raises(LogError, match=f"^{path}: {re.escape(refused)}"):
        list(LogReader(path))


def test_a_log_is_never_written_over(tmp_path: Path) -> None:
    precious = tmp_path / "keep.mcap"
    precious.write_bytes(b"an earlier recording")
    with pytest.raises(LogError, match="keep.mcap exists already, not overwriting a log"):
        LogWriter(precious)
    assert precious.read_bytes() == b"an earlier recording"


def _chunk_offset(data: bytes) -> int:
    """Byte offset of the first Chunk record of a log (after the magic, Header and Metadata records)."""
    offset = 8
    while data[offset] != 0x06:
        offset += 9 + struct.unpack_from("<Q", data, offset + 1)[0]
    return offset


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        # The record length of the chunk, far beyond the file.
        (1, 2**63, r"record at byte \d+ declares 9223372036854775808 bytes; \d+ are left in the file"),
        # Its uncompressed size (after the start and end times), beyond any chunk a log holds.
        (9 + 16, 2**40, r"chunk declares 1099511627776 bytes uncompressed, a chunk of a log holds at most"),
        # The length of its compression string, beyond the record it is in.
        (9 + 28, 2**32 - 1, "chunk compression name of 4294967295 bytes overruns the record"),
    ],
)
def test_huge_declared_lengths_stop_the_reader_with_a_message(
    tmp_path: Path, field: int, value: int, says: str
) -> None:
    path = tmp_path / "log.mcap"
    with LogWriter(path, chunk_bytes=2000) as writer:
        for i in range(10):
            writer.write(_lidar(i, n=50), i)
    data = bytearray(path.read_bytes())
    at = _chunk_offset(data) + field
    width = 4 if field == 9 + 28 else 8
    data[at : at + width] = value.to_bytes(width, "little")
    damaged = tmp_path / "damaged.mcap"
    damaged.write_bytes(data)
    reader = LogReader(damaged)
    assert list(reader) == [] and reader.count() is not None  # the summary at the end is intact
    assert len(reader.truncated) == 1 and str(damaged) in reader.truncated[0]
    assert re.search(says, reader.truncated[0]), reader.truncated[0]


def test_logs_are_created_private_to_their_owner(tmp_path: Path) -> None:
    old = os.umask(0o002)  # a permissive umask: the log must still be 0600
    try:
        with LogWriter(tmp_path / "log.mcap") as writer:
            writer.write(_lidar(0), 0)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "log.mcap").stat().st_mode) == 0o600


def _chunk_offsets(data: bytes) -> list[int]:
    """Byte offsets of every Chunk record of a log, in file order."""
    offsets, offset = [], 8
    while offset < len(data) - 8 and data[offset] != 0x02:  # up to the Data End record
        if data[offset] == 0x06:
            offsets.append(offset)
        offset += 9 + struct.unpack_from("<Q", data, offset + 1)[0]
    return offsets


@pytest.mark.parametrize("damage", ["none", "cut", "bad chunk"])
def test_chunks_decompressed_on_threads_read_as_in_line(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "log.mcap"
    with LogWriter(path, chunk_bytes=3000) as writer:
        for i in range(80):
            writer.write(_camera(i) if i % 3 else _lidar(i, n=40), i)
    data = bytearray(path.read_bytes())
    chunks = _chunk_offsets(data)
    assert len(chunks) > 10
    if damage == "cut":
        data = data[: chunks[7] + 100]
    elif damage == "bad chunk":  # the 6th chunk's zstd data, past its header fields, overwritten
        data[chunks[5] + 60 : chunks[5] + 90] = b"\xff" * 30
    damaged = tmp_path / "damaged.mcap"
    damaged.write_bytes(data)
    in_line = LogReader(damaged, verify_crcs=True)
    expected = list(in_line)
    assert len(expected) == (80 if damage == "none" else len(expected)) and 0 < len(expected) < 81
    for threads in (2, 3):
        threaded = LogReader(damaged, verify_crcs=True, threads=threads)
        got = list(threaded)
        assert [m.log_time_ns for m in got] == [m.log_time_ns for m in expected]
        assert all(_same(a.sample, b.sample) for a, b in zip(got, expected, strict=True))
        assert threaded.truncated == in_line.truncated
    assert (in_line.truncated == []) == (damage == "none")
    with pytest.raises(ValueError, match="threads must be at least 1"):
        LogReader(damaged, threads=0)


#: A record whose buffer 0 declares 4294967295 bytes (bin 32, 0xffffffff) after an empty header (nil).
_HUGE_BUFFER = b"\x92\xc0\xc6\xff\xff\xff\xff"


def _log_with_one_bad_message(path: Path, chunked: bool, channel_offset: int, data: bytes) -> None:
    """Three lidar messages at log times 1, 2, 3, the second with `data` on channel id + `channel_offset`."""
    good = pack_record(encode(_lidar(0)))
    with open(path, "wb") as f:
        writer = mcap.writer.Writer(f, use_chunking=chunked)
        writer.start(profile="", library="test")
        channel = writer.register_channel("lidar/top", MESSAGE_ENCODING, schema_id=0)
        for log_time, (offset, record) in enumerate([(0, good), (channel_offset, data), (0, good)], 1):
            writer.add_message(channel + offset, log_time, record, publish_time=0)
        writer.finish()


@pytest.mark.parametrize("chunked", [True, False])
@pytest.mark.parametrize(
    ("channel_offset", "data", "says"),
    [
        (0, _HUGE_BUFFER, "stream 'lidar/top': record buffer 0 declares 4294967295 bytes, 0 remain"),
        (7, pack_record(encode(_lidar(1))), r"channel \d+ is not defined before it"),
    ],
)
def test_a_damaged_message_ends_its_file_like_other_damage_naming_where(
    tmp_path: Path, chunked: bool, channel_offset: int, data: bytes, says: str
) -> None:
    damaged, after = tmp_path / "run_000.mcap", tmp_path / "run_001.mcap"
    _log_with_one_bad_message(damaged, chunked, channel_offset, data)
    with LogWriter(after) as writer:
        writer.write(_lidar(9), 10)
    for threads in (1, 2):
        reader = LogReader([damaged, after], threads=threads)
        # The message before the damage is read, the rest of that file is not; the next part is.
        assert [m.log_time_ns for m in reader] == [1, 10]
        assert len(reader.truncated) == 1
        problem = reader.truncated[0]
        where = (
            r"chunk at byte (\d+), record at byte \d+ of the chunk" if chunked else r"record at byte (\d+)"
        )
        match = re.fullmatch(
            f"{re.escape(str(damaged))}: {where}, message 2 \\(log time 2 ns\\): {says}"
            r" \(1 message before it\)",
            problem,
        )
        assert match, problem
        opcode = 0x06 if chunked else 0x05  # the byte named is the Chunk or the Message record
        assert damaged.read_bytes()[int(match[1])] == opcode


def test_a_full_disk_when_a_file_starts_is_a_write_error_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starting a log (or a split recording's next part) on a full disk: LogWriteError naming the file,
    and the file that holds nothing goes, so a retry under the name is not refused."""
    from fusion_pipeline.logs.writer import _DirectFile

    writer = LogWriter(tmp_path / "s.mcap", split=SplitPolicy(max_duration_ns=1_000))
    writer.write(_lidar(0), log_time_ns=0)
    write = _DirectFile.write

    def disk_full_but_for_part_0(self: _DirectFile, data: bytes) -> int:
        if self.path.name != "s_000.mcap":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write(self, data)

    monkeypatch.setattr(_DirectFile, "write", disk_full_but_for_part_0)
    # Part 0's open chunk is written as it is finished: none of its messages is said lost.
    with pytest.raises(
        LogWriteError, match=r"s_001.mcap: write failed \(No space left on device\); 0 messages"
    ):
        writer.write(_lidar(1), log_time_ns=1_000)  # finishes part 0 as the last: part 1 never started
    with pytest.raises(LogWriteError, match=r"new.mcap: write failed \(No space left on device\)"):
        LogWriter(tmp_path / "new.mcap")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s_000.mcap"]
    monkeypatch.undo()
    assert [m.sample.seq for m in LogReader(tmp_path / "s_000.mcap")] == [0]
    assert next_part(tmp_path / "s_000.mcap") is None  # it names no successor that was never written
