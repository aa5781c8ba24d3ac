"""MCAP logs of wire v1 messages: the record layout, a crash-safe writer and a truncation-tolerant reader.

A log is an MCAP file (https://mcap.dev) with one channel per stream. Each MCAP message holds one wire v1
message, losslessly, as one msgpack value (message_encoding ``"msgpack"``)::

    record = msgpack array of 1 + n elements
      [0]      the wire header map, byte for byte as frame 1 of the wire message (docs/PROTOCOL.md s. 3)
      [1..n]   one msgpack bin per entry of header.arrays, in order: the raw array bytes (wire frames 2..)

The writer emits the array header with msgpack's smallest form (fixarray, array 16) and every buffer as
bin 32 (``0xc6``, big-endian uint32 length, bytes); a reader accepts any msgpack array and bin form. The
topic frame is the MCAP channel's topic. The MCAP message fields are: ``log_time`` = the time the
recorder received the message (ns since the UNIX epoch), ``publish_time`` = ``stamp_ns`` (0 for the rare
negative stamp, which the header keeps), ``sequence`` = ``seq`` modulo 2^32 (MCAP's field is 32-bit; the
header keeps the full value). Channels carry no schema (schema id 0) and string metadata that describes
the stream: ``modality``, ``frame_id``, ``wire_version`` and, where known, config fields (``rate_hz``,
``offset_ms``, ``sample_rate``). A metadata record ``fusion_pipeline`` opens each file; the recorder adds
``fusion_pipeline.report`` (its counters) before it closes the file.

Crash safety: chunks are zstd-compressed and written straight to the OS (no user-space buffer) the moment
they are closed, so after ``kill -9`` at most the open chunk is lost. `LogReader` reads a file front to
back and stops cleanly at a truncated tail, saying how much it recovered.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import re
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import mcap.writer
import msgpack
import zstandard
from mcap.data_stream import ReadDataStream
from mcap.exceptions import McapError
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, Message, Metadata, Statistics
from mcap.writer import CompressionType, Writer

from fusion_pipeline.errors import FusionError
from fusion_pipeline.transport.wire import (
    DEFAULT_LIMITS,
    VERSION,
    Buffer,
    Limits,
    Sample,
    WireError,
    decode,
    encode,
)

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "FILE_METADATA",
    "LOG_FORMAT",
    "LOG_MODE",
    "MESSAGE_ENCODING",
    "REPORT_METADATA",
    "LogError",
    "LogMessage",
    "LogWriteError",
    "LogReader",
    "LogWriter",
    "SourceTopics",
    "SplitPolicy",
    "create_log_file",
    "existing_logs",
    "log_sources",
    "pack_record",
    "part_path",
    "unpack_record",
]

log = logging.getLogger(__name__)

MCAP_MAGIC = b"\x89MCAP0\r\n"  # the first 8 bytes of every MCAP file (MCAP spec, "Magic")
MESSAGE_ENCODING = "msgpack"
LOG_FORMAT = "fusion-pipeline-log/1"
FILE_METADATA = "fusion_pipeline"
REPORT_METADATA = "fusion_pipeline.report"
#: Mode of every log and export the project writes (record, replay --results, import-ros2, export-ros2,
#: export-foxglove): a recording holds what the sensors saw, so only its owner may read it. The umask can
#: narrow it further; widen it with chmod where a group must read the logs.
LOG_MODE = 0o600
#: Uncompressed bytes per chunk: bounds both what kill -9 can lose and the reader's memory per chunk.
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024

#: zstd level of the chunks. The mcap writer compresses at zstandard's default (3); level 1 compresses sensor
#: data about twice as fast for a 10 % bigger file, and a recorder must keep up with the sensors first.
ZSTD_LEVEL = 1

_BIN32 = b"\xc6"
_RECORD_HEAD = struct.Struct("<BQ")  # MCAP record: opcode, length of the body
_CHUNK_HEAD = struct.Struct("<QQQI")  # MCAP chunk: start time, end time, uncompressed size and CRC
_MESSAGE_HEAD = struct.Struct("<HIQQ")  # MCAP message: channel id, sequence, log time, publish time
_FOOTER_BYTES = _RECORD_HEAD.size + 8 + 8 + 4  # the Footer record: summary start, summary offset start, CRC
_UINT32_MAX = 2**32 - 1


class LogError(FusionError):
    """A log cannot be written or read; the message names the file."""


class LogWriteError(LogError):
    """Writing failed (disk full, say). `lost` counts, per stream, the messages that were accepted into
    the open chunk but never reached the file: they are lost with it."""

    def __init__(self, message: str, lost: Counter[str]) -> None:
        super().__init__(message)
        self.lost = lost


def pack_record(frames: Sequence[Buffer]) -> bytes:
    """The MCAP message data for the wire frames ``[topic, header, *buffers]`` (layout in the docstring)."""
    parts: list[Buffer] = [msgpack.Packer().pack_array_header(len(frames) - 1), frames[1]]
    for buffer in frames[2:]:
        nbytes = memoryview(buffer).nbytes
        if nbytes > _UINT32_MAX:
            raise LogError(f"an array of {nbytes} bytes does not fit a log record (limit 4 GiB)")
        parts += [_BIN32 + struct.pack(">I", nbytes), buffer]
    return b"".join(parts)


def unpack_record(topic: str, data: Buffer, limits: Limits = DEFAULT_LIMITS) -> Sample:
    """Decode one record back into a Sample (arrays are read-only views of `data`), validating it like a
    wire message: a record cannot make the reader allocate more than `limits` allow."""
    view = memoryview(data)
    unpacker = msgpack.Unpacker(max_buffer_size=limits.max_header_bytes + 16)
    # Only the array header and the header map are parsed by msgpack; the bins are sliced below.
    unpacker.feed(view[: limits.max_header_bytes + 16])
    try:
        count = unpacker.read_array_header()
    except (msgpack.OutOfData, msgpack.FormatError, msgpack.StackError, ValueError) as exc:
        raise LogError(f"stream {topic!r}: record is not a msgpack array: {exc}") from exc
    if not 1 <= count <= limits.max_arrays + 1:
        raise LogError(
            f"stream {topic!r}: record has {count} elements, expected 1 to {limits.max_arrays + 1}"
        )
    header_start = unpacker.tell()
    try:
        unpacker.skip()
    except (msgpack.OutOfData, msgpack.FormatError, msgpack.StackError, ValueError) as exc:
        raise LogError(f"stream {topic!r}: record header is not valid msgpack: {exc}") from exc
    offset = unpacker.tell()
    frames: list[Buffer] = [topic.encode(), view[header_start:offset]]
    for index in range(count - 1):
        offset, buffer = _read_bin(view, offset, topic, index)
        frames.append(buffer)
    if offset != view.nbytes:
        raise LogError(f"stream {topic!r}: record has {view.nbytes - offset} trailing bytes")
    try:
        return decode(frames, limits)
    except WireError as exc:
        raise LogError(f"stream {topic!r}: record holds an invalid wire message: {exc}") from exc


def _read_bin(view: memoryview, offset: int, topic: str, index: int) -> tuple[int, memoryview]:
    widths = {0xC4: 1, 0xC5: 2, 0xC6: 4}
    marker = view[offset] if offset < view.nbytes else None
    if marker not in widths:
        raise LogError(f"stream {topic!r}: record buffer {index} is not a msgpack bin")
    width = widths[marker]
    start = offset + 1 + width
    if start > view.nbytes:
        raise LogError(f"stream {topic!r}: record buffer {index} is cut short")
    length = int.from_bytes(view[offset + 1 : start], "big")
    if start + length > view.nbytes:
        raise LogError(f"stream {topic!r}: record buffer {index} declares {length} bytes, fewer remain")
    return start + length, view[start : start + length]


@dataclass(frozen=True)
class SplitPolicy:
    """When a recording moves on to its next file: after `max_bytes` written or `max_duration_ns` of
    log time, whichever comes first. None for both = one file."""

    max_bytes: int | None = None
    max_duration_ns: int | None = None

    @property
    def enabled(self) -> bool:
        return self.max_bytes is not None or self.max_duration_ns is not None


def part_path(path: str | Path, index: int) -> Path:
    """Name of part `index` of a split recording: ``run.mcap`` -> ``run_000.mcap``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_{index:03d}{path.suffix or '.mcap'}")


class _ZstdLevel:
    """What mcap.writer uses of the zstandard module (``compress``), at ZSTD_LEVEL.

    mcap's Writer has no compression-level option: it calls ``zstandard.compress`` through its module
    global, which this module points here, for every mcap Writer in the process (the Foxglove export's
    too). ``zstandard.compress`` with a level is a pure function, safe from any thread."""

    @staticmethod
    def compress(data: bytes) -> bytes:
        return zstandard.compress(data, level=ZSTD_LEVEL)


mcap.writer.zstandard = _ZstdLevel  # type: ignore[attr-defined]


def existing_logs(paths: Iterable[str | Path]) -> list[Path]:
    """The input logs, each checked to be a file: a converter checks before it creates its output, so
    that a bad input leaves nothing behind."""
    logs = [Path(p) for p in paths]
    for path in logs:
        if not path.is_file():
            raise LogError(f"{path}: no such log file")
    return logs


def create_log_file(path: Path) -> int:
    """A new file for a log or an export, open for writing (the descriptor), mode LOG_MODE narrowed by
    the umask; never over an existing file: a log is a recording that cannot be made again."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, LOG_MODE)
    except FileExistsError:
        raise LogError(f"{path} exists already, not overwriting a log") from None
    except OSError as exc:
        raise LogError(f"{path}: cannot create log: {exc.strerror}") from exc


def log_sources(paths: Sequence[Path]) -> list[tuple[str, list[Path]]]:
    """The inputs of an export grouped by recording, in order: consecutive parts of a split recording
    (``NAME_000.mcap``, ``NAME_001.mcap``, ...) are one source named NAME, any other file a source named
    by its stem; a name that comes twice gets ``-2``, ``-3``, ... ."""
    sources: list[tuple[str, list[Path]]] = []
    for path in paths:
        match = re.fullmatch(r"(.+)_(\d{3})", path.stem)
        base = match[1] if match else path.stem
        index = int(match[2]) if match else 0
        if (
            index
            and sources
            and sources[-1][1][-1] == part_path(path.with_name(base + path.suffix), index - 1)
        ):
            sources[-1][1].append(path)
            continue
        name = base if index == 0 else path.stem
        taken = {n for n, _ in sources}
        unique = next(c for c in (name, *(f"{name}-{n}" for n in range(2, len(paths) + 2))) if c not in taken)
        sources.append((unique, [path]))
    return sources


class SourceTopics:
    """Topic names of an export: ``/STREAM`` for the first source that holds the stream, and
    ``/STREAM@SOURCE`` for the same stream in a later source (the live results of a recording and the
    replayed ones of its ``--results`` log, say), so that no topic merges two sources. A topic is owned
    by one (source, stream): where that name is taken already (a stream literally named
    ``result/fused@b``, say) the next free ``/STREAM@SOURCE#2``, ``#3``, ... is used instead."""

    def __init__(self) -> None:
        self._owners: dict[str, tuple[str, str]] = {}  # topic -> the (source, stream) it holds
        self._topics: dict[tuple[str, str], str] = {}  # (source, stream) -> its topic
        #: "STREAM of SOURCE -> TOPIC (...)" for every stream that did not get its plain topic.
        self.renamed: list[str] = []

    def topic(self, stream: str, source: str) -> str:
        key = (source, stream)
        if key in self._topics:
            return self._topics[key]
        plain = "/" + stream
        renamed = f"{plain}@{source}"
        taken: list[str] = []
        for topic in itertools.chain((plain, renamed), (f"{renamed}#{n}" for n in itertools.count(2))):
            if topic not in self._owners:
                break
            taken.append(topic)
        self._owners[topic] = key
        self._topics[key] = topic
        if taken:  # say whose each skipped name is: the same stream of another source, or another stream
            whose = [
                f"{t} holds {owner}'s" + ("" if held == stream else f" {held}")
                for t in taken
                for owner, held in [self._owners[t]]
            ]
            self.renamed.append(f"{stream} of {source} -> {topic} ({'; '.join(whose)})")
        return topic


class _DirectFile:
    """An unbuffered output file: each MCAP record reaches the OS as the writer emits it, so a closed
    chunk survives kill -9 of the process (the page cache belongs to the kernel)."""

    def __init__(self, path: Path) -> None:
        self._fd = create_log_file(path)
        self.path = path
        self._position = 0

    def write(self, data: Buffer) -> int:
        view = memoryview(data).cast("B")
        while view.nbytes:
            written = os.write(self._fd, view)
            view = view[written:]
            self._position += written
        return self._position

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        """Nothing is buffered here; present because the mcap writer may call it."""

    def close(self) -> None:
        os.close(self._fd)


@dataclass
class _Part:
    """One open file of a (possibly split) recording."""

    file: _DirectFile
    writer: Writer
    channels: dict[str, int] = field(default_factory=dict)
    first_log_ns: int | None = None


class LogWriter:
    """Writes wire samples to an MCAP log, one channel per stream, rolling over to new files by `split`.

    >>> with LogWriter("run.mcap") as out:
    ...     out.write(sample, log_time_ns=time.time_ns())
    """

    def __init__(
        self,
        path: str | Path,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        split: SplitPolicy | None = None,
        metadata: Mapping[str, str] | None = None,
        streams: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.path = Path(path)
        self.chunk_bytes = chunk_bytes
        self.split = split or SplitPolicy()
        self.metadata = {"format": LOG_FORMAT, **(metadata or {})}
        self.stream_metadata = {name: dict(meta) for name, meta in (streams or {}).items()}
        self.paths: list[Path] = []
        self.written = 0
        self.bytes_in = 0
        self._pending: Counter[str] = Counter()
        self._part: _Part | None = None
        self._open_part()

    def write(self, sample: Sample, log_time_ns: int) -> None:
        """Append one sample received at `log_time_ns`."""
        self.write_frames(encode(sample), sample, log_time_ns)

    def write_frames(self, frames: Sequence[Buffer], sample: Sample, log_time_ns: int) -> None:
        """Append the wire frames of `sample` as they are (the recorder has both at hand)."""
        part = self._current(log_time_ns)
        channel = part.channels.get(sample.stream)
        if channel is None:
            channel = self._register(part, sample)
        data = pack_record(frames)
        flushed_at = part.file.tell()
        self._pending[sample.stream] += 1
        try:
            part.writer.add_message(
                channel_id=channel,
                log_time=log_time_ns,
                data=data,
                publish_time=max(sample.stamp_ns, 0),
                sequence=sample.seq & _UINT32_MAX,
            )
        except OSError as exc:
            raise self._write_error(part, exc) from exc
        if part.file.tell() != flushed_at:  # a chunk went out, with this message in it
            self._pending.clear()
        self.written += 1
        self.bytes_in += len(data)

    @property
    def pending(self) -> int:
        """Messages in the open chunk: not in the file yet."""
        return sum(self._pending.values())

    def close(self, report: Mapping[str, Any] | None = None) -> None:
        """Finish the open file (summary and index), after writing `report` as its report metadata."""
        part, self._part = self._part, None
        if part is None:
            return
        try:
            if report:
                part.writer.add_metadata(REPORT_METADATA, {k: str(v) for k, v in report.items()})
            part.writer.finish()
        except OSError as exc:
            raise self._write_error(part, exc) from exc
        finally:
            with contextlib.suppress(OSError):
                part.file.close()
        self._pending.clear()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _write_error(self, part: _Part, exc: OSError) -> LogWriteError:
        lost, self._pending = self._pending, Counter()
        return LogWriteError(
            f"{part.file.path}: write failed ({exc.strerror}); {sum(lost.values())} messages of the open "
            "chunk are lost",
            lost,
        )

    def _current(self, log_time_ns: int) -> _Part:
        part = self._part
        if part is None:
            raise LogError(f"{self.path}: log is closed")
        if part.first_log_ns is None:
            part.first_log_ns = log_time_ns
        split = self.split
        due = (split.max_bytes is not None and part.file.tell() >= split.max_bytes) or (
            split.max_duration_ns is not None and log_time_ns - part.first_log_ns >= split.max_duration_ns
        )
        if due and part.channels:
            self.close()
            self._open_part()
            part = self._part
            assert part is not None
            part.first_log_ns = log_time_ns
        return part

    def _open_part(self) -> None:
        path = part_path(self.path, len(self.paths)) if self.split.enabled else self.path
        file = _DirectFile(path)
        writer = Writer(file, chunk_size=self.chunk_bytes, compression=CompressionType.ZSTD)  # type: ignore[arg-type]
        writer.start(profile="", library=LOG_FORMAT)
        writer.add_metadata(FILE_METADATA, {**self.metadata, "part": str(len(self.paths))})
        self.paths.append(path)
        self._part = _Part(file, writer)

    def _register(self, part: _Part, sample: Sample) -> int:
        meta = {
            "modality": sample.modality,
            "frame_id": sample.frame_id,
            "wire_version": str(VERSION),
            **self.stream_metadata.get(sample.stream, {}),
        }
        channel = part.writer.register_channel(sample.stream, MESSAGE_ENCODING, schema_id=0, metadata=meta)
        part.channels[sample.stream] = channel
        return channel


@dataclass
class _Summary:
    """What the project reads from an MCAP summary section: the channels and the per-channel counts."""

    channels: list[Channel]
    message_counts: dict[int, int] | None  # None when the summary has no statistics


def _summary(path: Path, limits: Limits) -> _Summary | None:
    """The summary at the end of a finished file; None if it has none or it is damaged (the caller then
    reads the file through, which reports the damage)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            tail = _FOOTER_BYTES + len(MCAP_MAGIC)
            if size < len(MCAP_MAGIC) + tail:
                return None
            f.seek(size - tail)
            opcode, _, summary_start = struct.unpack_from("<BQQ", f.read(tail))
            if opcode != Opcode.FOOTER or not len(MCAP_MAGIC) <= summary_start < size - tail:
                return None
            channels, counts = [], None
            for offset, opcode, body in _file_records(f, summary_start, size, limits, path):
                record = _parse(opcode, body, f"{path}: summary record at byte {offset}")
                if isinstance(record, Channel):
                    channels.append(record)
                elif isinstance(record, Statistics):
                    counts = record.channel_message_counts
            return _Summary(channels, counts)
    except (LogError, OSError):
        return None


def _max_chunk_bytes(limits: Limits) -> int:
    """The most a chunk of a log holds uncompressed: the writer closes a chunk at DEFAULT_CHUNK_BYTES, after
    the message that crosses it, whose record the limits bound (plus its framing). A larger declared size
    is damage, refused before anything is allocated for it."""
    return (
        DEFAULT_CHUNK_BYTES + limits.max_total_bytes + limits.max_header_bytes + 64 * (limits.max_arrays + 4)
    )


def _file_records(
    f: BinaryIO, start: int, end: int, limits: Limits, path: Path, verify_crcs: bool = False
) -> Iterator[tuple[int, int, memoryview]]:
    """(offset, opcode, body) of the top-level records of an MCAP file from byte `start` up to the Footer
    (or `end`), each declared length checked against what is left before it is read. With `verify_crcs`
    the Data End record's data section CRC is checked; the closing magic after the Footer always is."""
    f.seek(start)
    crc = zlib.crc32(MCAP_MAGIC) if verify_crcs else 0
    offset = start
    limit = _max_chunk_bytes(limits)
    while offset < end:
        head = f.read(_RECORD_HEAD.size)
        if len(head) < _RECORD_HEAD.size:
            raise LogError(f"{path}: cut short in the record header at byte {offset}")
        opcode, length = _RECORD_HEAD.unpack(head)
        left = end - offset - _RECORD_HEAD.size
        if length > min(left, limit):
            raise LogError(
                f"{path}: record at byte {offset} declares {length} bytes; {left} are left in the file "
                f"and a record of a log holds at most {limit}"
            )
        body = memoryview(f.read(length))
        if opcode == Opcode.DATA_END and verify_crcs:
            expected = struct.unpack_from("<I", body)[0] if length >= 4 else 0
            if expected not in (0, crc):
                raise LogError(f"{path}: data section CRC is {crc:#010x}, the file says {expected:#010x}")
        if verify_crcs:
            crc = zlib.crc32(body, zlib.crc32(head, crc))
        yield offset, opcode, body
        offset += _RECORD_HEAD.size + length
        if opcode == Opcode.FOOTER:
            if f.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
                raise LogError(
                    f"{path}: the footer at byte {offset - length - 9} is not followed by the magic"
                )
            return
    raise LogError(f"{path}: ends at byte {offset} without a footer")


#: The record readers of the mcap library for the records a log holds; others are skipped unread.
_READERS: dict[int, Callable[[ReadDataStream], Any]] = {
    Opcode.CHANNEL: Channel.read,
    Opcode.METADATA: Metadata.read,
    Opcode.STATISTICS: Statistics.read,
}


def _parse(opcode: int, body: memoryview, where: str) -> Any:
    """The record of `opcode` in `body`, None for a kind the reader skips. mcap's readers run on `body`
    only, so a damaged length inside a record can read no further than the record itself."""
    if opcode == Opcode.MESSAGE:
        if body.nbytes < _MESSAGE_HEAD.size:
            raise LogError(f"{where}: message record of {body.nbytes} bytes is too short")
        channel_id, sequence, log_time, publish_time = _MESSAGE_HEAD.unpack_from(body)
        # The data stays a view of the chunk: unpack_record slices the arrays out of it without a copy.
        return Message(channel_id, log_time, body[_MESSAGE_HEAD.size :], publish_time, sequence)  # type: ignore[arg-type]
    if opcode == Opcode.CHUNK:
        return _chunk(body, where)
    read = _READERS.get(opcode)
    if read is None:
        return None
    try:
        return read(ReadDataStream(io.BytesIO(body)))
    # A damaged field reads as the end of the record (EndOfFile, struct.error), bad UTF-8 (ValueError)
    # or a length no buffer can have (OverflowError).
    except (McapError, struct.error, ValueError, OverflowError) as exc:
        raise LogError(f"{where}: damaged {Opcode(opcode).name} record: {type(exc).__name__} {exc}") from exc


def _chunk(body: memoryview, where: str) -> Chunk:
    """A Chunk record whose data is a view of `body` (mcap's reader would copy it twice)."""
    if body.nbytes < _CHUNK_HEAD.size + 4:
        raise LogError(f"{where}: chunk record of {body.nbytes} bytes is too short")
    start_time, end_time, size, crc = _CHUNK_HEAD.unpack_from(body)
    offset = _CHUNK_HEAD.size
    (length,) = struct.unpack_from("<I", body, offset)
    offset += 4 + length
    if offset + 8 > body.nbytes:
        raise LogError(f"{where}: chunk compression name of {length} bytes overruns the record")
    try:
        compression = str(body[offset - length : offset], "utf-8")
    except UnicodeDecodeError as exc:
        raise LogError(f"{where}: chunk compression name is not UTF-8") from exc
    (records,) = struct.unpack_from("<Q", body, offset)
    offset += 8
    if records > body.nbytes - offset:
        raise LogError(f"{where}: chunk declares {records} bytes of records, {body.nbytes - offset} are left")
    return Chunk(
        compression=compression,
        data=body[offset : offset + records],  # type: ignore[arg-type]
        message_end_time=end_time,
        message_start_time=start_time,
        uncompressed_crc=crc,
        uncompressed_size=size,
    )


def _inflate(chunk: Chunk, limits: Limits, where: str) -> bytes:
    """The uncompressed records of a chunk, checked against its declared size, which is checked against
    the log's bound first; zstd output is read in pieces, so a damaged frame header that declares any
    content size cannot make it allocate more than the chunk declares."""
    size, limit = chunk.uncompressed_size, _max_chunk_bytes(limits)
    if size > limit:
        raise LogError(
            f"{where}: chunk declares {size} bytes uncompressed, a chunk of a log holds at most {limit}"
        )
    if chunk.compression == "":
        data = bytes(chunk.data)
    elif chunk.compression == "zstd":
        try:
            data = _unzstd(chunk.data, size)
        except zstandard.ZstdError as exc:
            raise LogError(f"{where}: chunk does not decompress: {exc}") from exc
    else:
        raise LogError(f"{where}: chunk compression {chunk.compression!r}; a log uses 'zstd' or none")
    if len(data) != size:
        raise LogError(
            f"{where}: chunk holds {len(data)}{'+' if len(data) > size else ''} bytes, it declares {size}"
        )
    return data


def _unzstd(data: Buffer, size: int) -> bytes:
    """A zstd frame's content, at most `size` + 1 bytes of it. A frame that states `size` as its content
    size (as every writer's does) decompresses in one call into a buffer of that size; any other is read
    in pieces, so that a content size a damaged frame header states is never allocated."""
    dctx = zstandard.ZstdDecompressor()
    if zstandard.frame_content_size(data) == size:
        return dctx.decompress(data, max_output_size=size)
    pieces, total = [], 0
    with dctx.stream_reader(data) as reader:
        while total <= size and (piece := reader.read(min(1 << 20, size + 1 - total))):
            pieces.append(piece)
            total += len(piece)
    return b"".join(pieces)


def _chunk_records(chunk: Chunk, limits: Limits, verify_crcs: bool, where: str) -> Iterator[Any]:
    """The records inside a chunk, each length checked against what is left of the chunk."""
    data = _inflate(chunk, limits, where)
    if verify_crcs and chunk.uncompressed_crc not in (0, zlib.crc32(data)):
        raise LogError(f"{where}: chunk CRC does not match its data")
    view, offset = memoryview(data), 0
    while offset < view.nbytes:
        if offset + _RECORD_HEAD.size > view.nbytes:
            raise LogError(f"{where}: cut short in the record header at byte {offset} of the chunk")
        opcode, length = _RECORD_HEAD.unpack_from(view, offset)
        start = offset + _RECORD_HEAD.size
        if length > view.nbytes - start:
            raise LogError(
                f"{where}: record at byte {offset} of the chunk declares {length} bytes, "
                f"{view.nbytes - start} are left"
            )
        offset = start + length
        record = _parse(opcode, view[start:offset], f"{where}, byte {start - 9} of the chunk")
        if record is not None:
            yield record


@dataclass
class LogMessage:
    """One message read back: the sample and the time the recorder received it."""

    sample: Sample
    log_time_ns: int


@dataclass
class _FileState:
    """What reading one file found, beyond its messages."""

    path: Path
    complete: bool = False
    error: str = ""
    messages: int = 0


class LogReader:
    """Reads one log, or the parts of a split one in order, front to back (= receive order).

    Reading does not need the MCAP summary, so a file cut short by a crash reads up to its last whole
    chunk; `truncated` then names the file and what stopped the reader. `verify_crcs=False` skips the
    CRC checks of the file and of every decompressed chunk (about a third of the reading time); the
    records' structure and every message's wire limits are still checked. Messages of channels with another
    encoding (a Foxglove export, say) are refused with a LogError.
    """

    def __init__(
        self,
        paths: str | Path | Iterable[str | Path],
        limits: Limits = DEFAULT_LIMITS,
        *,
        verify_crcs: bool = True,
    ) -> None:
        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        if not self.paths:
            raise LogError("no log file given")
        for path in existing_logs(self.paths):
            try:
                with open(path, "rb") as f:
                    magic = f.read(len(MCAP_MAGIC))
            except OSError as exc:
                raise LogError(f"{path}: cannot read: {exc.strerror}") from exc
            if magic != MCAP_MAGIC:  # a cut-short log still starts with it
                raise LogError(f"{path}: not an MCAP file (it does not start with the MCAP magic)")
        self.limits = limits
        self.verify_crcs = verify_crcs
        self.streams: dict[str, dict[str, str]] = {}
        self.metadata: dict[str, dict[str, str]] = {}
        self.files: list[_FileState] = []

    @property
    def truncated(self) -> list[str]:
        """'PATH: reason' for every file whose reading stopped at a damaged or missing tail (not a file
        the caller simply stopped reading)."""
        return [f"{f.path}: {f.error}" for f in self.files if f.error]

    def scan_streams(self) -> dict[str, dict[str, str]]:
        """Channel metadata of every stream in the logs: from a file's summary when it has one, else by
        reading the file through (a recording cut short)."""
        for path in self.paths:
            summary = _summary(path, self.limits)
            channels = summary.channels if summary is not None else None
            if channels is None:
                channels = [
                    r for r in self._records(_FileState(path), self.verify_crcs) if isinstance(r, Channel)
                ]
            for channel in channels:
                self._add_channel(channel, path)
        return self.streams

    def count(self, streams: Iterable[str] | None = None) -> int | None:
        """How many messages `messages(streams)` yields, from the files' summaries; None when a file has
        none (a recording cut short), so the caller must not rely on a total."""
        wanted = None if streams is None else set(streams)
        total = 0
        for path in self.paths:
            summary = _summary(path, self.limits)
            if summary is None or summary.message_counts is None:
                return None
            topics = {c.id: c.topic for c in summary.channels}
            total += sum(
                n
                for channel, n in summary.message_counts.items()
                if wanted is None or topics.get(channel) in wanted
            )
        return total

    def __iter__(self) -> Iterator[LogMessage]:
        return self.messages()

    def messages(self, streams: Iterable[str] | None = None) -> Iterator[LogMessage]:
        """Every message, in file order; only `streams` when given."""
        wanted = None if streams is None else set(streams)
        self.files = []
        for path in self.paths:
            state = _FileState(path)
            self.files.append(state)
            channels: dict[int, str] = {}
            for record in self._records(state, self.verify_crcs):
                if isinstance(record, Message):
                    topic = channels.get(record.channel_id)
                    if topic is None:
                        raise LogError(f"{path}: message on unknown channel {record.channel_id}")
                    if wanted is None or topic in wanted:
                        state.messages += 1
                        yield LogMessage(unpack_record(topic, record.data, self.limits), record.log_time)
                elif isinstance(record, Channel):
                    channels[record.id] = record.topic
                    self._add_channel(record, path)
                elif isinstance(record, Metadata):
                    self.metadata[record.name] = dict(record.metadata)
            if not state.complete:
                log.warning("%s: log ends early (%s); read %d messages", path, state.error, state.messages)

    def _add_channel(self, record: Channel, path: Path) -> None:
        if record.message_encoding != MESSAGE_ENCODING:
            raise LogError(
                f"{path}: channel {record.topic!r} has message encoding {record.message_encoding!r}; "
                f"a fusion-pipeline log uses {MESSAGE_ENCODING!r}"
            )
        self.streams.setdefault(record.topic, dict(record.metadata))

    def _records(self, state: _FileState, verify_crcs: bool) -> Iterator[Any]:
        """Every record of one file in order, chunks opened; a damaged or missing part (a crash leaves a
        partial record at the tail) ends the file, and `state` says where and why."""
        path = state.path
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                records = _file_records(f, len(MCAP_MAGIC), size, self.limits, path, verify_crcs)
                for offset, opcode, body in records:
                    where = f"{path}: record at byte {offset}"
                    record = _parse(opcode, body, where)
                    if isinstance(record, Chunk):
                        yield from _chunk_records(record, self.limits, verify_crcs, where)
                    elif record is not None:
                        yield record
            state.complete = True
        except LogError as exc:
            state.error = str(exc).removeprefix(f"{path}: ")
        except OSError as exc:
            state.error = f"cannot read: {exc.strerror}"
