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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

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
    """Frames of `sample`: topic and header bytes, then one buffer per array, viewing the array's memory.

    Arrays are made C-contiguous and little endian only if they are not already (then they are copied).
    With `shm`, each array it places in shared memory is sent as a reference and an empty frame.
    """
    buffers: list[np.ndarray | bytes] = []
    specs: list[dict[str, Any]] = []
    for name, array in sample.arrays.items():
        array = np.asarray(array)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        array = np.ascontiguousarray(array)
        dtype = array.dtype.str
        if dtype not in ALLOWED_DTYPES:
            raise DTypeError(f"array {name!r} of stream {sample.stream!r}: dtype {dtype!r} is not allowed")
        spec: dict[str, Any] = {"name": name, "dtype": dtype, "shape": list(array.shape)}
        ref = shm.place(array) if shm is not None else None
        if ref is not None:
            spec["shm"] = {"segment": ref.segment, "slot": ref.slot, "gen": ref.gen}
        specs.append(spec)
        buffers.append(b"" if ref is not None else array)
    header = {"v": VERSION, **sample.header_fields(), "arrays": specs}
    frames: list[Buffer] = [sample.stream.encode(), msgpack.packb(header, use_bin_type=True)]
    # A zero-size array still gets its (empty) frame; .data of a 0-d or empty array is a valid view.
    frames.extend(
        b.reshape(-1).view(np.uint8).data if isinstance(b, np.ndarray) and b.size else b"" for b in buffers
    )
    return frames


@dataclass(frozen=True)
class Checked:
    """A message that passed every check of `decode`, its arrays not created yet: a receiver can look at
    the header (and each array's declared dtype and shape) of a message it may skip, without touching
    its buffers or shared-memory slots. `sample` has no arrays; `materialize` makes the full sample."""

    sample: Sample
    declared: dict[str, tuple[np.dtype, tuple[int, ...]]]
    header_bytes: int
    _sources: tuple[memoryview | ShmRef, ...]

    def materialize(self, shm: ShmSource | None = None) -> Sample:
        """The sample with its arrays: read-only views of the frames, or copies out of shared memory."""
        arrays: dict[str, np.ndarray] = {}
        for (name, (dtype, shape)), source in zip(self.declared.items(), self._sources, strict=True):
            if isinstance(source, ShmRef):
                if shm is None:
                    raise HeaderError(f"array {name!r}: shared-memory reference, but no segment reader")
                source = shm.read(source, math.prod(shape) * dtype.itemsize)
            array = np.frombuffer(source, dtype=dtype).reshape(shape)
            array.flags.writeable = False
            arrays[name] = array
        return replace(self.sample, arrays=arrays)


def decode(frames: Sequence[Buffer], limits: Limits | None = None, shm: ShmSource | None = None) -> Sample:
    """Parse and validate one message; raise a WireError subclass that says what is wrong.

    Shared-memory references are resolved through `shm` (a copy out of the segment); a receiver without
    it (a tcp socket) refuses them.
    """
    return check(frames, limits, shm_refs=shm is not None).materialize(shm)


def check(frames: Sequence[Buffer], limits: Limits | None = None, shm_refs: bool = False) -> Checked:
    """Every check of `decode`, with integers only: nothing is allocated for the arrays and no shared
    memory is read. `shm_refs`: whether this receiver may resolve shared-memory references."""
    limits = limits or DEFAULT_LIMITS
    if len(frames) < 2:
        raise MalformedError(f"expected at least 2 frames (topic, header), got {len(frames)}")
    topic_view = memoryview(frames[0])
    header_view = memoryview(frames[1])
    if header_view.nbytes > limits.max_header_bytes:
        raise LimitError(f"header is {header_view.nbytes} bytes, limit is {limits.max_header_bytes}")
    header = _unpack_header(header_view, limits)
    stream = _get(header, "stream", str)
    try:
        topic = topic_view.tobytes().decode()
    except UnicodeDecodeError as exc:
        raise MalformedError(f"stream {stream!r}: topic frame is not UTF-8") from exc
    if topic != stream:
        raise HeaderError(f"topic {topic!r} differs from header stream {stream!r}")

    specs = _get(header, "arrays", list)
    where = f"stream {stream!r}"
    if len(specs) > limits.max_arrays:
        raise LimitError(f"{where}: {len(specs)} arrays declared, limit is {limits.max_arrays}")
    if len(specs) != len(frames) - 2:
        raise MalformedError(
            f"{where}: header declares {len(specs)} arrays but {len(frames) - 2} buffers follow"
        )

    declared: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
    sources: list[memoryview | ShmRef] = []
    total = 0
    for index, (spec, frame) in enumerate(zip(specs, frames[2:], strict=True)):
        name, dtype, shape, ref = _check_spec(spec, index, where, limits)
        if name in declared:
            raise HeaderError(f"{where}: array name {name!r} appears twice")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > limits.max_array_bytes:
            raise LimitError(
                f"{where} array {name!r}: shape {shape} is {nbytes} bytes, limit is {limits.max_array_bytes}"
            )
        total += nbytes
        if total > limits.max_total_bytes:
            raise LimitError(f"{where}: arrays total {total} bytes, limit is {limits.max_total_bytes}")
        view = memoryview(frame)
        if ref is not None:
            if view.nbytes:
                raise ArraySizeError(f"{where} array {name!r}: in shared memory, but its frame is not empty")
            if not shm_refs:
                raise HeaderError(f"{where} array {name!r}: shared-memory reference on a non-ipc receiver")
        elif view.nbytes != nbytes:
            raise ArraySizeError(
                f"{where} array {name!r}: shape {shape} dtype {dtype.str} needs {nbytes} "
                f"bytes, buffer has {view.nbytes}"
            )
        declared[name] = (dtype, shape)
        sources.append(view if ref is None else ref)

    sample = Sample(
        stream=stream,
        modality=_get(header, "modality", str),
        seq=_get_int(header, "seq", 0, _UINT64_MAX),
        stamp_ns=_get_int(header, "stamp_ns", _INT64_MIN, _INT64_MAX),
        frame_id=_get(header, "frame_id", str),
        meta=_get(header, "meta", dict),
    )
    return Checked(sample, declared, header_view.nbytes, tuple(sources))


def _unpack_header(view: memoryview, limits: Limits) -> dict[str, Any]:
    # msgpack's own length caps keep a hostile header from declaring huge containers.
    cap = limits.max_header_bytes
    try:
        header = msgpack.unpackb(
            view,
            raw=False,
            strict_map_key=True,
            max_str_len=cap,
            max_bin_len=cap,
            max_array_len=cap,
            max_map_len=cap,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types for broken input
        raise MalformedError(f"header is not valid msgpack: {type(exc).__name__}: {exc}") from exc
    if not isinstance(header, dict):
        raise MalformedError(f"header must be a msgpack map, got {type(header).__name__}")
    version = header.get("v")
    if version != VERSION:
        raise UnknownVersionError(
            f"header version {version!r} is not supported (this reader speaks v{VERSION})"
        )
    return header


def _get(header: Mapping[str, Any], key: str, kind: type) -> Any:
    value = header.get(key, _MISSING)
    # msgpack yields exact built-in types, so an identity test is the whole check (and keeps bool out of
    # int); it runs for every key of every message.
    if type(value) is kind:
        return value
    if value is _MISSING:
        raise HeaderError(f"header key {key!r} is missing")
    raise HeaderError(f"header key {key!r} must be {kind.__name__}, got {type(value).__name__}")


def _get_int(header: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = _get(header, key, int)
    if not low <= value <= high:
        raise HeaderError(f"header key {key!r} = {value} is out of range [{low}, {high}]")
    return value


def _check_spec(
    spec: Any, index: int, where: str, limits: Limits
) -> tuple[str, np.dtype, tuple[int, ...], ShmRef | None]:
    if not isinstance(spec, dict):
        raise HeaderError(f"{where}: arrays[{index}] must be a map, got {type(spec).__name__}")
    label = f"{where} arrays[{index}]"
    name = spec.get("name")
    if not isinstance(name, str):
        raise HeaderError(f"{label}: 'name' must be a string")
    dtype_str = spec.get("dtype")
    if not isinstance(dtype_str, str) or dtype_str not in limits.allowed_dtypes or dtype_str not in _DTYPES:
        raise DTypeError(
            f"{label} {name!r}: dtype {dtype_str!r} is not allowed "
            f"(allowed: {', '.join(sorted(limits.allowed_dtypes))})"
        )
    shape = spec.get("shape")
    if not isinstance(shape, list):
        raise HeaderError(f"{label} {name!r}: 'shape' must be an array of integers")
    if len(shape) > limits.max_ndim:
        raise LimitError(f"{label} {name!r}: {len(shape)} dimensions, limit is {limits.max_ndim}")
    if not all(type(d) is int and 0 <= d <= _INT64_MAX for d in shape):  # exact int: no bool
        raise HeaderError(f"{label} {name!r}: shape {shape} must hold non-negative integers")
    return name, _DTYPES[dtype_str], tuple(shape), _check_shm_ref(spec.get("shm"), f"{label} {name!r}")


def _check_shm_ref(ref: Any, label: str) -> ShmRef | None:
    """The optional ``shm`` entry of an array: {segment: str, slot: uint, gen: uint} (PROTOCOL 3.2)."""
    if ref is None:
        return None
    if not isinstance(ref, dict):
        raise HeaderError(f"{label}: 'shm' must be a map")
    segment, slot, gen = ref.get("segment"), ref.get("slot"), ref.get("gen")
    if type(segment) is not str or type(slot) is not int or type(gen) is not int:
        raise HeaderError(f"{label}: 'shm' needs segment (str), slot and gen (integers)")
    if not (0 <= slot <= _UINT64_MAX and 0 <= gen <= _UINT64_MAX):
        raise HeaderError(f"{label}: 'shm' slot {slot} and gen {gen} must be unsigned 64-bit")
    return ShmRef(segment, slot, gen)
