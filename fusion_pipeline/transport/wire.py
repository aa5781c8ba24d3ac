"""Wire protocol v1 codec: one ZeroMQ multipart message per sample, no sockets inside.

A message is ``[topic, header, *buffers]``: the topic is the UTF-8 stream name, the header a msgpack map,
and each buffer the raw little-endian bytes of one array declared in ``header["arrays"]``.
docs/PROTOCOL.md is the normative text; this module implements it.

Decoding is defensive: every declared size is checked against the received frame lengths and the
configured `Limits` with plain integer arithmetic BEFORE any array is created (`check` does only that),
and the arrays returned are read-only views of the received frames, so a hostile message can neither
crash the reader nor make it allocate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import msgpack
import numpy as np

from fusion_pipeline.protocol import ALLOWED_DTYPES
from fusion_pipeline.transport.errors import (
    ArraySizeError,
    DTypeError,
    HeaderError,
    LimitError,
    MalformedError,
    UnknownVersionError,
    WireError,
)

if TYPE_CHECKING:  # only its attributes are read: the codec does not load pydantic
    from fusion_pipeline.config import LimitsConfig

__all__ = [
    "VERSION",
    "Buffer",
    "Checked",
    "DEFAULT_LIMITS",
    "Limits",
    "Sample",
    "ShmRef",
    "ShmSink",
    "ShmSource",
    "check",
    "decode",
    "encode",
]

VERSION = 1

# A frame: anything with the buffer protocol (bytes, memoryview, zmq.Frame, C-contiguous ndarray).
Buffer = Any

_DTYPES = {name: np.dtype(name) for name in ALLOWED_DTYPES}
# The other way, for encode: one lookup both finds the string and tells that the array needs no byte
# swap (numpy builds dtype.str anew at each access).
_WIRE_DTYPES = {dtype: name for name, dtype in _DTYPES.items()}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT64_MAX = 2**64 - 1
_MISSING = object()


@dataclass(frozen=True)
class Limits:
    """Bounds a receiver enforces before allocating. Defaults fit a 4K camera and a 128-beam lidar."""

    max_header_bytes: int = 64 * 1024
    max_arrays: int = 16
    max_ndim: int = 4
    max_array_bytes: int = 64 * 1024 * 1024
    max_total_bytes: int = 128 * 1024 * 1024
    allowed_dtypes: frozenset[str] = ALLOWED_DTYPES

    @classmethod
    def from_config(cls, config: LimitsConfig) -> Limits:
        """A stream's `[streams.limits]` (sizes in MiB) as the codec's byte counts."""
        mib = 1024 * 1024
        return cls(
            max_arrays=config.max_arrays,
            max_ndim=config.max_ndim,
            max_array_bytes=int(config.max_array_mb * mib),
            max_total_bytes=int(config.max_total_mb * mib),
            allowed_dtypes=frozenset(config.dtypes),
        )

    @property
    def max_message_bytes(self) -> int:
        """Upper bound of a whole message, for ZMQ_MAXMSGSIZE (per frame in libzmq)."""
        return max(self.max_header_bytes, self.max_total_bytes)


DEFAULT_LIMITS = Limits()


#: A shared-memory segment's file name, "fp-<pid>-<label>-<token>"; a header naming anything else is
#: refused as it is checked, so that no header can make a reader open another file.
SHM_SEGMENT_NAME = re.compile(r"fp-([0-9]{1,10})-[A-Za-z0-9_.-]{1,80}\Z")


@dataclass(frozen=True)
class ShmRef:
    """Where a shared-memory array lies: the segment's file name, the slot, and the generation written."""

    segment: str
    slot: int
    gen: int


class ShmSink(Protocol):
    """Copies an array into shared memory for `encode` (fusion_pipeline.transport.shm.SegmentWriter)."""

    def place(self, array: np.ndarray) -> ShmRef | None: ...


class ShmSource(Protocol):
    """Copies a referenced array out of shared memory for `decode` (transport.shm.SegmentReader)."""

    def read(self, ref: ShmRef, nbytes: int) -> np.ndarray: ...


@dataclass
class Sample:
    """One decoded (or to-be-encoded) message. `arrays` keeps the declared order."""

    stream: str
    modality: str
    seq: int
    stamp_ns: int
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    frame_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return self.stream

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def header_fields(self) -> dict[str, Any]:
        """The header fields a sample carries besides the protocol version and its arrays (PROTOCOL 2)."""
        return {
            "stream": self.stream,
            "modality": self.modality,
            "seq": self.seq,
            "stamp_ns": self.stamp_ns,
            "frame_id": self.frame_id,
            "meta": self.meta,
        }


def encode(sample: Sample, shm: ShmSink | None = None) -> list[Buffer]:
    """Frames of `sample`: topic and header bytes, then each array itself as its buffer frame.

    Arrays are made C-contiguous and little endian only if they are not already (then they are copied).
    With `shm`, each array it places in shared memory is sent as a reference and an empty frame.
    """
    frames: list[Buffer] = [sample.stream.encode(), b""]  # the header goes in once the specs are known
    specs: list[dict[str, Any]] = []
    for name, array in sample.arrays.items():
        array, dtype = _wire_array(array, name, sample.stream)
        spec: dict[str, Any] = {"name": name, "dtype": dtype, "shape": list(array.shape)}
        ref = None if shm is None else shm.place(array)
        if ref is not None:
            spec["shm"] = {"segment": ref.segment, "slot": ref.slot, "gen": ref.gen}
        specs.append(spec)
        # A C-contiguous array is a buffer of exactly its bytes (an empty one has none).
        frames.append(array if ref is None else b"")
    # msgpack >= 1.0 packs bytes as bin and str as str (use_bin_type) by default.
    frames[1] = msgpack.packb({"v": VERSION, **sample.header_fields(), "arrays": specs})
    return frames


def _wire_array(array: Any, name: str, stream: str) -> tuple[np.ndarray, str]:
    """`array` as wire v1 carries it, C-contiguous and little endian (copied only if not), and its
    dtype string; DTypeError for a dtype outside ALLOWED_DTYPES."""
    array = np.ascontiguousarray(array)  # no copy when it already is (a 0-d array becomes 1-d)
    dtype = _WIRE_DTYPES.get(array.dtype)
    if dtype is None and array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
        dtype = _WIRE_DTYPES.get(array.dtype)
    if dtype is None:
        raise DTypeError(f"array {name!r} of stream {stream!r}: dtype {array.dtype.str!r} is not allowed")
    return array, dtype


@dataclass(slots=True)
class Checked:
    """A message that passed every check of `decode`, its arrays not created yet: a receiver can look at
    the header (and each array's declared dtype and shape) of a message it may skip, without touching
    its buffers or shared-memory slots. `sample` has no arrays; `materialize` makes the full sample.
    Read-only by convention (not frozen: a frozen dataclass costs a microsecond per message to build)."""

    sample: Sample
    declared: dict[str, tuple[np.dtype, tuple[int, ...]]]
    header_bytes: int
    nbytes: int  # of the declared arrays
    _sources: list[memoryview | ShmRef]  # read-only views of the buffer frames, or where in shm

    def materialize(self, shm: ShmSource | None = None) -> Sample:
        """The sample with its arrays: read-only views of the frames, or copies out of shared memory."""
        arrays: dict[str, np.ndarray] = {}
        for (name, (dtype, shape)), source in zip(self.declared.items(), self._sources, strict=True):
            if isinstance(source, ShmRef):
                if shm is None:
                    raise HeaderError(f"array {name!r}: shared-memory reference, but no segment reader")
                source = shm.read(source, math.prod(shape) * dtype.itemsize).data.toreadonly()
            # A read-only buffer makes a read-only array; its size was checked against the shape.
            arrays[name] = np.ndarray(shape, dtype, source)
        sample = self.sample
        return Sample(
            sample.stream, sample.modality, sample.seq, sample.stamp_ns, arrays, sample.frame_id, sample.meta
        )


def decode(frames: Sequence[Buffer], limits: Limits | None = None, shm: ShmSource | None = None) -> Sample:
    """Parse and validate one message; raise a WireError subclass that says what is wrong.

    Shared-memory references are resolved through `shm` (a copy out of the segment); a receiver without
    it (a tcp socket) refuses them.
    """
    return check(frames, limits, shm_refs=shm is not None).materialize(shm)


# The header's required keys besides `v` and their exact types (PROTOCOL 3). msgpack yields exact built-in
# types, so an identity test is the whole check (and keeps bool out of int).
_REQUIRED: tuple[tuple[str, type], ...] = (
    ("stream", str),
    ("modality", str),
    ("seq", int),
    ("stamp_ns", int),
    ("frame_id", str),
    ("meta", dict),
    ("arrays", list),
)


def check(frames: Sequence[Buffer], limits: Limits | None = None, shm_refs: bool = False) -> Checked:
    """Every check of `decode`, with integers only: nothing is allocated for the arrays and no shared
    memory is read. `shm_refs`: whether this receiver may resolve shared-memory references."""
    limits = limits or DEFAULT_LIMITS
    if len(frames) < 2:
        raise MalformedError(f"expected at least 2 frames (topic, header), got {len(frames)}")
    header_view = memoryview(frames[1])
    header_bytes = header_view.nbytes
    if header_bytes > limits.max_header_bytes:
        raise LimitError(f"header is {header_bytes} bytes, limit is {limits.max_header_bytes}")
    header = _unpack_header(header_view)
    try:
        return _checked(frames, header, header_bytes, limits, shm_refs)
    except WireError as exc:
        exc.header = header  # a replay's receiver knows whose place in the send order it was
        raise


def _checked(
    frames: Sequence[Buffer], header: dict[str, Any], header_bytes: int, limits: Limits, shm_refs: bool
) -> Checked:
    """`check` of a message whose header unpacked: its keys, then each array's declaration and buffer."""
    for key, kind in _REQUIRED:
        value = header.get(key, _MISSING)
        if type(value) is not kind:
            raise HeaderError(
                f"header key {key!r} is missing"
                if value is _MISSING
                else f"header key {key!r} must be {kind.__name__}, got {type(value).__name__}"
            )
    stream, seq, stamp_ns, specs = header["stream"], header["seq"], header["stamp_ns"], header["arrays"]
    if not 0 <= seq <= _UINT64_MAX:
        raise HeaderError(f"header key 'seq' = {seq} is out of range [0, {_UINT64_MAX}]")
    if not _INT64_MIN <= stamp_ns <= _INT64_MAX:
        raise HeaderError(f"header key 'stamp_ns' = {stamp_ns} is out of range [{_INT64_MIN}, {_INT64_MAX}]")
    topic = bytes(frames[0])
    if topic != stream.encode():
        _refuse_topic(topic, stream)

    if len(specs) > limits.max_arrays:
        raise LimitError(f"stream {stream!r}: {len(specs)} arrays declared, limit is {limits.max_arrays}")
    if len(specs) != len(frames) - 2:
        raise MalformedError(
            f"stream {stream!r}: header declares {len(specs)} arrays but {len(frames) - 2} buffers follow"
        )
    declared: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
    sources: list[memoryview | ShmRef] = []
    total = 0
    for index, spec in enumerate(specs):
        name, dtype, shape, nbytes, ref = _check_spec(spec, index, stream, limits)
        if name in declared:
            raise HeaderError(f"stream {stream!r}: array name {name!r} appears twice")
        total += nbytes
        if total > limits.max_total_bytes:
            raise LimitError(
                f"stream {stream!r}: arrays total {total} bytes, limit is {limits.max_total_bytes}"
            )
        view = memoryview(frames[index + 2])
        if ref is not None:
            if view.nbytes:
                raise ArraySizeError(
                    f"stream {stream!r} array {name!r}: in shared memory, but its frame is not empty"
                )
            if not shm_refs:
                raise HeaderError(
                    f"stream {stream!r} array {name!r}: shared-memory reference on a non-ipc receiver"
                )
            sources.append(ref)
        elif view.nbytes != nbytes:
            raise ArraySizeError(
                f"stream {stream!r} array {name!r}: shape {shape} dtype {dtype.str} needs {nbytes} "
                f"bytes, buffer has {view.nbytes}"
            )
        else:
            sources.append(view.toreadonly())
        declared[name] = (dtype, shape)

    sample = Sample(stream, header["modality"], seq, stamp_ns, {}, header["frame_id"], header["meta"])
    return Checked(sample, declared, header_bytes, total, sources)


def _refuse_topic(topic: bytes, stream: str) -> NoReturn:
    try:
        text = topic.decode()
    except UnicodeDecodeError as exc:
        raise MalformedError(f"stream {stream!r}: topic frame is not UTF-8") from exc
    raise HeaderError(f"topic {text!r} differs from header stream {stream!r}")


def _unpack_header(view: memoryview) -> dict[str, Any]:
    # msgpack caps each declared str, bin, array and map length at the buffer's length (ours is at most
    # max_header_bytes), so a hostile header cannot declare huge containers; no ext types at all.
    try:
        header = msgpack.unpackb(view, raw=False, strict_map_key=True, max_ext_len=0)
    except Exception as exc:  # msgpack raises several unrelated types for broken input
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise MalformedError(f"header is not valid msgpack ({detail})") from exc
    if type(header) is not dict:
        raise MalformedError(f"header must be a msgpack map, got {type(header).__name__}")
    version = header.get("v")
    if version is None and b"v" in header:  # a C or C++ packer's default: keys as bin, not str
        raise HeaderError("header keys are msgpack bin; they must be str (PROTOCOL 3)")
    if type(version) is not int or version != VERSION:  # an int, as every key: 1.0 and true are not 1
        raise UnknownVersionError(
            f"header version {version!r} is not supported (this reader speaks v{VERSION})"
        )
    return header


def _check_spec(
    spec: Any, index: int, stream: str, limits: Limits
) -> tuple[str, np.dtype, tuple[int, ...], int, ShmRef | None]:
    """One `arrays` entry: its name, dtype, shape, byte size (within `max_array_bytes`) and shm reference.
    Error texts are built only on an error: this runs for every array of every message."""
    if type(spec) is not dict:
        raise HeaderError(f"stream {stream!r}: arrays[{index}] must be a map, got {type(spec).__name__}")
    name, dtype_str, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
    if type(name) is not str:
        raise HeaderError(f"stream {stream!r} arrays[{index}]: 'name' must be a string")
    # A string first: a msgpack array or map as dtype is not hashable.
    dtype = _DTYPES.get(dtype_str) if type(dtype_str) is str else None
    if dtype is None or dtype_str not in limits.allowed_dtypes:
        raise DTypeError(
            f"{_label(stream, index, name)}: dtype {dtype_str!r} is not allowed "
            f"(allowed: {', '.join(sorted(limits.allowed_dtypes))})"
        )
    if type(shape) is not list:
        raise HeaderError(f"{_label(stream, index, name)}: 'shape' must be an array of integers")
    if len(shape) > limits.max_ndim:
        raise LimitError(
            f"{_label(stream, index, name)}: {len(shape)} dimensions, limit is {limits.max_ndim}"
        )
    nbytes = dtype.itemsize
    for dim in shape:
        if type(dim) is not int or not 0 <= dim <= _INT64_MAX:  # exact int: no bool
            raise HeaderError(f"{_label(stream, index, name)}: shape {shape} must hold non-negative integers")
        nbytes *= dim
    if nbytes > limits.max_array_bytes:
        limit = limits.max_array_bytes
        raise LimitError(f"{_label(stream, index, name)}: shape {shape} is {nbytes} bytes, limit is {limit}")
    ref = spec.get("shm")
    return (
        name,
        dtype,
        tuple(shape),
        nbytes,
        None if ref is None else _check_shm_ref(ref, stream, index, name),
    )


def _label(stream: str, index: int, name: str) -> str:
    return f"stream {stream!r} arrays[{index}] {name!r}"


def _check_shm_ref(ref: Any, stream: str, index: int, name: str) -> ShmRef:
    """The ``shm`` entry of an array: {segment: str, slot: uint, gen: uint} (PROTOCOL 3.2)."""
    label = _label(stream, index, name)
    if not isinstance(ref, dict):
        raise HeaderError(f"{label}: 'shm' must be a map")
    segment, slot, gen = ref.get("segment"), ref.get("slot"), ref.get("gen")
    if type(segment) is not str or type(slot) is not int or type(gen) is not int:
        raise HeaderError(f"{label}: 'shm' needs segment (str), slot and gen (integers)")
    if not (0 <= slot <= _UINT64_MAX and 0 <= gen <= _UINT64_MAX):
        raise HeaderError(f"{label}: 'shm' slot {slot} and gen {gen} must be unsigned 64-bit")
    if not SHM_SEGMENT_NAME.match(segment):
        raise HeaderError(f"{label}: 'shm' segment name {segment!r} is not fp-<pid>-<label>")
    return ShmRef(segment, slot, gen)
