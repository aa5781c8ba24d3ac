"""ROS 2 messages to and from samples: the conversions of import-ros2 and export-ros2 (`logs.ros2`).

Import converts, per mapped topic:

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
                                                  (without a modality in its map, a cloud that has
                                                  velocity and rcs fields is radar; mapped ``:lidar``,
                                                  it loses them, which is warned)
audio_common_msgs/msg/AudioData,       audio      ``samples`` int16 [frames, channels] from S16LE bytes
AudioDataStamped                                  (float32 from F32LE); sample_rate, channels and sample
                                                  format from the topic's AudioInfo (``TOPIC_info``, as
                                                  audio_common publishes it), else ``--sample-rate``,
                                                  ``--channels`` and S16LE; options that contradict the
                                                  AudioInfo are refused
sensor_msgs/msg/Imu                    generic    ``values`` float32 [6]: linear_acceleration x, y, z (m/s²),
                                                  angular_velocity x, y, z (rad/s), the layout of
                                                  PROTOCOL.md section 5's IMU; the orientation is not
                                                  carried
std_msgs/msg/String                    result     a result that export-ros2 wrote (JSON, below)
=====================================  =========  =====================================================

Export writes the inverse: camera as Image rgb8 or CompressedImage, lidar and radar as PointCloud2, audio
as AudioDataStamped in its own format (int16 as S16LE, float32 as F32LE: exact) described by an AudioInfo,
a generic stream whose values are 6 numbers as Imu (no orientation: its covariance's first element -1, as
sensor_msgs/Imu asks; other generic streams have no ROS 2 type and are said as not exported), and results
as std_msgs/msg/String holding JSON ``{"format": "fusion-pipeline-result/1", "seq",
"stamp_ns", "frame_id", "meta", "arrays": {NAME: {"dtype", "shape", "data": [...]}}}``, exact for every
numeric dtype.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fusion_pipeline.extras import install_hint
from fusion_pipeline.logs.errors import Ros2Error
from fusion_pipeline.protocol import NS_PER_S
from fusion_pipeline.transport.wire import Sample

__all__ = [
    "AUDIO_COMMON_MSGS",
    "AUDIO_INFO",
    "INFO_SUFFIX",
    "MODALITIES",
    "RADAR_ONLY_FIELDS",
    "RESULT_FORMAT",
    "STRING",
    "AudioFormat",
    "audio_info",
    "from_ros",
    "imu_values",
    "losses",
    "odd_shape",
    "radar_fields",
    "result_from_ros",
    "sample_audio_format",
    "to_ros",
    "topic_audio_format",
    "require_rosbags",
    "typestore",
]

#: audio_common_msgs definitions (ros-drivers/audio_common), registered with the rosbags typestore.
AUDIO_COMMON_MSGS = {
    "audio_common_msgs/msg/AudioData": "uint8[] data\n",
    "audio_common_msgs/msg/AudioDataStamped": "std_msgs/Header header\naudio_common_msgs/AudioData audio\n",
    "audio_common_msgs/msg/AudioInfo": (
        "uint8 channels\nuint32 sample_rate\nstring sample_format\nuint32 bitrate\nstring coding_format\n"
    ),
}

_IMAGE = "sensor_msgs/msg/Image"
_COMPRESSED = "sensor_msgs/msg/CompressedImage"
_CLOUD = "sensor_msgs/msg/PointCloud2"
_AUDIO = "audio_common_msgs/msg/AudioData"
_AUDIO_STAMPED = "audio_common_msgs/msg/AudioDataStamped"
AUDIO_INFO = "audio_common_msgs/msg/AudioInfo"
_IMU = "sensor_msgs/msg/Imu"
STRING = "std_msgs/msg/String"
MODALITIES = {
    _IMAGE: "camera",
    _COMPRESSED: "camera",
    _CLOUD: "lidar",
    _AUDIO: "audio",
    _AUDIO_STAMPED: "audio",
    _IMU: "generic",
    STRING: "result",
}
#: The audio sample formats (GStreamer names, as audio_common uses them) and their wire dtypes.
_SAMPLE_FORMATS = {"S16LE": np.dtype("<i2"), "F32LE": np.dtype("<f4")}
#: An audio topic's AudioInfo is on the topic + this suffix (audio_common: ``audio`` and ``audio_info``).
INFO_SUFFIX = "_info"
#: What a result exported as std_msgs/String JSON says it is, so that the importer knows it.
RESULT_FORMAT = "fusion-pipeline-result/1"
_FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32
_LIDAR_FIELDS = ("x", "y", "z", "intensity")
_RADAR_FIELDS = ("x", "y", "z", "velocity", "rcs")


def require_rosbags() -> Any:
    """The rosbags package (its rosbag2 module imported), or a Ros2Error that says how to install it."""
    try:
        import rosbags.rosbag2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise Ros2Error(f"ROS 2 bag support needs the [ros] extra: {install_hint('ros')}") from exc
    return rosbags


def typestore() -> Any:
    """A rosbags typestore of ROS 2 Jazzy with the audio_common_msgs types registered."""
    require_rosbags()
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict[str, Any] = {}
    for name, text in AUDIO_COMMON_MSGS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


# -- ROS 2 to sample -----------------------------------------------------------------------------------


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * NS_PER_S + int(header.stamp.nanosec)


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


#: sensor_msgs/PointField datatypes, as numpy reads them (little-endian).
POINT_FIELD_TYPES = {1: "<i1", 2: "<u1", 3: "<i2", 4: "<u2", 5: "<i4", 6: "<u4", 7: "<f4", 8: "<f8"}


def _cloud(msg: Any, where: str, names: Sequence[str], optional: Sequence[str]) -> np.ndarray:
    """Columns `names` of a PointCloud2 as float32 [N, len(names)], from any numeric field type (a lidar's
    uint8 intensity, float64 coordinates); `optional` ones are 0 when absent."""
    if msg.is_bigendian:
        raise Ros2Error(f"{where}: big-endian PointCloud2 is not supported")
    fields = {f.name: f for f in msg.fields}
    for name in names:
        field = fields.get(name)
        if field is None:
            if name in optional:
                continue
            raise Ros2Error(f"{where}: PointCloud2 has no field {name!r} (fields: {sorted(fields)})")
        if field.datatype not in POINT_FIELD_TYPES or field.count != 1:
            raise Ros2Error(
                f"{where}: PointCloud2 field {name!r} must be one number (datatype 1 to 8, count 1), "
                f"not datatype {field.datatype} count {field.count}"
            )
        if field.offset + np.dtype(POINT_FIELD_TYPES[field.datatype]).itemsize > msg.point_step:
            raise Ros2Error(
                f"{where}: PointCloud2 field {name!r} at offset {field.offset} overruns point_step"
            )
    present = [n for n in names if n in fields]
    # A structured dtype with the cloud's own offsets and point_step reads any field order and padding.
    dtype = np.dtype(
        {
            "names": present,
            "formats": [POINT_FIELD_TYPES[fields[n].datatype] for n in present],
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


#: The fields of a radar PointCloud2 (as export-ros2 writes radar) that lidar has not: import drops them.
RADAR_ONLY_FIELDS = ("velocity", "rcs")


def radar_fields(msg: Any) -> list[str]:
    """Those of RADAR_ONLY_FIELDS that a PointCloud2 has."""
    names = {f.name for f in msg.fields}
    return [name for name in RADAR_ONLY_FIELDS if name in names]


@dataclass(frozen=True)
class AudioFormat:
    """How an audio topic's bytes are laid out: from its AudioInfo topic, else from the options."""

    sample_rate: int | None
    channels: int
    sample_format: str = "S16LE"


def _audio(msg: Any, where: str, audio: AudioFormat) -> np.ndarray:
    dtype = _SAMPLE_FORMATS[audio.sample_format]
    data = np.frombuffer(memoryview(msg.data), np.uint8)
    if data.size % (dtype.itemsize * audio.channels):
        raise Ros2Error(
            f"{where}: {data.size} audio bytes are not whole {audio.sample_format} frames of "
            f"{audio.channels} channel(s)"
        )
    return data.view(dtype).reshape(-1, audio.channels).copy()


def result_from_ros(msg: Any, where: str) -> tuple[dict[str, np.ndarray], dict[str, Any], int, str, int]:
    """(arrays, meta, stamp_ns, frame_id, seq) of a result that export-ros2 wrote as JSON."""
    try:
        payload = json.loads(msg.data)
        if payload.get("format") != RESULT_FORMAT:
            raise ValueError(f"format is {payload.get('format')!r}, expected {RESULT_FORMAT!r}")
        arrays = {
            name: np.array(a["data"], np.dtype(a["dtype"])).reshape(a["shape"])
            for name, a in payload["arrays"].items()
        }
        stamp_ns, seq = int(payload["stamp_ns"]), int(payload["seq"])
        return arrays, dict(payload["meta"]), stamp_ns, str(payload["frame_id"]), seq
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise Ros2Error(
            f"{where}: not a fusion-pipeline result as export-ros2 writes it ({type(exc).__name__}: {exc})"
        ) from exc


def from_ros(
    msgtype: str, msg: Any, modality: str, where: str, audio: AudioFormat
) -> tuple[dict[str, np.ndarray], dict[str, Any], int | None, str]:
    """(arrays, meta, stamp_ns or None for the bag time, frame_id) of one sensor message."""
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
        if audio.sample_rate is None:
            raise Ros2Error(
                f"{where}: audio needs --sample-rate (AudioData does not say, and the bag has no "
                f"{AUDIO_INFO} topic beside it)"
            )
        meta = {"sample_rate": audio.sample_rate}
        if msgtype == _AUDIO:
            return {"samples": _audio(msg, where, audio)}, meta, None, ""
        stamped = _stamp_ns(msg.header), msg.header.frame_id
        return {"samples": _audio(msg.audio, where, audio)}, meta, *stamped
    if msgtype == _IMU and modality == "generic":
        a, w = msg.linear_acceleration, msg.angular_velocity
        values = np.array([a.x, a.y, a.z, w.x, w.y, w.z], np.float32)
        return {"values": values}, {}, _stamp_ns(msg.header), msg.header.frame_id
    raise Ros2Error(
        f"{where}: type {msgtype} as {modality} is not supported "
        f"(supported: {', '.join(f'{t} as {m}' for t, m in MODALITIES.items())}, {_CLOUD} as radar)"
    )


def topic_audio_format(
    infos: Sequence[Any], topic: str, sample_rate: int | None, channels: int | None
) -> AudioFormat:
    """The format of audio `topic`: its AudioInfo messages, which must agree with each other and with
    the options given; without any, the options (S16LE)."""
    where = f"topic {topic}{INFO_SUFFIX} ({AUDIO_INFO})"
    found = {(int(m.sample_rate), int(m.channels), str(m.sample_format)) for m in infos}
    if not found:
        return AudioFormat(sample_rate, channels or 1)
    if len(found) > 1:
        raise Ros2Error(f"{where}: the audio format changes within the bag ({sorted(found)}); not supported")
    rate, count, sample_format = found.pop()
    if sample_format not in _SAMPLE_FORMATS:
        raise Ros2Error(
            f"{where}: sample format {sample_format!r} is not supported ({', '.join(_SAMPLE_FORMATS)})"
        )
    for option, given, bag in (("--sample-rate", sample_rate, rate), ("--channels", channels, count)):
        if given is not None and bag and given != bag:
            raise Ros2Error(f"{where}: says {option.strip('-')} {bag}, {option} says {given}")
    return AudioFormat(rate or sample_rate, count, sample_format)  # rate 0: the exporter did not know it


# -- sample to ROS 2 -----------------------------------------------------------------------------------


#: builtin_interfaces/Time.sec is an int32: ROS 2 time ends in January 2038.
_ROS_SEC = range(-(2**31), 2**31)


def _header(store: Any, sample: Sample) -> Any:
    types = store.types
    sec, nanosec = divmod(sample.stamp_ns, NS_PER_S)
    if sec not in _ROS_SEC:
        raise Ros2Error(
            f"stream {sample.stream} seq {sample.seq}: stamp {sample.stamp_ns} ns ({sec} s) does not fit "
            "a ROS 2 header (builtin_interfaces/Time.sec is int32, up to 2038-01-19)"
        )
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


#: The meta keys import-ros2 makes again for a sensor modality; any other key is not carried by the bag.
_REGENERATED_META = {"camera": {"encoding"}, "audio": {"sample_rate"}}


def sample_audio_format(sample: Sample) -> tuple[np.ndarray, AudioFormat]:
    """The samples as they go into the bag (int16 as S16LE, float32 as F32LE: both exact) and their format."""
    samples = sample.arrays["samples"]
    sample_format = "S16LE" if samples.dtype == np.int16 else "F32LE"
    samples = np.ascontiguousarray(samples, _SAMPLE_FORMATS[sample_format])
    rate = sample.meta.get("sample_rate")
    channels = samples.shape[1] if samples.ndim == 2 else 1
    return samples, AudioFormat(None if rate is None else int(rate), channels, sample_format)


def audio_info(store: Any, audio: AudioFormat) -> Any:
    rate = audio.sample_rate or 0  # 0: the log did not say; import-ros2 then needs --sample-rate
    bits = 8 * _SAMPLE_FORMATS[audio.sample_format].itemsize
    return store.types[AUDIO_INFO](
        channels=audio.channels,
        sample_rate=rate,
        sample_format=audio.sample_format,
        bitrate=rate * audio.channels * bits,
        coding_format="wave",
    )


def _result_json(sample: Sample) -> str:
    """A result as the JSON that import-ros2 reads back: arrays with dtype and shape, so they come back
    exactly (a float32 value survives JSON's double)."""
    payload = {
        "format": RESULT_FORMAT,
        "seq": sample.seq,
        "stamp_ns": sample.stamp_ns,
        "frame_id": sample.frame_id,
        "meta": sample.meta,
        "arrays": {
            name: {"dtype": array.dtype.str, "shape": list(array.shape), "data": array.reshape(-1).tolist()}
            for name, array in sample.arrays.items()
        },
    }
    return json.dumps(payload, default=str)


#: A sensor modality's array, its shape (None: any size) and how PROTOCOL.md section 5 writes it.
_SHAPES = {
    "camera": ("image", (None, None, 3), "[H, W, 3]"),
    "lidar": ("points", (None, 4), "[N, 4]"),
    "radar": ("detections", (None, 5), "[M, 5]"),
}


def odd_shape(sample: Sample) -> str | None:
    """Why a sensor sample cannot be exported: its array is missing or not of the shape of PROTOCOL.md
    section 5, which both exports (ROS 2, Foxglove) declare it as; None when it can. The exports skip such
    a message and say per topic how many they skipped and why."""
    if sample.modality not in _SHAPES:
        return None
    name, shape, described = _SHAPES[sample.modality]
    array = sample.arrays.get(name)
    if array is None:
        return None if sample.modality == "camera" else f"no array {name!r}"  # a camera may send jpeg
    fits = array.ndim == len(shape) and all(
        want is None or got == want for got, want in zip(array.shape, shape, strict=True)
    )
    return None if fits else f"{name} of shape {list(array.shape)}, not {described}"


def losses(sample: Sample, seq: int) -> list[str]:
    """What import-ros2 will not get back of a sensor sample, `seq` being the seq it will give it."""
    lost = sorted(set(sample.meta) - _REGENERATED_META.get(sample.modality, set()))
    notes = [f"meta {lost} not carried"] if lost else []
    if sample.seq != seq:
        notes.append("seq not carried (import numbers a stream's messages from 0)")
    for name, array in sample.arrays.items():
        if sample.modality in ("lidar", "radar", "generic") and array.dtype != np.float32:
            notes.append(f"{name} {array.dtype} converted to float32")
        if sample.modality == "camera" and array.dtype != np.uint8:
            notes.append(f"{name} {array.dtype} converted to uint8")
    return notes


def to_ros(store: Any, sample: Sample) -> tuple[str, Any] | None:
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
        samples, _ = sample_audio_format(sample)
        audio = types[_AUDIO](data=samples.reshape(-1).view(np.uint8))
        return _AUDIO_STAMPED, types[_AUDIO_STAMPED](header=_header(store, sample), audio=audio)
    if sample.modality == "generic" and (values := imu_values(sample)) is not None:
        ax, ay, az, gx, gy, gz = (float(v) for v in values)
        vector, unknown = types["geometry_msgs/msg/Vector3"], np.zeros(9)
        return _IMU, types[_IMU](
            header=_header(store, sample),
            orientation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
            orientation_covariance=np.array([-1.0, *[0.0] * 8]),  # -1: no orientation estimate
            angular_velocity=vector(x=gx, y=gy, z=gz),
            angular_velocity_covariance=unknown,
            linear_acceleration=vector(x=ax, y=ay, z=az),
            linear_acceleration_covariance=unknown,
        )
    if sample.modality == "result":
        return STRING, types[STRING](data=_result_json(sample))
    return None


def imu_values(sample: Sample) -> np.ndarray | None:
    """A generic sample's values when they are an IMU's (6 floats, shape [6]: PROTOCOL.md section 5), else
    None: another shape would not come back as it was, and 6 bytes are more likely a CAN payload."""
    values = sample.arrays.get("values")
    return values if values is not None and values.shape == (6,) and values.dtype.kind == "f" else None
