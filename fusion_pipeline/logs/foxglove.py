"""Export a log for Foxglove: an MCAP file of JSON messages with Foxglove's well-known schemas.

``fusion-pipeline export-foxglove LOG.mcap [RESULTS.mcap ...] -o VIEW.mcap``:

- camera ``image`` -> ``foxglove.RawImage`` (encoding rgb8); camera ``jpeg`` -> ``foxglove.CompressedImage``
- lidar ``points`` (x, y, z, intensity) and radar ``detections`` (x, y, z, velocity, rcs) ->
  ``foxglove.PointCloud`` (float32 fields, identity pose, in the message's frame_id)
- results -> JSON (schema ``fusion_pipeline.Result``): stamp, class probabilities by name, position,
  velocity, siren probability, presence by sensor input, every output array flattened (a model's own
  outputs) and the stage stamps

Messages use message_encoding ``json`` with ``jsonschema`` schemas, written here (no extra dependency);
binary fields are base64 strings, as Foxglove's JSON encoding specifies. Audio and sets have no Foxglove
panel that fits and are skipped (counted), as is a camera, lidar or radar message whose array is not of
its PROTOCOL.md section 5 shape (counted per topic, with the reason). Topic = "/" + stream name;
publish_time is the stamp and log_time the log's (a replay's results: their stamp, LogReader.timeline_ns).
A stream that an earlier input already holds (the live ``result/fused`` of a recording and the replayed one
of its ``--results`` log) gets its own topic, ``/STREAM@SOURCE`` (SOURCE = the log's name, the parts of a
split recording being one source), and the command says so. The output is created mode 0600, beside
its name, and linked into place once whole: a failed or stopped export leaves nothing under the name.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from mcap.writer import CompressionType, Writer

from fusion_pipeline.files import new_file
from fusion_pipeline.logs.errors import LogError
from fusion_pipeline.logs.reader import LogReader, existing_logs, say_cut_short
from fusion_pipeline.logs.records import DEFAULT_CHUNK_BYTES
from fusion_pipeline.logs.ros2_messages import odd_shape
from fusion_pipeline.logs.sources import SourceTopics, log_sources
from fusion_pipeline.logs.writer import create_log_file
from fusion_pipeline.protocol import NS_PER_S
from fusion_pipeline.transport.wire import Sample

__all__ = ["SCHEMAS", "export_foxglove", "to_foxglove"]

log = logging.getLogger(__name__)

_TIME = {
    "type": "object",
    "properties": {"sec": {"type": "integer", "minimum": 0}, "nsec": {"type": "integer", "minimum": 0}},
}
_BYTES = {"type": "string", "contentEncoding": "base64"}
_VECTOR3 = {"type": "object", "properties": {k: {"type": "number"} for k in "xyz"}}
_QUATERNION = {"type": "object", "properties": {k: {"type": "number"} for k in "xyzw"}}

#: JSON schemas of the messages written, following https://docs.foxglove.dev/docs/visualization/message-schemas
SCHEMAS: dict[str, dict[str, Any]] = {
    "foxglove.RawImage": {
        "title": "foxglove.RawImage",
        "type": "object",
        "properties": {
            "timestamp": _TIME,
            "frame_id": {"type": "string"},
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            "encoding": {"type": "string"},
            "step": {"type": "integer"},
            "data": _BYTES,
        },
    },
    "foxglove.CompressedImage": {
        "title": "foxglove.CompressedImage",
        "type": "object",
        "properties": {
            "timestamp": _TIME,
            "frame_id": {"type": "string"},
            "data": _BYTES,
            "format": {"type": "string"},
        },
    },
    "foxglove.PointCloud": {
        "title": "foxglove.PointCloud",
        "type": "object",
        "properties": {
            "timestamp": _TIME,
            "frame_id": {"type": "string"},
            "pose": {"type": "object", "properties": {"position": _VECTOR3, "orientation": _QUATERNION}},
            "point_stride": {"type": "integer"},
            "fields": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "offset": {"type": "integer"},
                        "type": {"type": "integer", "description": "foxglove.NumericType; 7 = FLOAT32"},
                    },
                },
            },
            "data": _BYTES,
        },
    },
    "fusion_pipeline.Result": {
        "title": "fusion_pipeline.Result",
        "description": "one model result (docs/PROTOCOL.md section 8)",
        "type": "object",
        "properties": {
            "timestamp": _TIME,
            "class_probs": {"type": "object", "additionalProperties": {"type": "number"}},
            "position": {"type": "array", "items": {"type": "number"}},
            "velocity": {"type": "number"},
            "siren_prob": {"type": "number"},
            "presence": {"type": "object", "additionalProperties": {"type": "boolean"}},
            "outputs": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "number"}},
            },
            "stamps": {"type": "object", "additionalProperties": {"type": "integer"}},
            "stages": {"type": "object", "additionalProperties": {"type": "integer"}},
            "provider": {"type": "string"},
        },
    },
}

_FLOAT32 = 7  # foxglove.NumericType.FLOAT32
_CLOUD_FIELDS = {"lidar": ("x", "y", "z", "intensity"), "radar": ("x", "y", "z", "velocity", "rcs")}


def _time(stamp_ns: int) -> dict[str, int]:
    sec, nsec = divmod(max(stamp_ns, 0), NS_PER_S)
    return {"sec": sec, "nsec": nsec}


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()


def _cloud(sample: Sample, columns: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    columns = np.ascontiguousarray(columns, dtype="<f4")
    return {
        "timestamp": _time(sample.stamp_ns),
        "frame_id": sample.frame_id,
        "pose": {"position": {"x": 0, "y": 0, "z": 0}, "orientation": {"x": 0, "y": 0, "z": 0, "w": 1}},
        "point_stride": 4 * len(names),
        "fields": [{"name": n, "offset": 4 * i, "type": _FLOAT32} for i, n in enumerate(names)],
        "data": _b64(columns),
    }


def _result(sample: Sample) -> dict[str, Any]:
    arrays, meta = sample.arrays, sample.meta
    out: dict[str, Any] = {"timestamp": _time(sample.stamp_ns)}
    if "class_probs" in arrays:
        classes = meta.get("classes") or [str(i) for i in range(arrays["class_probs"].size)]
        out["class_probs"] = {name: float(p) for name, p in zip(classes, arrays["class_probs"], strict=False)}
    if "position" in arrays:
        out["position"] = [float(v) for v in arrays["position"]]
    for name in ("velocity", "siren_prob"):
        if name in arrays and arrays[name].size:
            out[name] = float(arrays[name].reshape(-1)[0])
    if "presence" in arrays:  # keyed by sensor input (results before contract v2: by modality)
        inputs = (
            meta.get("inputs") or meta.get("modalities") or [str(i) for i in range(arrays["presence"].size)]
        )
        out["presence"] = {name: bool(p) for name, p in zip(inputs, arrays["presence"], strict=False)}
    # Every array, flattened: a model's own outputs have no field of their own above.
    out["outputs"] = {
        name: [float(v) for v in a.reshape(-1)] for name, a in arrays.items() if name != "presence"
    }
    for key in ("stamps", "stages", "provider"):
        if key in meta:
            out[key] = meta[key]
    return out


def to_foxglove(sample: Sample) -> tuple[str, dict[str, Any]] | None:
    """(schema name, JSON message) for one sample; None when Foxglove has no fitting schema."""
    arrays = sample.arrays
    if sample.modality == "camera" and "image" in arrays:
        image = np.ascontiguousarray(arrays["image"], np.uint8)  # rgb8, as export-ros2 writes it
        height, width = image.shape[:2]
        message = {
            "timestamp": _time(sample.stamp_ns),
            "frame_id": sample.frame_id,
            "width": width,
            "height": height,
            "encoding": "rgb8",
            "step": 3 * width,
            "data": _b64(image),
        }
        return "foxglove.RawImage", message
    if sample.modality == "camera" and "jpeg" in arrays:
        message = {
            "timestamp": _time(sample.stamp_ns),
            "frame_id": sample.frame_id,
            "data": _b64(arrays["jpeg"]),
            "format": "jpeg",
        }
        return "foxglove.CompressedImage", message
    if sample.modality in _CLOUD_FIELDS:
        name = "points" if sample.modality == "lidar" else "detections"
        if name in arrays:
            return "foxglove.PointCloud", _cloud(sample, arrays[name], _CLOUD_FIELDS[sample.modality])
    if sample.modality == "result":
        return "fusion_pipeline.Result", _result(sample)
    return None


def export_foxglove(logs: Iterable[Path], out: Path) -> dict[str, int]:
    """Write every convertible message of `logs` to a Foxglove-ready MCAP; return counts per topic. The
    file is written beside `out` and linked into place once whole (`new_file`): never over a file, and a
    failed or stopped export leaves nothing under the name."""
    counts: dict[str, int] = {}
    skipped: dict[str, int] = {}
    odd_shapes: defaultdict[str, Counter[str]] = defaultdict(Counter)  # per topic, why
    cast: defaultdict[str, Counter[str]] = defaultdict(Counter)  # per topic, what was cast to rgb8
    logs = existing_logs(logs)
    topics = SourceTopics()
    with (
        new_file(out, LogError) as partial,
        _write_errors(out),
        os.fdopen(create_log_file(partial), "wb") as stream,
    ):
        writer = Writer(stream, chunk_size=DEFAULT_CHUNK_BYTES, compression=CompressionType.ZSTD)
        writer.start(profile="", library="fusion-pipeline export-foxglove")
        schemas: dict[str, int] = {}
        channels: dict[tuple[str, str], int] = {}
        readers = []  # each source's, for what they say of a log cut short
        for source, paths in log_sources(logs, joined=True).logs:
            reader = LogReader(paths)
            readers.append(reader)
            for message in reader:
                sample = message.sample
                odd = odd_shape(sample)
                if odd is not None:
                    odd_shapes[topics.topic(sample.stream, source)][odd] += 1
                    continue
                image = sample.arrays.get("image") if sample.modality == "camera" else None
                if image is not None and image.dtype != np.uint8:
                    cast[topics.topic(sample.stream, source)][f"image {image.dtype}"] += 1
                converted = to_foxglove(sample)
                if converted is None:
                    skipped[sample.stream] = skipped.get(sample.stream, 0) + 1
                    continue
                schema, payload = converted
                if schema not in schemas:
                    schemas[schema] = writer.register_schema(
                        schema, "jsonschema", json.dumps(SCHEMAS[schema]).encode()
                    )
                topic = topics.topic(sample.stream, source)
                key = (topic, schema)
                if key not in channels:
                    channels[key] = writer.register_channel(topic, "json", schemas[schema])
                writer.add_message(
                    channels[key],
                    log_time=reader.timeline_ns(message),
                    data=json.dumps(payload, default=str).encode(),
                    publish_time=max(sample.stamp_ns, 0),
                    sequence=sample.seq & 0xFFFFFFFF,
                )
                counts[topic] = counts.get(topic, 0) + 1
        writer.finish()
    say_cut_short([p for r in readers for p in r.truncated], f"{out} holds the messages before it")
    for line in topics.renamed:
        log.warning("%s: %s", out, line)
    for topic, reasons in odd_shapes.items():
        for why, n in reasons.items():
            log.warning("%s: %s: %d messages skipped: %s", out, topic, n, why)
    for topic, kinds in cast.items():
        for what, n in kinds.items():
            log.warning("%s: %s: %d messages: %s converted to uint8 (rgb8)", out, topic, n, what)
    if skipped:
        log.warning("%s: not exported (no Foxglove schema): %s", out, skipped)
    return counts


@contextlib.contextmanager
def _write_errors(out: Path) -> Iterator[None]:
    """A write that fails (a full disk) as a LogError naming `out`; reading a log raises LogError itself."""
    try:
        yield
    except OSError as exc:
        raise LogError(f"{out}: cannot write the export: {exc.strerror or exc}") from exc
