"""The crash-safe log writer: `LogWriter`, split recordings, and the mode every log is created with.

Crash safety: chunks are zstd-compressed and written straight to the OS (no user-space buffer) the moment
they are closed, so after ``kill -9`` at most the open chunk is lost. The record layout is in
`fusion_pipeline.logs.records`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import mcap.writer
import zstandard
from mcap.writer import CompressionType, Writer

from fusion_pipeline.logs.errors import LogError, LogWriteError
from fusion_pipeline.logs.records import (
    DEFAULT_CHUNK_BYTES,
    FILE_METADATA,
    LOG_FORMAT,
    MESSAGE_ENCODING,
    NEXT_PART_METADATA,
    REPORT_METADATA,
    UINT32_MAX,
    pack_record,
)
from fusion_pipeline.transport.wire import VERSION, Buffer, Sample, encode

__all__ = [
    "LOG_MODE",
    "LogWriter",
    "SplitPolicy",
    "create_log_file",
    "part_path",
]

#: Mode of every log and export the project writes (record, replay --results, import-ros2, export-ros2,
#: export-foxglove): a recording holds what the sensors saw, so only its owner may read it. The umask can
#: narrow it further; widen it with chmod where a group must read the logs.
LOG_MODE = 0o600

#: zstd level of the chunks. The mcap writer compresses at zstandard's default (3); level 1 compresses sensor
#: data about twice as fast for a 10 % bigger file, and a recorder must keep up with the sensors first.
ZSTD_LEVEL = 1


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


def create_log_file(path: Path) -> int:
    """A new file for a log or an export, open for writing (the descriptor), mode LOG_MODE narrowed by
    the umask; never over an existing file: a log is a recording that cannot be made again."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, LOG_MODE)
    except FileExistsError:
        raise LogError(f"{path} exists already, not overwriting a log") from None
    except OSError as exc:
        raise LogError(f"{path}: cannot create log: {exc.strerror}") from exc


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
        # `recording` ties the parts of a split log together (LogReader lets them go back in time).
        self.metadata = {"format": LOG_FORMAT, "recording": uuid.uuid4().hex, **(metadata or {})}
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
                sequence=sample.seq & UINT32_MAX,
            )
        except OSError as exc:
            raise self._write_error(part.file.path, exc) from exc
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
        if part is not None:
            self._finish(part, {REPORT_METADATA: {k: str(v) for k, v in report.items()}} if report else {})

    def _finish(self, part: _Part, metadata: Mapping[str, dict[str, str]]) -> None:
        """Finish `part`'s file after writing `metadata` (name -> its record) into it."""
        try:
            for name, record in metadata.items():
                part.writer.add_metadata(name, record)
            part.writer.finish()
        except OSError as exc:
            raise self._write_error(part.file.path, exc) from exc
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

    def _write_error(self, path: Path, exc: OSError) -> LogWriteError:
        lost, self._pending = self._pending, Counter()
        return LogWriteError(
            f"{path}: write failed ({exc.strerror}); {sum(lost.values())} messages of the open "
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
            part = self._roll_over(part)
            part.first_log_ns = log_time_ns
        return part

    def _roll_over(self, part: _Part) -> _Part:
        """Open the next part, then finish `part` naming it: a part names only a successor that exists
        (a next part that cannot be made, on a full disk, leaves `part` finished as the last one)."""
        self._part = None
        # The messages pending are `part`'s, written when it is finished: not lost if the next part
        # cannot be opened.
        pending, self._pending = self._pending, Counter()
        try:
            self._open_part()
        except BaseException:
            self._pending = pending
            self._finish(part, {})
            raise
        self._pending = pending
        self._finish(part, {NEXT_PART_METADATA: {"next_part": self.paths[-1].name}})
        assert self._part is not None
        return self._part

    def _open_part(self) -> None:
        path = part_path(self.path, len(self.paths)) if self.split.enabled else self.path
        file = _DirectFile(path)
        writer = Writer(file, chunk_size=self.chunk_bytes, compression=CompressionType.ZSTD)  # type: ignore[arg-type]
        try:
            writer.start(profile="", library=LOG_FORMAT)
            writer.add_metadata(FILE_METADATA, {**self.metadata, "part": str(len(self.paths))})
        except BaseException as exc:
            # A file that failed before its first message holds nothing: it goes, not to block a retry.
            with contextlib.suppress(OSError):
                file.close()
            path.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise self._write_error(path, exc) from exc
            raise
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
