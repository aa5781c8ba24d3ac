"""ROS 2 bag interop (extra ``[ros]``, built on rosbags): import a rosbag2 into a log, export a log to one.

Import (``fusion-pipeline import-ros2 BAG -o LOG.mcap --map TOPIC=STREAM[:modality] ...``) reads rosbag2
in sqlite3 or mcap storage and converts, per mapped topic:

=====================================  =========  =====================================================
ROS 2 type                             modality   becomes (docs/PROTOCOL.md section 5)
=====================================  =========  =====================================================
sensor_msgs/msg/Image rgb8, bgr8,      camera     ``image`` uint8 [H, W, 3] RGB (bgr8 reordered, mono8
mono8                                             repeated into 3 channels; row padding ``step`` honoured)
sensor_msgs/msg/CompressedImage jpeg   camera     ``jpeg`` uint8 [n], meta encoding "jpeg"
sensor_msgs/msg/PointCloud2            lidar      ``points`` float32 [N, 4]: float32 fields x, y, z and
                                                  optional intensity (0 when absent), any field order,
                                                  offsets and point_step; non-finite points dropped
sensor_msgs/msg/PointCloud2            radar      ``detections`` float32 [M, 5] from x, y, z, velocity, rcs
audio_common_msgs/msg/AudioData,       audio      ``samples`` int16 [frames, channels] from S16LE bytes,
AudioDataStamped                                  meta sample_rate from ``--sample-rate``
=====================================  =========  =====================================================

stamp_ns is the message header's stamp (the bag's receive time for AudioData, which has no header),
log_time the bag's timestamp, seq a per-stream count from 0 (ROS 2 messages carry none). A mapped topic of
another type or encoding is refused with an error naming the topic and the type; unmapped topics are
skipped.

Export (``fusion-pipeline export-ros2 LOG.mcap [RESULTS.mcap] -o BAG``) writes the inverse (camera as
Image rgb8 or CompressedImage, lidar and radar as PointCloud2, audio as AudioDataStamped S16LE) plus
results as std_msgs/msg/String holding the result as JSON, as a rosbag2 version 8 bag (ROS 2 Iron and
newer play it) in sqlite3 or mcap storage. Topic = "/" + stream name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fusion_pipeline.errors import FusionError
from fusion_pipeline.logfile import LogReader, LogWriter, existing_logs
from fusion_pipeline.wire import Sample

__all__ = [
    "AUDIO_COMMON_MSGS",
    "Ros2Error",
    "TopicMap",
    "export_ros2",
    "import_ros2",
    "parse_map",
    "typestore",
]

log = logging.getLogger(__name__)

#: audio_common_msgs definitions (ros-drivers/audio_common), registered with the rosbags typestore.
AUDIO_COMMON_MSGS = {
    "audio_common_msgs/msg/AudioData": "uint8[] data\n",
    "audio_common_msgs/msg/AudioDataStamped": "std_msgs/Header header\naudio_common_msgs/AudioData audio\n",
}

_IMAGE = "sensor_msgs/msg/Image"
_COMPRESSED = "sensor_msgs/msg/CompressedImage"
_CLOUD = "sensor_msgs/msg/PointCloud2"
_AUDIO = "audio_common_msgs/msg/AudioData"
_AUDIO_STAMPED = "audio_common_msgs/msg/AudioDataStamped"
_STRING = "std_msgs/msg/String"
_MODALITIES = {
    _IMAGE: "camera",
    _COMPRESSED: "camera",
    _CLOUD: "lidar",
    _AUDIO: "audio",
    _AUDIO_STAMPED: "audio",
}
_FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32
_LIDAR_FIELDS = ("x", "y", "z", "intensity")
_RADAR_FIELDS = ("x", "y", "z", "velocity", "rcs")


class Ros2Error(FusionError):
    """A bag cannot be converted; the message names the topic and the type."""


def _rosbags() -> Any:
    try:
        import rosbags.rosbag2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise Ros2Error(
            "ROS 2 bag support needs the [ros] extra: pip install 'fusion-pipeline[ros]'"
        ) from exc
    return rosbags


def typestore() -> Any:
    """A rosbags typestore of ROS 2 Jazzy with the audio_common_msgs types registered."""
    _rosbags()
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict[str, Any] = {}
    for name, text in AUDIO_COMMON_MSGS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


@dataclass(frozen=True)
class TopicMap:
    """One ``--map TOPIC=STREAM[:modality]``."""

    topic: str
    stream: str
    modality: str | None = None


def parse_map(items: Sequence[str]) -> list[TopicMap]:
    maps = []
    for item in items:
        topic, sep, rest = item.partition("=")
        stream, _, modality = rest.partition(":")
        if not sep or not topic or not stream:
            raise Ros2Error(f"--map {item!r}: expected TOPIC=STREAM[:modality]")
        if modality and modality not in ("camera", "lidar", "radar", "audio"):
            raise Ros2Error(f"--map {item!r}: modality must be camera, lidar, radar or audio")
        maps.append(TopicMap(topic, stream, modality or None))
    return maps


# -- import ---------------------------------------------------------------------------------------------


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _image(msg: Any, where: str) -> dict[str, np.ndarray]:
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(msg.encoding)
    if channels is None:
        raise Ros2Error(f"{where}: Image encoding {msg.encoding!r} is not supported (rgb8, bgr8, mono8)")
    rows = np.frombuffer(memoryview(msg.data), np.uint8)
    if msg.step < msg.width * channels or rows.size < msg.step * msg.height:
        raise Ros2Error(
            f"{where}: Image {msg.width}x{msg.height} step {msg.step} does not fit {rows.size} bytes"
        )
    image = rows[: msg.step * msg.height].reshape(msg.height, msg.step)[:, : msg.width * channels]
    image = image.reshape(msg.height, msg.width, channels)
    if msg.encoding == "bgr8":
        image = image[:, :, ::-1]
    elif msg.encoding == "mono8":
        image = np.repeat(image, 3, axis=2)
    return {"image": np.ascontiguousarray(image)}


def _compressed(msg: Any, where: str) -> dict[str, np.ndarray]:
    if "jpeg" not in msg.format.lower() and "jpg" not in msg.format.lower():
        raise Ros2Error(f"{where}: CompressedImage format {msg.format!r} is not supported (jpeg)")
    return {"jpeg": np.frombuffer(memoryview(msg.data), np.uint8).copy()}


def _cloud(msg: Any, where: str, names: Sequence[str], optional: Sequence[str]) -> np.ndarray:
    """Columns `names` of a PointCloud2 as float32 [N, len(names)]; `optional` ones are 0 when absent."""
    if msg.is_bigendian:
        raise Ros2Error(f"{where}: big-endian PointCloud2 is not supported")
    fields = {f.name: f for f in msg.fields}
    for name in names:
        field = fields.get(name)
        if field is None:
            if name in optional:
                continue
            raise Ros2Error(f"{where}: PointCloud2 has no field {name!r} (fields: {sorted(fields)})")
        if field.datatype != _FLOAT32 or field.count != 1:
            raise Ros2Error(
                f"{where}: PointCloud2 field {name!r} must be one float32 (datatype {field.datatype})"
            )
        if field.offset + 4 > msg.point_step:
            raise Ros2Error(
                f"{where}: PointCloud2 field {name!r} at offset {field.offset} overruns point_step"
            )
    present = [n for n in names if n in fields]
    # A structured dtype with the cloud's own offsets and point_step reads any field order and padding.
    dtype = np.dtype(
        {
            "names": present,
            "formats": ["<f4"] * len(present),
            "offsets": [fields[n].offset for n in present],
            "itemsize": msg.point_step,
        }
    )
    data = np.frombuffer(memoryview(msg.data), np.uint8)
    if msg.row_step < msg.width * msg.point_step or data.size < msg.row_step * msg.height:
        raise Ros2Error(f"{where}: PointCloud2 {msg.width}x{msg.height} does not fit {data.size} bytes")
    rows = data[: msg.row_step * msg.height].reshape(msg.height, msg.row_step)[
        :, : msg.width * msg.point_step
    ]
    points = np.ascontiguousarray(rows).view(dtype).reshape(-1)
    out = np.zeros((points.size, len(names)), np.float32)
    for i, name in enumerate(names):
        if name in fields:
            out[:, i] = points[name]
    return out[np.isfinite(out).all(axis=1)]


def _audio(msg: Any, where: str, channels: int) -> np.ndarray:
    data = np.frombuffer(memoryview(msg.data), np.uint8)
    if data.size % (2 * channels):
        raise Ros2Error(
            f"{where}: {data.size} audio bytes are not whole S16LE frames of {channels} channel(s)"
        )
    return data.view("<i2").reshape(-1, channels).copy()


def _convert(
    msgtype: str, msg: Any, modality: str, where: str, sample_rate: int | None, channels: int
) -> tuple[dict[str, np.ndarray], dict[str, Any], int | None, str]:
    """(arrays, meta, stamp_ns or None for the bag time, frame_id) of one ROS message."""
    if msgtype == _IMAGE and modality == "camera":
        return _image(msg, where), {"encoding": "rgb8"}, _stamp_ns(msg.header), msg.header.frame_id
    if msgtype == _COMPRESSED and modality == "camera":
        return _compressed(msg, where), {"encoding": "jpeg"}, _stamp_ns(msg.header), msg.header.frame_id
    if msgtype == _CLOUD and modality == "lidar":
        points = _cloud(msg, where, _LIDAR_FIELDS, optional=("intensity",))
        return {"points": points}, {}, _stamp_ns(msg.header), msg.header.frame_id
    if msgtype == _CLOUD and modality == "radar":
        detections = _cloud(msg, where, _RADAR_FIELDS, optional=())
        return {"detections": detections}, {}, _stamp_ns(msg.header), msg.header.frame_id
    if msgtype in (_AUDIO, _AUDIO_STAMPED) and modality == "audio":
        if sample_rate is None:
            raise Ros2Error(f"{where}: audio needs --sample-rate (AudioData does not say)")
        meta = {"sample_rate": sample_rate}
        if msgtype == _AUDIO:
            return {"samples": _audio(msg, where, channels)}, meta, None, ""
        stamped = _stamp_ns(msg.header), msg.header.frame_id
        return {"samples": _audio(msg.audio, where, channels)}, meta, *stamped
    raise Ros2Error(
        f"{where}: type {msgtype} as {modality} is not supported "
        f"(supported: {', '.join(f'{t} as {m}' for t, m in _MODALITIES.items())}, {_CLOUD} as radar)"
    )


def import_ros2(
    bag: Path,
    out: Path,
    maps: Sequence[TopicMap],
    *,
    sample_rate: int | None = None,
    channels: int = 1,
) -> dict[str, int]:
    """Convert the mapped topics of a rosbag2 into a log; return messages written per stream."""
    from rosbags.rosbag2 import Reader

    store = typestore()
    by_topic = {m.topic: m for m in maps}
    counts: dict[str, int] = {}
    try:
        reader = Reader(bag)
        reader.open()
    except Exception as exc:  # rosbags raises its own types for a missing or broken bag
        raise Ros2Error(f"{bag}: cannot open ROS 2 bag: {exc}") from exc
    try:
        connections = [c for c in reader.connections if c.topic in by_topic]
        missing = sorted(set(by_topic) - {c.topic for c in connections})
        if missing:
            raise Ros2Error(
                f"{bag}: no topic {missing} (topics: {sorted({c.topic for c in reader.connections})})"
            )
        modality = {}
        for c in connections:
            where = f"topic {c.topic} ({c.msgtype})"
            wanted = by_topic[c.topic].modality or _MODALITIES.get(c.msgtype)
            if wanted is None:
                raise Ros2Error(f"{where}: type {c.msgtype} is not supported")
            modality[c.topic] = wanted
        writer = LogWriter(out, metadata={"recorded_by": "fusion-pipeline import-ros2", "source": str(bag)})
        try:
            with writer:
                for connection, bag_ns, raw in reader.messages(connections=connections):
                    target = by_topic[connection.topic]
                    where = f"topic {connection.topic} ({connection.msgtype})"
                    msg = store.deserialize_cdr(raw, connection.msgtype)
                    arrays, meta, stamp, frame_id = _convert(
                        connection.msgtype, msg, modality[connection.topic], where, sample_rate, channels
                    )
                    seq = counts.get(target.stream, 0)
                    sample = Sample(
                        target.stream,
                        modality[connection.topic],
                        seq,
                        bag_ns if stamp is None else stamp,
                        arrays,
                        frame_id,
                        meta,
                    )
                    writer.write(sample, log_time_ns=bag_ns)
                    counts[target.stream] = seq + 1
        except Ros2Error:
            for path in writer.paths:  # a half-converted log is no log: leave nothing behind
                path.unlink(missing_ok=True)
            raise
    finally:
        reader.close()
    return counts


# -- export ---------------------------------------------------------------------------------------------


def _header(store: Any, sample: Sample) -> Any:
    types = store.types
    sec, nanosec = divmod(sample.stamp_ns, 1_000_000_000)
    return types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=sample.frame_id
    )


def _cloud_msg(store: Any, sample: Sample, columns: np.ndarray, names: Sequence[str]) -> Any:
    types = store.types
    columns = np.ascontiguousarray(columns, dtype="<f4")
    field = types["sensor_msgs/msg/PointField"]
    return types[_CLOUD](
        header=_header(store, sample),
        height=1,
        width=columns.shape[0],
        fields=[field(name=n, offset=4 * i, datatype=_FLOAT32, count=1) for i, n in enumerate(names)],
        is_bigendian=False,
        point_step=4 * len(names),
        row_step=4 * len(names) * columns.shape[0],
        data=columns.reshape(-1).view(np.uint8),
        is_dense=True,
    )


def _to_ros(store: Any, sample: Sample) -> tuple[str, Any] | None:
    """(ROS type, message) for one sample; None for what a bag has no use for (sets)."""
    types, arrays = store.types, sample.arrays
    if sample.modality == "camera" and "image" in arrays:
        image = np.ascontiguousarray(arrays["image"], np.uint8)
        height, width = image.shape[:2]
        msg = types[_IMAGE](
            header=_header(store, sample), height=height, width=width, encoding="rgb8",
            is_bigendian=0, step=width * 3, data=image.reshape(-1),
        )  # fmt: skip
        return _IMAGE, msg
    if sample.modality == "camera" and "jpeg" in arrays:
        return _COMPRESSED, types[_COMPRESSED](
            header=_header(store, sample), format="jpeg", data=np.asarray(arrays["jpeg"], np.uint8)
        )
    if sample.modality == "lidar":
        return _CLOUD, _cloud_msg(store, sample, arrays["points"], _LIDAR_FIELDS)
    if sample.modality == "radar":
        return _CLOUD, _cloud_msg(store, sample, arrays["detections"], _RADAR_FIELDS)
    if sample.modality == "audio":
        samples = arrays["samples"]
        if samples.dtype != np.int16:  # float32 in [-1, 1] -> S16LE, the common audio_common format
            samples = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
        audio = types[_AUDIO](data=np.ascontiguousarray(samples).reshape(-1).view(np.uint8))
        return _AUDIO_STAMPED, types[_AUDIO_STAMPED](header=_header(store, sample), audio=audio)
    if sample.modality == "result":
        payload = {
            "stamp_ns": sample.stamp_ns,
            "meta": sample.meta,
            **{name: array.tolist() for name, array in arrays.items()},
        }
        return _STRING, types[_STRING](data=json.dumps(payload, default=str))
    return None


def export_ros2(logs: Iterable[Path], bag: Path, *, storage: str = "sqlite3") -> dict[str, int]:
    """Write every log message a ROS 2 type exists for into a new rosbag2; return counts per topic."""
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}.get(storage)
    if plugin is None:
        raise Ros2Error(f"storage {storage!r}: choose sqlite3 or mcap")
    store = typestore()
    counts: dict[str, int] = {}
    skipped: dict[str, int] = {}
    logs = existing_logs(logs)
    try:
        writer = Writer(bag, version=8, storage_plugin=plugin)
    except WriterError as exc:
        raise Ros2Error(f"{bag}: {exc}") from exc
    connections: dict[tuple[str, str], Any] = {}
    with writer:
        for path in logs:
            for message in LogReader(path):
                sample = message.sample
                converted = _to_ros(store, sample)
                if converted is None:
                    skipped[sample.stream] = skipped.get(sample.stream, 0) + 1
                    continue
                msgtype, msg = converted
                topic = "/" + sample.stream
                key = (topic, msgtype)
                if key not in connections:
                    connections[key] = writer.add_connection(topic, msgtype, typestore=store)
                writer.write(connections[key], message.log_time_ns, store.serialize_cdr(msg, msgtype))
                counts[topic] = counts.get(topic, 0) + 1
    if skipped:
        log.info("not exported (no ROS 2 type): %s", skipped)
    return counts
