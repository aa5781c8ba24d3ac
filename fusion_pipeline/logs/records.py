"""The record of a log: one wire v1 message as the data of one MCAP message, and the names every log shares.

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

`fusion_pipeline.logs.writer` writes logs, `fusion_pipeline.logs.reader` reads them back.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import msgpack

from fusion_pipeline.logs.errors import LogError
from fusion_pipeline.transport.errors import WireError
from fusion_pipeline.transport.wire import DEFAULT_LIMITS, Buffer, Limits, Sample, decode

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "FILE_METADATA",
    "LOG_FORMAT",
    "MESSAGE_ENCODING",
    "NEXT_PART_METADATA",
    "REPORT_METADATA",
    "REPLAYED_BY",
    "UINT32_MAX",
    "pack_record",
    "unpack_record",
]

MESSAGE_ENCODING = "msgpack"
LOG_FORMAT = "fusion-pipeline-log/1"
FILE_METADATA = "fusion_pipeline"
#: `recorded_by` in the file metadata of the logs a replay writes (`replay --results`, `batch`): their log
#: times are when the replay ran, not when the recording was made.
REPLAYED_BY = "fusion-pipeline replay"
REPORT_METADATA = "fusion_pipeline.report"
#: Metadata a split recording's part ends with when the recording goes on: {"next_part": FILE NAME}. A
#: reader told only the parts before it can say that the recording's later parts are not given.
NEXT_PART_METADATA = "fusion_pipeline.next_part"
#: Uncompressed bytes per chunk: bounds both what kill -9 can lose and the reader's memory per chunk.
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
#: The largest buffer a bin 32 holds, and the modulus of the MCAP message's 32-bit sequence field.
UINT32_MAX = 2**32 - 1

_BIN32 = b"\xc6"


def pack_record(frames: Sequence[Buffer]) -> bytes:
    """The MCAP message data for the wire frames ``[topic, header, *buffers]`` (layout in the docstring)."""
    parts: list[Buffer] = [msgpack.Packer().pack_array_header(len(frames) - 1), frames[1]]
    for buffer in frames[2:]:
        nbytes = memoryview(buffer).nbytes
        if nbytes > UINT32_MAX:
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
        raise LogError(
            f"stream {topic!r}: record buffer {index} declares {length} bytes, {view.nbytes - start} remain"
        )
    return start + length, view[start : start + length]
