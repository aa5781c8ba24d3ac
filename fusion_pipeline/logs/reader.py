"""The truncation-tolerant log reader: `LogReader`, the checked walk over MCAP records, `prefetch`.

Reading does not need the MCAP summary, so a file cut short by a crash reads up to its last whole chunk
and the reader says how much it recovered. Every declared length is checked against what is left (and a
chunk's against the most a log's chunk holds) before anything is allocated for it. Damage anywhere (the
file's records, a chunk, one message's data) ends the reading of that file at the damage, which the
reader reports with the file and the byte offset. The record layout is in `fusion_pipeline.logs.records`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import mmap
import os
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import Full, Queue
from typing import Any, BinaryIO, TypeVar

import zstandard
from mcap.data_stream import ReadDataStream
from mcap.exceptions import McapError
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, Message, Metadata, MetadataIndex, Statistics

from fusion_pipeline.files import not_a_file
from fusion_pipeline.logs.errors import LogError
from fusion_pipeline.logs.records import (
    DEFAULT_CHUNK_BYTES,
    FILE_METADATA,
    LOG_FORMAT,
    MESSAGE_ENCODING,
    NEXT_PART_METADATA,
    REPLAYED_BY,
    unpack_record,
)
from fusion_pipeline.transport.wire import DEFAULT_LIMITS, VERSION, Buffer, Limits, Sample

__all__ = [
    "PREFETCH",
    "LogMessage",
    "LogReader",
    "existing_logs",
    "next_part",
    "prefetch",
    "recording_id",
    "say_cut_short",
]


log = logging.getLogger(__name__)

MCAP_MAGIC = b"\x89MCAP0\r\n"  # the first 8 bytes of every MCAP file (MCAP spec, "Magic")
_RECORD_HEAD = struct.Struct("<BQ")  # MCAP record: opcode, length of the body
_CHUNK_HEAD = struct.Struct("<QQQI")  # MCAP chunk: start time, end time, uncompressed size and CRC
_MESSAGE_HEAD = struct.Struct("<HIQQ")  # MCAP message: channel id, sequence, log time, publish time
_FOOTER_BYTES = _RECORD_HEAD.size + 8 + 8 + 4  # the Footer record: summary start, summary offset start, CRC


def say_cut_short(problems: Iterable[str], done: str) -> None:
    """A warning per log cut short (`LogReader.truncated`), saying what was `done` with what it holds:
    the reader itself logs nothing of it, so that its caller says it once, in its own terms."""
    for problem in problems:
        log.warning("log cut short: %s; %s", problem, done)


def existing_logs(paths: Iterable[str | Path]) -> list[Path]:
    """The input logs, each checked to be a file and given once: they are read as the parts of one
    recording, so a log given twice would be read twice over, its seq and stamps going back. A converter
    checks before it creates its output, so that a bad input leaves nothing behind."""
    logs = [Path(p) for p in paths]
    seen: set[Path] = set()
    for path in logs:
        if problem := not_a_file(path, "log file"):
            hint = " (give its .mcap files; batch takes one)" if path.is_dir() else ""
            raise LogError(f"{path}: {problem}{hint}")
        if (resolved := path.resolve()) in seen:
            raise LogError(f"{path}: given twice (both are {resolved}); give each log, or split part, once")
        seen.add(resolved)
    return logs


@dataclass
class _Summary:
    """What the project reads from an MCAP summary section: the channels and the per-channel counts."""

    channels: list[Channel]
    message_counts: dict[int, int] | None  # None when the summary has no statistics
    metadata: dict[str, dict[str, str]]  # name -> record, of the metadata records the summary indexes


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
            channels, counts, indexes = [], None, []
            with _mapped(f) as data:
                for offset, opcode, body in _file_records(data, summary_start, size, limits, path):
                    record = _parse(opcode, body, f"{path}: summary record at byte {offset}")
                    if isinstance(record, Channel):
                        channels.append(record)
                    elif isinstance(record, Statistics):
                        counts = record.channel_message_counts
                    elif isinstance(record, MetadataIndex):
                        indexes.append(record)
                metadata = {}
                for index in indexes:  # each a record of its own in the data section, `length` bytes long
                    where = f"{path}: metadata record at byte {index.offset}"
                    records = _file_records(data, index.offset, index.offset + index.length, limits, path)
                    record = _parse(*next(records)[1:], where)
                    if isinstance(record, Metadata):
                        metadata[record.name] = dict(record.metadata)
            return _Summary(channels, counts, metadata)
    except (LogError, OSError):
        return None


def next_part(path: Path, limits: Limits = DEFAULT_LIMITS) -> Path | None:
    """The path of the part that continues the split recording `path` is a part of, from the metadata
    the writer ends such a part with; None for a recording's last part, a log of one file, or a file
    without a readable summary (cut short: its recording ended there; reading it says what is wrong)."""
    name = _file_metadata(path, NEXT_PART_METADATA, limits).get("next_part")
    return path.with_name(name) if name and Path(name).name == name else None


def recording_id(path: Path, limits: Limits = DEFAULT_LIMITS) -> str | None:
    """The id the writer gave the recording `path` is (a part of), from the metadata it opens each file
    with; None for a file without it (another writer's) or too damaged to read it."""
    recording = _file_metadata(path, FILE_METADATA, limits, at_start=True).get("recording")
    return recording or None


def _file_metadata(path: Path, name: str, limits: Limits, at_start: bool = False) -> dict[str, str]:
    """The metadata record `name` of the log `path` from its summary; of a file without one (cut short)
    where `at_start`, from the records before its first chunk, where the writer puts the metadata it
    opens a file with. {} when it is not found."""
    if not path.is_file():  # a FIFO would block the open
        return {}
    summary = _summary(path, limits)
    if summary is not None or not at_start:
        return {} if summary is None else summary.metadata.get(name, {})
    try:
        with open(path, "rb") as f, _mapped(f) as data:
            if bytes(data[: len(MCAP_MAGIC)]) != MCAP_MAGIC:
                return {}
            for offset, opcode, body in _file_records(data, len(MCAP_MAGIC), data.nbytes, limits, path):
                if opcode in (Opcode.CHUNK, Opcode.MESSAGE):
                    break
                record = _parse(opcode, body, f"{path}: record at byte {offset}")
                if isinstance(record, Metadata) and record.name == name:
                    return dict(record.metadata)
    except (LogError, OSError, ValueError):  # ValueError: mmap of an empty file
        pass
    return {}


def _max_chunk_bytes(limits: Limits) -> int:
    """The most a chunk of a log holds uncompressed: the writer closes a chunk at DEFAULT_CHUNK_BYTES, after
    the message that crosses it, whose record the limits bound (plus its framing). A larger declared size
    is damage, refused before anything is allocated for it."""
    return (
        DEFAULT_CHUNK_BYTES + limits.max_total_bytes + limits.max_header_bytes + 64 * (limits.max_arrays + 4)
    )


@contextlib.contextmanager
def _mapped(f: BinaryIO) -> Iterator[memoryview]:
    """The file's bytes, mapped read-only: records are sliced out of the page cache, not copied out of
    it (a 60 s demo log is 1.5 GB). A record whose data outlives the reading is copied by the caller."""
    mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mapping)
    try:
        yield view
    finally:
        view.release()
        # A slice still alive (an exception's traceback holds one) keeps the mapping open until it goes.
        with contextlib.suppress(BufferError):
            mapping.close()


def _file_records(
    data: memoryview, start: int, end: int, limits: Limits, path: Path, verify_crcs: bool = False
) -> Iterator[tuple[int, int, memoryview]]:
    """(offset, opcode, body) of the top-level records of an MCAP file's bytes `data` from byte `start`
    up to the Footer (or `end`), each declared length checked against what is left before it is sliced.
    With `verify_crcs` the Data End record's data section CRC is checked; the closing magic after the
    Footer always is. Each body is a view of `data`."""
    crc = zlib.crc32(MCAP_MAGIC) if verify_crcs else 0
    offset = start
    end = min(end, data.nbytes)
    limit = _max_chunk_bytes(limits)
    while offset < end:
        head_end = offset + _RECORD_HEAD.size
        if head_end > end:
            raise LogError(f"{path}: cut short in the record header at byte {offset}")
        opcode, length = _RECORD_HEAD.unpack_from(data, offset)
        left = end - head_end
        if length > min(left, limit):
            raise LogError(
                f"{path}: record at byte {offset} declares {length} bytes; {left} are left in the file "
                f"and a record of a log holds at most {limit}"
            )
        body = data[head_end : head_end + length]
        if opcode == Opcode.DATA_END and verify_crcs:
            expected = struct.unpack_from("<I", body)[0] if length >= 4 else 0
            if expected not in (0, crc):
                raise LogError(f"{path}: data section CRC is {crc:#010x}, the file says {expected:#010x}")
        if verify_crcs:
            crc = zlib.crc32(body, zlib.crc32(data[offset:head_end], crc))
        yield offset, opcode, body
        offset = head_end + length
        if opcode == Opcode.FOOTER:
            if data[offset : offset + len(MCAP_MAGIC)] != MCAP_MAGIC:
                raise LogError(
                    f"{path}: the footer at byte {offset - length - 9} is not followed by the magic"
                )
            return
    raise LogError(f"{path}: ends at byte {offset} without a footer")


#: The record readers of the mcap library for the records a log holds; others are skipped unread.
_READERS: dict[int, Callable[[ReadDataStream], Any]] = {
    Opcode.CHANNEL: Channel.read,
    Opcode.METADATA: Metadata.read,
    Opcode.METADATA_INDEX: MetadataIndex.read,
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


def _chunk_data(chunk: Chunk, limits: Limits, verify_crcs: bool, where: str) -> bytes:
    """A chunk's records, decompressed and (with `verify_crcs`) checked against its CRC. Safe on any
    thread: zstd and zlib release the GIL."""
    data = _inflate(chunk, limits, where)
    if verify_crcs and chunk.uncompressed_crc not in (0, zlib.crc32(data)):
        raise LogError(f"{where}: chunk CRC does not match its data")
    return data


def _chunk_records(data: bytes, where: str) -> Iterator[tuple[str, Any]]:
    """(where, record) of the records inside a chunk's data (`where` the chunk's), each length checked
    against what is left of the chunk."""
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
        record_where = f"{where}, record at byte {offset} of the chunk"
        offset = start + length
        record = _parse(opcode, view[start:offset], record_where)
        if record is not None:
            yield record_where, record


#: Chunks decompressed ahead of the reading per worker thread (LogReader `threads` > 1).
INFLATE_AHEAD = 2

#: Messages read and decompressed ahead by `prefetch`'s thread (zstd and file reads release the GIL), so
#: reading overlaps the consumer's work: a replay's waits on the clock and on the graph, the offline
#: graph's stages.
PREFETCH = 32

_T = TypeVar("_T")
_DONE = object()


def prefetch(items: Iterable[_T], depth: int = PREFETCH) -> Generator[_T, None, None]:
    """Iterate `items` in a background thread, up to `depth` ahead; its exceptions re-raise here."""
    queue: Queue[object] = Queue(maxsize=depth)
    closing = threading.Event()

    def put(item: object) -> bool:
        """Hand `item` over unless the consumer stopped (it may never take another item)."""
        while not closing.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(exc)

    thread = threading.Thread(target=produce, name="log-prefetch", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        closing.set()
        thread.join()


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
    messages: int = 0  # read whole before the damage, of every stream (whichever the caller wanted)

    def stop(self, error: str) -> None:
        """Say what ended the reading of the file before its end (`error` may name the file first)."""
        self.error = error.removeprefix(f"{self.path}: ")


def _goes_back(path: Path, first_ns: int, before: Path, last_ns: int) -> str:
    return (
        f"{path}: begins at log time {first_ns} ns, {(last_ns - first_ns) / 1e9:.3f} s before {before} ends, "
        "which it follows: files read as one recording (a split recording's NAME_000.mcap, NAME_001.mcap, "
        "...; the logs `replay` plays one after another) must follow each other in time"
    )


class LogReader:
    """Reads one log, or the parts of a split one in order, front to back (= receive order).

    Reading does not need the MCAP summary, so a file cut short by a crash reads up to its last whole
    chunk; `truncated` then names the file and what stopped the reader. Damage ends its file alike
    wherever it is, in the file's records or in one message (data that is no valid record, a message on
    no channel): the messages before it are read, and the next part, if any, is read. `verify_crcs=False`
    skips the CRC checks of the file and of every decompressed chunk (about a third of the reading time);
    the records' structure and every message's wire limits are still checked. `threads` > 1 decompresses
    chunks on that many worker threads ahead of the reading (zstd is most of a log's reading time).
    Messages of channels with another encoding (a Foxglove export, say) are refused with a LogError.
    """

    def __init__(
        self,
        paths: str | Path | Iterable[str | Path],
        limits: Limits = DEFAULT_LIMITS,
        *,
        verify_crcs: bool = True,
        threads: int = 1,
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
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.threads = threads
        self.streams: dict[str, dict[str, str]] = {}
        self.metadata: dict[str, dict[str, str]] = {}
        self.files: list[_FileState] = []

    @property
    def truncated(self) -> list[str]:
        """'PATH: where: reason (N messages before it)' for every file whose reading stopped at damage or at a
        missing tail (not a file the caller simply stopped reading). The reader logs nothing of it: its
        caller refuses the log or says what it worked on, once."""
        return [f"{f.path}: {f.error} ({_messages(f.messages)} before it)" for f in self.files if f.error]

    def timeline_ns(self, message: LogMessage) -> int:
        """Where `message` of the file being read belongs on its recording's timeline: its log time, or,
        in a file a replay wrote (results, sets), its stamp: there the log time is when the replay ran,
        which would put the results years from the sensor data they came from (an export of both)."""
        if self.metadata.get(FILE_METADATA, {}).get("recorded_by", "").startswith(REPLAYED_BY):
            return max(message.sample.stamp_ns, 0)
        return message.log_time_ns

    def scan_streams(self) -> dict[str, dict[str, str]]:
        """Channel metadata of every stream in the logs: from a file's summary when it has one, else by
        reading the file through (a recording cut short)."""
        for path in self.paths:
            summary = _summary(path, self.limits)
            channels = summary.channels if summary is not None else None
            if channels is None:
                state = _FileState(path)
                channels = [r for _, r in self._records(state, self.verify_crcs) if isinstance(r, Channel)]
                if not channels and state.error:  # nothing to work on, whatever the caller allows
                    raise LogError(f"log cut short: {path}: {state.error}; it holds no stream before that")
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
        """Every message, in file order; only `streams` when given. The files are the parts of one
        recording, so each must begin no earlier than the one before ends: a part that goes back in time
        is a LogError, not read (a replay places messages by log time, and would drop or misplace them),
        unless both are the writer's parts of one recording (the same `recording` in their file metadata:
        the wall clock stepped back at the split)."""
        wanted = None if streams is None else set(streams)
        self.files = []
        # The last file read: its path, its last message's log time and the recording it is part of.
        before: tuple[Path, int, str | None] | None = None
        for path in self.paths:
            state = _FileState(path)
            self.files.append(state)
            self.metadata.pop(FILE_METADATA, None)  # this file's own comes before its first message
            last = None
            for message in self._file_messages(state, wanted):
                if last is None:
                    recording = self.metadata.get(FILE_METADATA, {}).get("recording")
                    # The writer's own parts may go back: the wall clock stepped back at the split.
                    if before is not None and message.log_time_ns < before[1] and recording != before[2]:
                        raise LogError(_goes_back(path, message.log_time_ns, *before[:2]))
                last = message.log_time_ns
                yield message
            if last is not None:
                before = (path, last, recording)

    def _file_messages(self, state: _FileState, wanted: set[str] | None) -> Iterator[LogMessage]:
        """The messages of one file (of the `wanted` streams). A message that is no valid record ends
        the file as damage to its records does, so that `truncated` says so and the caller decides on
        the messages before it (replay --allow-truncated) as for a file cut short."""
        channels: dict[int, str] = {}
        with contextlib.closing(self._records(state, self.verify_crcs)) as records:
            for where, record in records:
                if isinstance(record, Message):
                    topic = channels.get(record.channel_id)
                    if topic is not None and wanted is not None and topic not in wanted:
                        state.messages += 1  # counted as read: the same damage, the same count anywhere
                        continue
                    try:
                        if topic is None:
                            raise LogError(f"channel {record.channel_id} is not defined before it")
                        sample = unpack_record(topic, record.data, self.limits)
                    except LogError as exc:
                        number = state.messages + 1  # of the message in the file, all streams
                        state.stop(f"{where}, message {number} (log time {record.log_time} ns): {exc}")
                        return
                    state.messages += 1
                    yield LogMessage(sample, record.log_time)
                elif isinstance(record, Channel):
                    channels[record.id] = record.topic
                    self._add_channel(record, state.path)
                elif isinstance(record, Metadata):
                    written = record.metadata.get("format") if record.name == FILE_METADATA else None
                    if written not in (None, LOG_FORMAT):  # another version's layout: not read as ours
                        raise LogError(
                            f"{state.path}: a log of format {written!r}; this fusion-pipeline reads "
                            f"{LOG_FORMAT!r} (a newer version wrote it?)"
                        )
                    self.metadata[record.name] = dict(record.metadata)

    def _opened(
        self,
        records: Iterator[tuple[int, int, memoryview]],
        path: Path,
        verify_crcs: bool,
        pool: ThreadPoolExecutor | None,
    ) -> Iterator[tuple[str, Any]]:
        """(where, record) of `records` parsed, in order, chunks opened. With `pool`, chunks are
        decompressed on its threads, up to INFLATE_AHEAD per thread ahead of the one being read. A damaged
        record ends the file after everything before it was given, as in line."""
        depth = INFLATE_AHEAD * self.threads
        pending: deque[tuple[str, Any]] = deque()  # (where, a record, or its chunk's data to come)
        damage: list[LogError] = []  # what ended `records`, raised once everything before it was given

        def parsed() -> Iterator[tuple[str, Any]]:
            try:
                for offset, opcode, body in records:
                    where = f"{path}: {'chunk' if opcode == Opcode.CHUNK else 'record'} at byte {offset}"
                    # A message outside a chunk: its arrays would be views of the mapping, which closes.
                    body = memoryview(bytes(body)) if opcode == Opcode.MESSAGE else body
                    yield where, _parse(opcode, body, where)
            except LogError as exc:
                damage.append(exc)

        def oldest() -> Iterator[tuple[str, Any]]:
            where, item = pending.popleft()
            if isinstance(item, Future):
                yield from _chunk_records(item.result(), where)
            elif item is not None:
                yield where, item

        for where, record in parsed():
            if isinstance(record, Chunk):
                if pool is None:
                    yield from _chunk_records(_chunk_data(record, self.limits, verify_crcs, where), where)
                    continue
                record = pool.submit(_chunk_data, record, self.limits, verify_crcs, where)
            pending.append((where, record))
            while pending and (len(pending) > depth or not isinstance(pending[0][1], Future)):
                yield from oldest()
        while pending:
            yield from oldest()
        if damage:
            raise damage[0]

    def _add_channel(self, record: Channel, path: Path) -> None:
        if record.message_encoding != MESSAGE_ENCODING:
            raise LogError(
                f"{path}: channel {record.topic!r} has message encoding {record.message_encoding!r}; "
                f"a fusion-pipeline log uses {MESSAGE_ENCODING!r}"
            )
        version = record.metadata.get("wire_version")
        if version not in (None, str(VERSION)):
            raise LogError(
                f"{path}: channel {record.topic!r} holds wire version {version} messages; this "
                f"fusion-pipeline reads version {VERSION}"
            )
        self.streams.setdefault(record.topic, dict(record.metadata))

    def _records(self, state: _FileState, verify_crcs: bool) -> Iterator[tuple[str, Any]]:
        """(where, record) of every record of one file in order, chunks opened; a damaged or missing part
        (a crash leaves a partial record at the tail) ends the file, and `state` says where and why."""
        path = state.path
        try:
            with open(path, "rb") as f, _mapped(f) as data, contextlib.ExitStack() as stack:
                records = _file_records(data, len(MCAP_MAGIC), data.nbytes, self.limits, path, verify_crcs)
                pool = None
                if self.threads > 1:
                    pool = ThreadPoolExecutor(self.threads, thread_name_prefix="log-inflate")
                    stack.callback(pool.shutdown, cancel_futures=True)
                yield from self._opened(records, path, verify_crcs, pool)
            state.complete = True
        except LogError as exc:
            state.stop(str(exc))
        except OSError as exc:
            state.error = f"cannot read: {exc.strerror}"


def _messages(n: int) -> str:
    return f"{n} message" if n == 1 else f"{n} messages"
