"""Ingest: one stream's raw sensor samples -> model-ready samples. Pure: no sockets, no clock reads.

The ingest node of stream S feeds every decoded wire message (see fusion_pipeline.transport.wire) to
:meth:`Ingest.process` with the time it arrived, and publishes what comes back. In order, a message:

1. must belong to S (its stream name);
2. passes sequence tracking (docs/PROTOCOL.md section 7, :class:`SeqTracker`): a gap is counted
   and the message used; a duplicate, an out-of-order seq or an implausible jump ahead is counted
   and dropped (a message refused by a later step has used up its seq: no gap for it), then must
   have S's modality;
3. has a plausible stamp: minus offset_ns it is not negative; live, it is not more than
   max_stamp_ahead_ms ahead of the arrival clock; and it has not jumped by more than the
   synchronizer's time_jump_ms, back from the stream's last stamp or ahead of its clock
   (:class:`StampTracker`) -- a jump is taken only when it persists, so one bad stamp cannot reset
   every queue downstream;
4. passes the schema checks: its array names, dtypes, ranks and columns, meta.encoding for cameras
   and meta.sample_rate for audio match its modality's schema, a generic stream's one sample the
   dtype and shape its config declares (PROTOCOL.md section 5);
5. passes the payload checks: no NaN or inf in float arrays, a jpeg that decodes;
6. has the stream's offset_ns subtracted from its stamp (known sensor latency);
7. is preprocessed by the front end of the model input the stream is bound to (its contract's
   parameters, fusion_pipeline.binding) into that input's tensors -- except audio,
   which stays a float32 frames x channels chunk, because the synchronizer cuts the window first,
   and a generic stream's sample, which the synchronizer stacks (or picks) per set as it is.

Steps 1-4 look at the header only: :meth:`Ingest.admit` runs them on an undecoded message, and
:meth:`Ingest.finish` runs the rest on a message admit let through (:meth:`Ingest.process` is both).
Every rejection is counted under a reason from SCHEMA_REASONS (or the seq counters); nothing here
raises for bad input.

The stream's clock is the arrival time live. In a replay (``live=False``) it is the time the message
was recorded (meta["log_time_ns"], which the replayer adds), or its stamp when a message has none:
the restart timeout, the plausible seq advance and the plausible stamp are measured on it, and no
stamp is compared with the wall clock.

A node that falls behind a discrete stream (camera, lidar, radar) should skip to the newest message,
as sensor data is perishable: a frame that waited in a queue would only miss its set. It admits every
message it drains, in order, so seq tracking sees them all and the counters tell skipped (ours) from
lost (upstream). Audio and generic streams are continuous: a skipped chunk or sample would be a hole
in every window over it, so they are always taken in full (:attr:`Ingest.drain_newest` is False), with
socket queues of a second of messages (fusion_pipeline.node.stream_hwm).

The output sample has ingest's own seq; the driver's is kept in meta["source_seq"],
meta["stages"]["ingest_in"] is the arrival time the caller passed, and a replayed message's
meta["replay_seq"] is passed on.
"""

from __future__ import annotations

import io
import logging
import math
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from fusion_pipeline.binding import Binding
from fusion_pipeline.config import CONTINUOUS_MODALITIES, StreamConfig
from fusion_pipeline.errors import SchemaError
from fusion_pipeline.preprocess import PreprocessError
from fusion_pipeline.preprocess.audio import INT16_SCALE
from fusion_pipeline.protocol import INGEST_IN, NS_PER_S, SeqMark
from fusion_pipeline.transport.wire import DEFAULT_LIMITS, Checked, Limits, Sample

__all__ = [
    "SCHEMA_REASONS",
    "ArraySchema",
    "Ingest",
    "SeqTracker",
    "StampTracker",
    "check_payload",
    "check_schema",
    "decode_jpeg",
    "limit_problems",
    "restart_timeout_ns",
]

log = logging.getLogger(__name__)

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: How far a seq may run ahead of the stream's last one: a driver sends at most RATE_MARGIN times its
#: configured rate (a faster clock, a burst after a stall), plus SEQ_SLACK messages of jitter.
RATE_MARGIN = 4
SEQ_SLACK = 16
#: How many frames a driver woken from a stall may send in a row from before it, and still have the skip
#: that follows them measured from the silence (SeqTracker._follows_held_frames).
HELD_FRAMES = 3
#: Consecutive messages that must continue an implausible seq or stamp jump before it is taken as real
#: (a restarted driver, a clock that was set, a log that loops).
JUMP_CONFIRM = 3
#: The stream's latest messages whose lag (its clock at arrival minus the stamp, the offset subtracted)
#: the counters summarise: the minimum tells a sensor clock running ahead (a negative lag), the median
#: the usual latency.
LAG_WINDOW = 64

# A message's declared arrays: name -> (dtype, shape), from wire.Checked or a decoded sample.
Declared = dict[str, tuple[np.dtype, tuple[int, ...]]]

#: Why a well-formed wire message was refused by ingest:
#: wrong_stream / wrong_modality - not the configured stream or modality;
#: missing_array - the modality's array is absent; bad_dtype, bad_shape - it has the wrong type or shape;
#: bad_meta - a required meta field is missing or of the wrong type (audio sample_rate, camera encoding);
#: unsupported_encoding - a camera encoding other than rgb8 or jpeg;
#: sample_rate_mismatch - audio at another rate than the config's;
#: bad_jpeg - the jpeg bytes do not decode to an RGB image; non_finite - NaN or inf in a float array;
#: bad_stamp - the stamp minus offset_ns leaves int64; negative_stamp - it is below 0 (before 1970);
#: future_stamp - live, it is more than max_stamp_ahead_ms ahead of the arrival clock;
#: stamp_jump - it is more than time_jump_ms before the stream's last stamp or ahead of the stream's
#: clock beyond its usual latency, and JUMP_CONFIRM messages in a row have not confirmed it yet;
#: preprocess - the preprocessor refused the payload.
SCHEMA_REASONS: tuple[str, ...] = (
    "wrong_stream",
    "wrong_modality",
    "missing_array",
    "bad_dtype",
    "bad_shape",
    "bad_meta",
    "unsupported_encoding",
    "sample_rate_mismatch",
    "bad_jpeg",
    "non_finite",
    "bad_stamp",
    "negative_stamp",
    "future_stamp",
    "stamp_jump",
    "preprocess",
)


@dataclass(frozen=True)
class ArraySchema:
    """The array a modality's payload travels in: its name, allowed dtypes (wire strings), rank,
    leading size (None = any, but at least `min_leading`) and fixed trailing sizes (None = any size, but
    at least `min_trailing`)."""

    name: str
    dtypes: tuple[str, ...]
    trailing: tuple[int | None, ...]
    min_leading: int = 0
    min_trailing: int = 0
    leading: int | None = None

    def check(self, stream: str, declared: Declared) -> None:
        """Raise SchemaError unless `declared` holds this array with an allowed dtype and shape."""
        where = f"stream {stream!r} array {self.name!r}"
        if self.name not in declared:
            raise SchemaError(
                "missing_array", f"stream {stream!r}: no array {self.name!r} in {list(declared)}"
            )
        dtype, shape = declared[self.name]
        if dtype.str not in self.dtypes:
            raise SchemaError("bad_dtype", f"{where}: dtype {dtype.str} is not one of {self.dtypes}")
        first = "N" if self.leading is None else str(self.leading)
        want = "x".join([first, *("*" if t is None else str(t) for t in self.trailing)])
        if len(shape) != 1 + len(self.trailing) or shape[0] < self.min_leading:
            raise SchemaError("bad_shape", f"{where}: shape {shape}, expected {want}")
        if self.leading is not None and shape[0] != self.leading:
            raise SchemaError("bad_shape", f"{where}: shape {shape}, expected {want}")
        for got, fixed in zip(shape[1:], self.trailing, strict=True):
            if (fixed is not None and got != fixed) or got < self.min_trailing:
                raise SchemaError("bad_shape", f"{where}: shape {shape}, expected {want}")


# PROTOCOL.md section 5.
_RGB8 = ArraySchema("image", ("|u1",), (None, 3))
_JPEG = ArraySchema("jpeg", ("|u1",), (), min_leading=1)
_SCHEMAS: dict[str, ArraySchema] = {
    "lidar": ArraySchema("points", ("<f4",), (4,)),
    "radar": ArraySchema("detections", ("<f4",), (5,)),
    "audio": ArraySchema("samples", ("<i2", "<f4"), (None,), min_leading=1, min_trailing=1),
}
_INT16_SCALE = np.float32(INT16_SCALE)


def decode_jpeg(data: np.ndarray, stream: str, max_bytes: int) -> np.ndarray:
    """One JPEG file -> (H, W, 3) uint8 RGB. Pillow reads the header, whose size is checked against
    `max_bytes` before the pixels are decoded, so a small file cannot make us allocate gigabytes. OpenCV
    decodes the pixels: faster than Pillow (tools/bench_preprocess.py), the same RGB values for colour
    and greyscale files (tests/unit/test_ingest.py). EXIF orientation is not applied, as Pillow did not:
    the image keeps the header's size."""
    try:
        with Image.open(io.BytesIO(data.tobytes())) as image:  # reads the header only
            if image.format != "JPEG":
                raise SchemaError("bad_jpeg", f"stream {stream!r}: payload is {image.format}, not JPEG")
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # Pillow's "cannot identify"
        raise SchemaError("bad_jpeg", f"stream {stream!r}: jpeg header does not parse: {exc}") from exc
    if width * height * 3 > max_bytes:
        raise SchemaError(
            "bad_jpeg", f"stream {stream!r}: jpeg is {width}x{height}, over the {max_bytes}-byte array limit"
        )
    try:
        rgb = cv2.imdecode(data, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as exc:
        raise SchemaError("bad_jpeg", f"stream {stream!r}: jpeg does not decode: {exc}") from exc
    if rgb is None or rgb.shape != (height, width, 3):  # None: cut short or corrupt
        raise SchemaError(
            "bad_jpeg", f"stream {stream!r}: jpeg does not decode to its {width}x{height} header"
        )
    return rgb


def generic_schema(config: StreamConfig) -> ArraySchema:
    """A generic stream's one sample per message: the array `values` of its declared dtype and shape."""
    assert config.generic is not None  # the config refuses a generic stream without its table
    first, *rest = config.generic.shape
    return ArraySchema("values", (config.generic.dtype,), tuple(rest), leading=first)


def limit_problems(config: StreamConfig) -> list[str]:
    """What in the stream's receive limits would refuse every message its schema allows (a dtype left
    out, too few dimensions, a generic sample over max_array_mb): checked before the pipeline starts."""
    where = f"streams[{config.name}].limits"
    limits = config.limits
    schemas = (_RGB8, _JPEG) if config.modality == "camera" else (_schema(config),)
    problems = []
    if not any(set(schema.dtypes) & set(limits.dtypes) for schema in schemas):
        wanted = sorted({dtype for schema in schemas for dtype in schema.dtypes})
        problems.append(f"{where}.dtypes: {limits.dtypes} holds none of its messages' dtypes {wanted}")
    rank = min(1 + len(schema.trailing) for schema in schemas)
    if rank > limits.max_ndim:
        problems.append(f"{where}.max_ndim: {limits.max_ndim}, its arrays have {rank} dimensions")
    if config.generic is not None:
        size = np.dtype(config.generic.dtype).itemsize * math.prod(config.generic.shape)
        if size > Limits.from_config(limits).max_array_bytes:
            problems.append(f"{where}.max_array_mb: {limits.max_array_mb}, one sample is {size} bytes")
    return problems


def _schema(config: StreamConfig) -> ArraySchema:
    return generic_schema(config) if config.modality == "generic" else _SCHEMAS[config.modality]


def check_schema(config: StreamConfig, meta: dict, declared: Declared) -> ArraySchema:
    """The array schema a message of `config`'s stream must follow, after checking its meta fields
    and its declared arrays against it (PROTOCOL.md section 5); no array data is looked at."""
    stream = config.name
    if config.modality == "camera":
        encoding = meta.get("encoding", "rgb8")
        if not isinstance(encoding, str):
            raise SchemaError("bad_meta", f"stream {stream!r}: meta.encoding must be a string")
        if encoding not in ("rgb8", "jpeg"):
            raise SchemaError("unsupported_encoding", f"stream {stream!r}: camera encoding {encoding!r}")
        schema = _RGB8 if encoding == "rgb8" else _JPEG
    else:
        schema = _schema(config)
    schema.check(stream, declared)
    if config.modality == "audio":
        rate = meta.get("sample_rate")
        if not isinstance(rate, int) or isinstance(rate, bool):
            raise SchemaError(
                "bad_meta", f"stream {stream!r}: meta.sample_rate must be an integer, got {rate!r}"
            )
        if rate != config.sample_rate:
            raise SchemaError(
                "sample_rate_mismatch", f"stream {stream!r}: {rate} Hz, config says {config.sample_rate} Hz"
            )
    return schema


def check_payload(sample: Sample, config: StreamConfig, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """The payload the modality's preprocessor takes (camera: rgb8 image, lidar: points, radar:
    detections, audio: float32 samples, generic: its sample), after checking the sample against
    PROTOCOL.md section 5."""
    schema = check_schema(config, sample.meta, _declared(sample))
    array = sample.arrays[schema.name]
    if schema is _JPEG:
        return decode_jpeg(array, config.name, limits.max_array_bytes)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise SchemaError("non_finite", f"stream {config.name!r}: {schema.name} hold NaN or inf")
    if config.modality not in CONTINUOUS_MODALITIES:
        return array
    if config.modality == "audio" and array.dtype == np.int16:
        return array.astype(np.float32) * _INT16_SCALE
    return np.array(array)  # own the memory: the synchronizer keeps chunks and samples a while


def _declared(sample: Sample) -> Declared:
    return {name: (array.dtype, array.shape) for name, array in sample.arrays.items()}


def restart_timeout_ns(rate_hz: float) -> int:
    """Silence after which a lower seq means a restarted driver: 5 periods, at least 0.5 s (a driver
    process takes longer than that to come back, a reordered packet far less)."""
    return max(NS_PER_S // 2, round(5 * NS_PER_S / rate_hz))


class SeqTracker:
    """Sequence-number bookkeeping of one stream, PROTOCOL.md section 7.

    Times are the stream's clock: arrival times live, stamps in a replay. Silence is measured from
    the last ACCEPTED message, so a driver that restarts sooner than the timeout loses at most one
    timeout's worth of messages, never more.

    A seq further ahead than the stream could have advanced, at RATE_MARGIN times `rate_hz` plus SEQ_SLACK,
    is an implausible jump: a forged or corrupted number, dropped and counted (`seq_jumps`), so that one
    message cannot make the real driver's messages look old. How far it could have advanced is measured
    over the longest of: the time since its last accepted message arrived; the time since the one before
    at most HELD_FRAMES that continue it one by one (a driver woken from a stall sends the frames it held,
    then skips ahead); and the time between their stamps (a receiver woken from a stall finds its queue
    full of frames from before it, then the ones after the frames its sender dropped meanwhile): from the
    last stamp that passed ingest's stamp checks (`stamped`), the new one counted no later than the clock
    minus the stream's smallest delivery delay, so that a forged stamp gains no more than the lateness of
    the frame it follows. It becomes the stream's sequence (a restart) only when it
    persists: JUMP_CONFIRM consecutive messages continue it, none continues the old sequence in
    between, and the old one has been silent for the restart timeout. Its gap is never counted.
    """

    def __init__(self, restart_timeout_ns: int, rate_hz: float) -> None:
        self.restart_timeout_ns = restart_timeout_ns
        self.rate_hz = rate_hz
        self.last_seq: int | None = None
        self._last_ns = 0
        # The stamp of the last accepted message whose stamp passed ingest's checks (`stamped`), and the
        # smallest clock - stamp (at least 0) of those since the sequence began: how soon a message of
        # this stream can arrive after its stamp. None: none yet (a new sequence, resumed from a mark).
        self._last_stamp_ns: int | None = None
        self._delay_ns: int | None = None
        # The accepted messages before the last, of the same sequence, newest last: (seq, time). A driver
        # stopped for a while sends the frames it held on waking, then skips ahead: measured from them the
        # skip looks impossible, from the message before them it is the silence it was.
        self._before: deque[tuple[int, int]] = deque(maxlen=HELD_FRAMES)
        self._jump: tuple[int, int, int] | None = None  # the implausible run: last seq, its time, length
        self._resumed = False  # resumed from a predecessor, nothing accepted since
        self.gaps = 0  # gap events
        self.lost = 0  # messages missing in those gaps
        self.duplicates = 0
        self.out_of_order = 0
        self.jumps = 0
        self.restarts = 0

    def accept(self, seq: int, now_ns: int, stamp_ns: int) -> bool:
        """Whether to use the message that came at `now_ns` stamped `stamp_ns` (the stream's time, its
        offset subtracted); counts what it says about the stream."""
        last = self.last_seq
        if last is None:
            return self._take(seq, now_ns)
        silent = self._resumed or now_ns - self._last_ns > self.restart_timeout_ns
        if seq <= last:
            if not silent:
                if seq == last:
                    self.duplicates += 1
                else:
                    self.out_of_order += 1
                return False
            self.restarts += 1
            return self._take(seq, now_ns, continues=False)
        if (
            self._plausible(seq - last, now_ns - self._last_ns)
            or self._follows_held_frames(seq, now_ns)
            or self._plausible_from_stamps(seq - last, now_ns, stamp_ns)
        ):
            return self._continue(seq, last, now_ns)
        run = 1
        if self._jump is not None:
            jump_seq, jump_ns, length = self._jump
            if seq > jump_seq and self._plausible(seq - jump_seq, now_ns - jump_ns):
                run = length + 1
        if run >= JUMP_CONFIRM and silent:
            self.restarts += 1
            return self._take(seq, now_ns, continues=False)
        self._jump = (seq, now_ns, run)
        self.jumps += 1
        return False

    def pass_over(self, seq: int, now_ns: int) -> None:
        """A message dropped for another reason (counted there) used `seq`: when it plainly continues
        the sequence it is taken, so the next message does not count it as lost upstream. Nothing else
        about it is counted (it may be the very corruption that got it dropped)."""
        last = self.last_seq
        if last is not None and seq > last and self._plausible(seq - last, now_ns - self._last_ns):
            self._continue(seq, last, now_ns)

    def resume(self, mark: SeqMark) -> None:
        """Go on from a predecessor's sequence (a restarted node). What the stream sent while no process
        listened is then a gap; a seq at or below the mark is a driver that restarted meanwhile, taken at
        once (the successor's new connection cannot deliver a message its predecessor took)."""
        self._take(mark.seq, mark.time_ns, continues=False)
        self._resumed = True

    def stamped(self, stamp_ns: int, now_ns: int) -> None:
        """The message just accepted has a stamp that passed ingest's stamp checks: the stamps measure
        the next skip from it. Only such a stamp: one refused (a stamp_jump, a future_stamp) would let a
        forger set where the next skip is measured from."""
        delay = max(0, now_ns - stamp_ns)
        self._delay_ns = delay if self._delay_ns is None else min(self._delay_ns, delay)
        self._last_stamp_ns = stamp_ns

    @property
    def last(self) -> SeqMark | None:
        """The last accepted seq and the time it came: what a successor resumes from."""
        return None if self.last_seq is None else SeqMark(self.last_seq, self._last_ns)

    def _plausible(self, advance: int, elapsed_ns: int) -> bool:
        most = 1 + SEQ_SLACK + RATE_MARGIN * self.rate_hz * max(0, elapsed_ns) / NS_PER_S
        return advance <= most

    def _follows_held_frames(self, seq: int, now_ns: int) -> bool:
        """Whether `seq` is a plausible advance from an accepted message that the ones since continue one
        by one (frames a stalled driver held): never across a gap, so a forger gains nothing from one."""
        for held, (before_seq, before_ns) in enumerate(reversed(self._before), start=1):
            if self.last_seq != before_seq + held:
                return False
            if self._plausible(seq - before_seq, now_ns - before_ns):
                return True
        return False

    def _plausible_from_stamps(self, advance: int, now_ns: int, stamp_ns: int) -> bool:
        """Whether `advance` is plausible over the time between the last checked stamp and this one: the
        frames a stalled receiver found queued came late, together, and the skip after them is the time
        it stalled. This stamp counts no later than the clock minus the stream's smallest delay, so a
        forger, who can stamp as late as the clock, gains no more than that frame's lateness."""
        if self._last_stamp_ns is None or self._delay_ns is None:
            return False
        return self._plausible(advance, min(stamp_ns, now_ns - self._delay_ns) - self._last_stamp_ns)

    def _continue(self, seq: int, last: int, now_ns: int) -> bool:
        """Accept `seq`, ahead of `last`, the last accepted one: what it skipped is lost upstream."""
        if seq - last > 1:
            self.gaps += 1
            self.lost += seq - last - 1
        return self._take(seq, now_ns)

    def _take(self, seq: int, now_ns: int, continues: bool = True) -> bool:
        """Accept `seq`; `continues`: it goes on from the last accepted one (no restart, no resume)."""
        if not continues:
            self._before.clear()
            self._last_stamp_ns = self._delay_ns = None  # a restarted driver may keep another clock
        elif self.last_seq is not None:
            self._before.append((self.last_seq, self._last_ns))
        self.last_seq = seq
        self._last_ns = now_ns
        self._resumed = False
        self._jump = None  # the accepted sequence goes on: a pending jump is no restart
        return True

    def counters(self) -> dict[str, int]:
        return {
            "seq_gaps": self.gaps,
            "seq_lost": self.lost,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "seq_jumps": self.jumps,
            "restarts": self.restarts,
        }


class StampTracker:
    """Whether a stream's stamp is plausible against its own history and the stream's clock.

    A stamp is a jump when it lies more than `jump_ns` before the stream's last accepted stamp (the
    synchronizer would reset every queue for it), or, with `check_ahead`, more than `jump_ns` ahead
    of the clock minus the stream's smallest latency seen (clock - stamp; a frame delivered late only
    raises the latency). Live, ingest bounds a stamp ahead of the clock by max_stamp_ahead_ms
    instead; a replay has no other check ahead. A jump is dropped and counted (`stamp_jump`), so
    that one stamp from a bad clock cannot reset the synchronizer. It becomes the stream's time when
    it persists: JUMP_CONFIRM consecutive jumped messages agree on their latency (a clock that was
    set, a log that loops).
    """

    def __init__(self, jump_ns: int, check_ahead: bool = True) -> None:
        self.jump_ns = jump_ns
        self.check_ahead = check_ahead
        self._last_ns: int | None = None  # the last accepted stamp
        self._latency_ns = 0  # the smallest clock - stamp of the accepted messages since the last jump
        self._jump: tuple[int, int] | None = None  # the pending jump: its latency, its length

    def accept(self, stamp_ns: int, clock_ns: int) -> bool:
        latency = clock_ns - stamp_ns
        last = self._last_ns
        if last is None:
            self._latency_ns = latency
            return self._take(stamp_ns)
        ahead = self.check_ahead and latency < self._latency_ns - self.jump_ns
        if stamp_ns >= last - self.jump_ns and not ahead:
            self._latency_ns = min(self._latency_ns, latency)
            return self._take(stamp_ns)
        run = 1
        if self._jump is not None and abs(latency - self._jump[0]) <= self.jump_ns:
            run = self._jump[1] + 1
        if run >= JUMP_CONFIRM:
            self._latency_ns = latency
            return self._take(stamp_ns)
        self._jump = (latency, run)
        return False

    def _take(self, stamp_ns: int) -> bool:
        self._last_ns, self._jump = stamp_ns, None
        return True


class Ingest:
    """The whole ingest step of one stream; the node wraps it in sockets and a clock.

    `binding` is the stream and the model input it feeds (fusion_pipeline.binding.bind), whose
    front end step 7 runs; a generic stream that feeds no model input (``model.unbound_streams``) is
    given as its StreamConfig. `live` is False in a replay: the stream's clock is then the recorded time
    (module docstring). `time_jump_ns` is the synchronizer's sync.time_jump_ms: a stamp that jumps
    further is held back until it persists (:class:`StampTracker`)."""

    def __init__(
        self,
        binding: Binding | StreamConfig,
        limits: Limits | None = None,
        live: bool = True,
        time_jump_ns: int = NS_PER_S,
        resume_from: SeqMark | None = None,
    ) -> None:
        config = self.config = binding if isinstance(binding, StreamConfig) else binding.stream
        self.prepare = None if isinstance(binding, StreamConfig) else binding.prepare
        self.limits = limits or Limits.from_config(config.limits)
        self.live = live
        self.seq = SeqTracker(restart_timeout_ns(config.rate_hz), config.rate_hz)
        if resume_from is not None:  # a restarted node: count what the stream sent while it was down
            self.seq.resume(resume_from)
        self.stamps = StampTracker(time_jump_ns, check_ahead=not live)
        self.rejected: Counter[str] = Counter()
        self._lags_ns: deque[int] = deque(maxlen=LAG_WINDOW)
        self.produced = 0
        self.last_error = ""

    @property
    def drain_newest(self) -> bool:
        """Whether a node that fell behind may skip to the newest message (discrete streams only)."""
        return self.config.modality not in CONTINUOUS_MODALITIES

    def admit(self, message: Checked, arrival_ns: int) -> bool:
        """Whether a message passes the checks that need its header only (identity, seq, stamp,
        schema); a refusal is counted. A node that drains to the newest message runs this on every
        message it drains, in order, then :meth:`finish` on the one it keeps."""
        return self._admit(message.sample, message.declared, arrival_ns)

    def process(self, sample: Sample, arrival_ns: int) -> Sample | None:
        """The model-ready sample for `sample`, or None when it is dropped (and counted)."""
        if not self._admit(sample, _declared(sample), arrival_ns):
            return None
        return self.finish(sample, arrival_ns)

    def refused_at_socket(self, header: dict[str, Any], arrival_ns: int) -> None:
        """A message of this stream that its socket dropped after reading `header` (malformed, over the
        stream's limits, stale): it used up its seq, so the next one does not count it as lost upstream.
        A header that names another stream or lacks an integer seq and stamp is left alone."""
        seq, stamp_ns, meta = header.get("seq"), header.get("stamp_ns"), header.get("meta")
        if header.get("stream") != self.config.name or type(seq) is not int or type(stamp_ns) is not int:
            return
        stamp_ns -= self.config.offset_ns
        self.seq.pass_over(seq, self._clock(stamp_ns, meta if isinstance(meta, dict) else {}, arrival_ns))

    def finish(self, sample: Sample, arrival_ns: int) -> Sample | None:
        """The model-ready sample for a message :meth:`admit` let through, or None when its payload
        is refused (and counted)."""
        try:
            arrays = self._model_ready(check_payload(sample, self.config, self.limits))
        except SchemaError as exc:
            self._count(exc)
            return None
        return self._output(sample, sample.stamp_ns - self.config.offset_ns, arrays, arrival_ns)

    def counters(self) -> dict[str, int | float | list[int]]:
        """Flat counters for heartbeats: produced, schema_<reason> and the seq counters; and, no counts,
        `last_seq`, [seq, time] of the last accepted message (the supervisor hands it to a restart), and
        `lag_ms_min` and `lag_ms_median` of the latest LAG_WINDOW messages (gauges)."""
        counters: dict[str, int | float | list[int]] = {
            "produced": self.produced,
            **{f"schema_{reason}": n for reason, n in sorted(self.rejected.items())},
            **self.seq.counters(),
        }
        if (last := self.seq.last) is not None:
            counters["last_seq"] = list(last)
        if self._lags_ns:
            lags = sorted(self._lags_ns)
            counters["lag_ms_min"] = lags[0] / 1e6
            counters["lag_ms_median"] = lags[len(lags) // 2] / 1e6
        return counters

    def _count(self, exc: SchemaError) -> None:
        if not self.rejected[exc.reason]:  # the first one says why; the counters say how many
            log.warning(
                "dropping a message of %s (schema_%s, further ones only counted): %s",
                self.config.name,
                exc.reason,
                exc,
            )
        self.rejected[exc.reason] += 1
        self.last_error = str(exc)

    def _admit(self, sample: Sample, declared: Declared, arrival_ns: int) -> bool:
        try:
            self._check_stream(sample)
            stamp_ns = sample.stamp_ns - self.config.offset_ns
            clock_ns = self._clock(stamp_ns, sample.meta, arrival_ns)
            if not self.seq.accept(sample.seq, clock_ns, stamp_ns):
                return False  # a duplicate or out-of-order message leaves the gap to the next one
            # Refused from here on, a message has used up its seq: it is not lost upstream.
            self._check_modality(sample)
            self._check_stamp(sample.stamp_ns, arrival_ns, clock_ns)
            self.seq.stamped(stamp_ns, clock_ns)
            self._lags_ns.append(clock_ns - stamp_ns)
            check_schema(self.config, sample.meta, declared)
        except SchemaError as exc:
            self._count(exc)
            return False
        return True

    def _clock(self, stamp_ns: int, meta: dict[str, Any], arrival_ns: int) -> int:
        """The stream's clock: the arrival time live; in a replay the recorded time, else `stamp_ns`
        (the offset already subtracted)."""
        if self.live:
            return arrival_ns
        recorded = meta.get("log_time_ns")
        return recorded if type(recorded) is int else stamp_ns

    def _output(
        self, sample: Sample, stamp_ns: int, arrays: dict[str, np.ndarray], arrival_ns: int
    ) -> Sample:
        meta: dict[str, object] = {"source_seq": sample.seq, "stages": {INGEST_IN: arrival_ns}}
        replay_seq = sample.meta.get("replay_seq")
        if type(replay_seq) is int:  # the replay send order (fusion_pipeline.sync.reorder); not a bool
            meta["replay_seq"] = replay_seq
        if self.config.modality == "audio":
            meta["sample_rate"] = self.config.sample_rate
        out = Sample(
            stream=self.config.name,
            modality=self.config.modality,
            seq=self.produced,
            stamp_ns=stamp_ns,
            arrays=arrays,
            frame_id=sample.frame_id or self.config.frame_id,
            meta=meta,
        )
        self.produced += 1
        return out

    def _check_stream(self, sample: Sample) -> None:
        """Another stream's message: its seq is not this stream's to track."""
        if sample.stream != self.config.name:
            # A live subscriber takes whole stream names already (transport.Subscriber); a caller of the
            # stage itself may hand it anything.
            raise SchemaError("wrong_stream", f"stream {sample.stream!r} is not {self.config.name!r}")

    def _check_modality(self, sample: Sample) -> None:
        if sample.modality != self.config.modality:
            raise SchemaError(
                "wrong_modality",
                f"stream {sample.stream!r}: modality {sample.modality!r}, config: {self.config.modality!r}",
            )

    def _check_stamp(self, stamp_ns: int, arrival_ns: int, clock_ns: int) -> None:
        stamp = stamp_ns - self.config.offset_ns
        where = f"stream {self.config.name!r}: stamp_ns {stamp_ns}"
        if not _INT64_MIN <= stamp <= _INT64_MAX:
            raise SchemaError("bad_stamp", f"{where} minus the offset leaves int64")
        if stamp < 0:
            raise SchemaError("negative_stamp", f"{where} minus the offset is negative (before 1970)")
        ahead_ms = (stamp - arrival_ns) / 1e6
        if self.live and ahead_ms > self.config.max_stamp_ahead_ms:
            raise SchemaError(
                "future_stamp",
                f"{where} minus the offset is {ahead_ms:.0f} ms ahead of the clock "
                f"(max_stamp_ahead_ms = {self.config.max_stamp_ahead_ms:g}): check the driver's clock",
            )
        if not self.stamps.accept(stamp, clock_ns):
            raise SchemaError(
                "stamp_jump",
                f"{where} minus the offset jumped by more than sync.time_jump_ms "
                f"({self.stamps.jump_ns / 1e6:g} ms) against the stream's time; "
                f"taken once {JUMP_CONFIRM} messages in a row agree",
            )

    def _model_ready(self, payload: np.ndarray) -> dict[str, np.ndarray]:
        if self.config.modality == "audio":
            return {"samples": payload}  # the synchronizer cuts the window, then computes the log-mel
        if self.config.modality == "generic":
            return {"values": payload}  # the synchronizer picks or stacks the samples per set
        assert self.prepare is not None  # only a generic stream runs without a model input
        try:
            return self.prepare(payload)
        except PreprocessError as exc:
            raise SchemaError("preprocess", str(exc)) from exc
