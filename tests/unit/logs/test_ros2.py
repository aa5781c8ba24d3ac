"""ROS 2 interop: real bags written with rosbags (sqlite3 and mcap storage) import exactly; export too."""

import base64
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from samples import same_sample

from fusion_pipeline.logs import (
    LogError,
    LogReader,
    LogWriter,
    Ros2Error,
    TopicMap,
    export_foxglove,
    export_ros2,
    import_ros2,
    parse_map,
    ros2_messages,
    typestore,
)
from fusion_pipeline.transport import Sample

STORE = typestore()
T = STORE.types
T0 = 1_700_000_000_000_000_000


def _header(stamp_ns: int, frame_id: str):
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id
    )


def _image(stamp: int, rgb: np.ndarray, encoding: str, pad: int = 0):
    h, w = rgb.shape[:2]
    pixels = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "mono8": rgb[:, :, :1]}[encoding]
    step = w * pixels.shape[2] + pad
    rows = np.zeros((h, step), np.uint8)
    rows[:, : w * pixels.shape[2]] = pixels.reshape(h, -1)
    return T["sensor_msgs/msg/Image"](
        header=_header(stamp, "cam"),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=rows.reshape(-1),
    )


def _cloud(stamp: int, points: np.ndarray, order: tuple[str, ...], point_step: int):
    """x, y, z, intensity columns of `points` laid out in field `order`, padded to point_step bytes."""
    field = T["sensor_msgs/msg/PointField"]
    n = len(points)
    data = np.zeros((n, point_step), np.uint8)
    columns = dict(zip(("x", "y", "z", "intensity"), points.T, strict=False))
    fields = []
    for i, name in enumerate(order):
        offset = 4 * i + (4 if i >= 2 else 0)  # a gap after the second field
        data[:, offset : offset + 4] = columns[name].astype("<f4").reshape(n, 1).view(np.uint8)
        fields.append(field(name=name, offset=offset, datatype=7, count=1))
    return T["sensor_msgs/msg/PointCloud2"](
        header=_header(stamp, "lidar_top"),
        height=1,
        width=n,
        fields=fields,
        is_bigendian=False,
        point_step=point_step,
        row_step=point_step * n,
        data=data.reshape(-1),
        is_dense=True,
    )


def _write_bag(path: Path, plugin: StoragePlugin, messages: list[tuple[str, str, int, object]]) -> None:
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        connections = {}
        for topic, msgtype, bag_ns, msg in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=STORE)
            writer.write(connections[topic], bag_ns, STORE.serialize_cdr(msg, msgtype))


def _jpeg(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(rgb).save(out, format="JPEG")
    return out.getvalue()


@pytest.mark.parametrize("plugin", [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_import_every_supported_type_exactly(tmp_path: Path, plugin: StoragePlugin) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)
    points = rng.normal(size=(7, 4)).astype(np.float32)
    pcm = rng.integers(-30000, 30000, (160, 2), dtype=np.int16)
    jpeg = _jpeg(rgb)
    audio = T["audio_common_msgs/msg/AudioData"](data=pcm.reshape(-1).view(np.uint8))
    messages = [
        ("/cam/rgb", "sensor_msgs/msg/Image", T0 + 5, _image(T0 + 1, rgb, "rgb8", pad=3)),
        ("/cam/bgr", "sensor_msgs/msg/Image", T0 + 6, _image(T0 + 2, rgb, "bgr8")),
        ("/cam/mono", "sensor_msgs/msg/Image", T0 + 7, _image(T0 + 3, rgb, "mono8", pad=1)),
        (
            "/cam/jpeg",
            "sensor_msgs/msg/CompressedImage",
            T0 + 8,
            T["sensor_msgs/msg/CompressedImage"](
                header=_header(T0 + 4, "cam"), format="jpeg", data=np.frombuffer(jpeg, np.uint8)
            ),
        ),
        (
            "/lidar",
            "sensor_msgs/msg/PointCloud2",
            T0 + 9,
            _cloud(T0 + 5, points, ("intensity", "z", "x", "y"), 24),
        ),
        ("/lidar_xyz", "sensor_msgs/msg/PointCloud2", T0 + 10, _cloud(T0 + 6, points, ("y", "x", "z"), 16)),
        (
            "/mic",
            "audio_common_msgs/msg/AudioDataStamped",
            T0 + 11,
            T["audio_common_msgs/msg/AudioDataStamped"](header=_header(T0 + 7, "mic"), audio=audio),
        ),
        ("/mic_raw", "audio_common_msgs/msg/AudioData", T0 + 12, audio),
        ("/chatter", "std_msgs/msg/String", T0 + 13, T["std_msgs/msg/String"](data="not mapped, skipped")),
    ]
    bag = tmp_path / "bag"
    _write_bag(bag, plugin, messages)
    maps = parse_map([
        "/cam/rgb=camera/rgb", "/cam/bgr=camera/bgr", "/cam/mono=camera/mono", "/cam/jpeg=camera/jpeg:camera",
        "/lidar=lidar/a", "/lidar_xyz=lidar/b", "/mic=audio/a", "/mic_raw=audio/b",
    ])  # fmt: skip
    counts = import_ros2(bag, tmp_path / "log.mcap", maps, sample_rate=16000, channels=2)
    assert counts == dict.fromkeys([m.stream for m in maps], 1)
    got = {m.sample.stream: m for m in LogReader(tmp_path / "log.mcap")}
    assert np.array_equal(got["camera/rgb"].sample.arrays["image"], rgb)
    assert np.array_equal(got["camera/bgr"].sample.arrays["image"], rgb)
    assert np.array_equal(got["camera/mono"].sample.arrays["image"], np.repeat(rgb[:, :, :1], 3, axis=2))
    assert got["camera/jpeg"].sample.arrays["jpeg"].tobytes() == jpeg
    assert got["camera/jpeg"].sample.meta == {"encoding": "jpeg"}
    assert np.array_equal(got["lidar/a"].sample.arrays["points"], points)
    xyz0 = np.concatenate([points[:, :3], np.zeros((7, 1), np.float32)], axis=1)
    assert np.array_equal(got["lidar/b"].sample.arrays["points"], xyz0)  # no intensity field: 0
    assert np.array_equal(got["audio/a"].sample.arrays["samples"], pcm)
    assert got["audio/a"].sample.meta == {"sample_rate": 16000}
    # Header stamps become stamp_ns, the bag time log_time; unstamped audio takes the bag time.
    assert (got["camera/rgb"].sample.stamp_ns, got["camera/rgb"].log_time_ns) == (T0 + 1, T0 + 5)
    assert got["audio/a"].sample.stamp_ns == T0 + 7 and got["audio/b"].sample.stamp_ns == T0 + 12
    assert got["lidar/a"].sample.frame_id == "lidar_top"


def test_unsupported_types_and_encodings_name_topic_and_type(tmp_path: Path) -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    bad_image = _image(T0, rgb, "rgb8")
    bad_image.encoding = "rgba8"
    messages = [
        ("/chatter", "std_msgs/msg/String", T0, T["std_msgs/msg/String"](data="hello")),
        ("/cam", "sensor_msgs/msg/Image", T0, bad_image),
        (
            "/png",
            "sensor_msgs/msg/CompressedImage",
            T0,
            T["sensor_msgs/msg/CompressedImage"](
                header=_header(T0, "c"), format="png", data=np.zeros(4, np.uint8)
            ),
        ),
        (
            "/cloud",
            "sensor_msgs/msg/PointCloud2",
            T0,
            _cloud(T0, np.zeros((2, 4), np.float32), ("x", "y"), 8),
        ),
    ]
    bag = tmp_path / "bag"
    _write_bag(bag, StoragePlugin.SQLITE3, messages)
    cases = {
        "/chatter": r"topic /chatter \(std_msgs/msg/String\): not a fusion-pipeline result as export-ros2",
        "/cam": r"topic /cam \(sensor_msgs/msg/Image\): Image encoding 'rgba8' is not supported",
        "/png": r"topic /png \(sensor_msgs/msg/CompressedImage\): CompressedImage format 'png'",
        "/cloud": r"topic /cloud \(sensor_msgs/msg/PointCloud2\): PointCloud2 has no field 'z'",
    }
    for topic, message in cases.items():
        with pytest.raises(Ros2Error, match=message):
            import_ros2(bag, tmp_path / "out.mcap", [TopicMap(topic, "x/y")])
    with pytest.raises(Ros2Error, match=r"no topic \['/nope'\]"):
        import_ros2(bag, tmp_path / "out.mcap", [TopicMap("/nope", "x/y")])
    with pytest.raises(Ros2Error, match="expected TOPIC=STREAM"):
        parse_map(["/no-stream"])
    # A stream name PROTOCOL section 6 forbids was written into the log as it came.
    for name in ("cam front!", "x" * 129, "/camera"):
        with pytest.raises(Ros2Error, match=r"stream name .* is not 1 to 128 characters of A-Z"):
            parse_map([f"/cam={name}"])


def test_a_cloud_of_other_numeric_fields_imports_as_float32(tmp_path: Path) -> None:
    """float64 coordinates and a uint8 intensity (common on lidars) refused the whole import."""
    points = np.array([[1.5, -2.25, 0.5, 7], [3.0, 4.0, -1.0, 255]])
    layout = np.dtype({"names": ["x", "y", "z", "intensity"], "formats": ["<f8", "<f8", "<f8", "u1"],
                       "offsets": [0, 8, 16, 24], "itemsize": 32})  # fmt: skip
    data = np.zeros(len(points), layout)
    for i, name in enumerate(layout.names):
        data[name] = points[:, i]
    field = T["sensor_msgs/msg/PointField"]
    cloud = T["sensor_msgs/msg/PointCloud2"](
        header=_header(T0, "lidar_top"), height=1, width=len(points),
        fields=[field(name=n, offset=o, datatype=t, count=1) for n, o, t in
                (("x", 0, 8), ("y", 8, 8), ("z", 16, 8), ("intensity", 24, 2))],
        is_bigendian=False, point_step=32, row_step=32 * len(points),
        data=np.frombuffer(data.tobytes(), np.uint8), is_dense=True,
    )  # fmt: skip
    bag = tmp_path / "bag"
    _write_bag(bag, StoragePlugin.SQLITE3, [("/points", "sensor_msgs/msg/PointCloud2", T0, cloud)])
    out = tmp_path / "cloud.mcap"
    import_ros2(bag, out, [TopicMap("/points", "lidar/top")])
    (message,) = LogReader(out)
    np.testing.assert_array_equal(message.sample.arrays["points"], points.astype(np.float32))


def test_a_mapped_topic_without_messages_is_said_and_a_bag_of_none_imports_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A mapped topic the bag declares but holds no message of gave no word (the log simply lacked its
    stream), and when no mapped topic held any, an empty log was written with exit 0."""
    bag = tmp_path / "bag"
    with Writer(bag, version=8, storage_plugin=StoragePlugin.SQLITE3) as writer:
        cam = writer.add_connection("/cam", "sensor_msgs/msg/Image", typestore=STORE)
        writer.add_connection("/cam2", "sensor_msgs/msg/Image", typestore=STORE)
        image = _image(T0, np.zeros((2, 2, 3), np.uint8), "rgb8")
        writer.write(cam, T0, STORE.serialize_cdr(image, "sensor_msgs/msg/Image"))
    out = tmp_path / "some.mcap"
    maps = [TopicMap("/cam", "camera/front"), TopicMap("/cam2", "camera/back")]
    assert import_ros2(bag, out, maps) == {"camera/front": 1}
    assert f"{out}: topic /cam2 holds no message: the log has no camera/back" in caplog.text
    none = tmp_path / "none.mcap"
    with pytest.raises(Ros2Error, match=r"the topics mapped \(/cam2\) hold no message"):
        import_ros2(bag, none, [TopicMap("/cam2", "camera/back")])
    assert not none.exists()


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_export_then_import_round_trips(
    tmp_path: Path, storage: str, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(1)
    samples = [
        Sample(
            "camera/front",
            "camera",
            0,
            T0,
            {"image": rng.integers(0, 255, (4, 6, 3), dtype=np.uint8)},
            "cam",
            {"encoding": "rgb8"},
        ),
        Sample(
            "lidar/top",
            "lidar",
            0,
            T0 + 1,
            {"points": rng.normal(size=(9, 4)).astype(np.float32)},
            "lidar_top",
        ),
        Sample(
            "radar/front",
            "radar",
            0,
            T0 + 2,
            {"detections": rng.normal(size=(3, 5)).astype(np.float32)},
            "radar_front",
        ),
        Sample(
            "audio/roof",
            "audio",
            0,
            T0 + 3,
            {"samples": rng.integers(-9, 9, (320, 1), dtype=np.int16)},
            "mic",
            {"sample_rate": 16000},
        ),
        Sample("imu", "generic", 0, T0 + 4, {"values": rng.normal(size=6).astype(np.float32)}, "imu_link"),
        Sample(
            "result/fused",
            "result",
            0,
            T0,
            {"class_probs": np.full(5, 0.2, np.float32)},
            "",
            {"classes": ["a"]},
        ),
        Sample("set/fused", "set", 0, T0, {}, ""),
        # A generic stream that is no IMU (CAN frames) has no ROS 2 type: said, not exported.
        Sample("can", "generic", 0, T0, {"values": np.zeros((4, 8), np.uint8)}, ""),
        # Nor does 6 values of another shape (they would not come back as they were), nor 6 bytes.
        Sample("rows", "generic", 0, T0, {"values": np.zeros((1, 6), np.float32)}, ""),
        Sample("bytes", "generic", 0, T0, {"values": np.zeros(6, np.uint8)}, ""),
    ]
    exported = samples[:6]
    # A recorder's channel metadata (the config's rate and offset): said, as it does not come back.
    recorded = {"lidar/top": {"rate_hz": "10", "offset_ms": "0"}}
    with LogWriter(tmp_path / "log.mcap", streams=recorded) as writer:
        for i, sample in enumerate(samples):
            writer.write(sample, T0 + 100 + i)
        writer.close({"written": len(samples)})  # as the recorder closes its log, with its report
    bag = tmp_path / "bag"
    counts = export_ros2([tmp_path / "log.mcap"], bag, storage=storage)
    assert counts == {f"/{s.stream}": 1 for s in exported}  # sets have no ROS 2 type
    assert "/lidar/top: channel metadata ['offset_ms', 'rate_hz'] not carried" in caplog.text
    assert (
        "the recorder's report (fusion_pipeline.report metadata, its counters) is not carried" in caplog.text
    )
    assert caplog.text.count("channel metadata") == 1  # the other streams have none but LogWriter's
    assert "not exported (no ROS 2 type" in caplog.text
    assert all(f"'{name}': 1" in caplog.text for name in ("can", "rows", "bytes"))
    with Reader(bag) as reader:
        assert reader.message_count == 7  # and the audio topic's AudioInfo
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types["/result/fused"] == "std_msgs/msg/String"
        assert types["/imu"] == "sensor_msgs/msg/Imu"
        assert types["/audio/roof_info"] == "audio_common_msgs/msg/AudioInfo"
        for connection, _, raw in reader.messages():
            msg = STORE.deserialize_cdr(raw, connection.msgtype)
            if connection.topic == "/result/fused":
                result = json.loads(msg.data)
                assert result["format"] == "fusion-pipeline-result/1" and result["meta"] == {"classes": ["a"]}
                assert result["arrays"]["class_probs"]["dtype"] == "<f4"
            if connection.topic == "/audio/roof_info":
                assert (msg.sample_rate, msg.channels, msg.sample_format) == (16000, 1, "S16LE")
    maps = parse_map(
        [
            "/camera/front=camera/front",
            "/lidar/top=lidar/top",
            "/radar/front=radar/front:radar",
            "/audio/roof=audio/roof",
            "/result/fused=result/fused",
            "/imu=imu",
        ]
    )
    caplog.clear()
    with caplog.at_level(logging.INFO):
        import_ros2(bag, tmp_path / "back.mcap", maps)  # no --sample-rate: the bag says it
    assert "topics not mapped" not in caplog.text  # the audio's AudioInfo is read with it
    with caplog.at_level(logging.INFO):
        import_ros2(bag, tmp_path / "lidar.mcap", [TopicMap("/lidar/top", "lidar/top")])
    assert (
        "topics not mapped, not imported: /audio/roof, /audio/roof_info, /camera/front, /imu, "
        "/radar/front, /result/fused"
    ) in caplog.text
    back = {m.sample.stream: m.sample for m in LogReader(tmp_path / "back.mcap")}
    assert set(back) == {s.stream for s in exported}
    for sample in exported:
        assert same_sample(back[sample.stream], sample)


def test_export_of_a_missing_log_leaves_no_bag_behind(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="nope.mcap: no such log file"):
        export_ros2([tmp_path / "nope.mcap"], tmp_path / "bag")
    assert not (tmp_path / "bag").exists()  # so the retry is not refused as "exists already"


def test_a_damaged_bag_is_a_ros2_error_and_leaves_no_log(tmp_path: Path) -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    for plugin in (StoragePlugin.SQLITE3, StoragePlugin.MCAP):
        bag = tmp_path / f"bag-{plugin.name}"
        _write_bag(
            bag,
            plugin,
            [("/cam", "sensor_msgs/msg/Image", T0 + i, _image(T0 + i, rgb, "rgb8")) for i in range(50)],
        )
        (storage,) = [p for p in bag.iterdir() if p.suffix in (".db3", ".mcap")]
        data = bytearray(storage.read_bytes())
        at = data.rfind(b"cam\x00") + 4 + 8  # past the frame_id, height and width: the encoding's length
        data[at : at + 4] = (2**31).to_bytes(4, "little")
        storage.write_bytes(data)
        out = tmp_path / f"{plugin.name}.mcap"
        with pytest.raises(Ros2Error, match=r"topic /cam \(sensor_msgs/msg/Image\): message does not decode"):
            import_ros2(bag, out, [TopicMap("/cam", "camera/front")])
        assert not out.exists()


@pytest.mark.parametrize(
    ("plugin", "damage", "hint"),
    [
        (StoragePlugin.MCAP, "cut", "`mcap recover FILE -o NEW.mcap`"),
        (StoragePlugin.SQLITE3, "cut", "`sqlite3 FILE .recover | sqlite3 NEW.db3`"),
        (StoragePlugin.MCAP, "no metadata", "the directory has no metadata.yaml: give its .mcap or .db3"),
    ],
)
def test_a_bag_that_cannot_be_opened_says_what_gets_it_read(
    tmp_path: Path, plugin: StoragePlugin, damage: str, hint: str
) -> None:
    """A bag cut short by a crash, or a directory without its metadata.yaml, said only what the storage
    raised ("File end magic is invalid", "database disk image is malformed")."""
    rgb = np.zeros((4, 4, 3), np.uint8)
    bag = tmp_path / "bag"
    _write_bag(
        bag,
        plugin,
        [("/cam", "sensor_msgs/msg/Image", T0 + i, _image(T0 + i, rgb, "rgb8")) for i in range(50)],
    )
    (storage,) = [p for p in bag.iterdir() if p.suffix in (".db3", ".mcap")]
    if damage == "cut":
        storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    else:
        (bag / "metadata.yaml").unlink()
    with pytest.raises(Ros2Error) as info:
        import_ros2(bag, tmp_path / "out.mcap", [TopicMap("/cam", "camera/front")])
    assert hint in str(info.value)


def test_a_fusion_pipeline_log_given_as_a_bag_is_said_as_such(tmp_path: Path) -> None:
    """It was told to `mcap recover` a file that is not damaged: a log of this project, not a bag."""
    log = tmp_path / "drive.mcap"
    with LogWriter(log) as out:
        out.write(Sample("radar/front", "radar", 0, T0, {"detections": np.ones((1, 5), np.float32)}), T0)
    with pytest.raises(Ros2Error) as info:
        import_ros2(log, tmp_path / "out.mcap", [TopicMap("/cam", "camera/front")])
    assert "it is a fusion-pipeline log (fusion-pipeline-log/1), not a ROS 2 bag" in str(info.value)
    assert "recover" not in str(info.value)


def test_maps_that_would_drop_or_mix_topics_and_unused_audio_options_are_refused(tmp_path: Path) -> None:
    cloud = _cloud(T0, np.zeros((2, 4), np.float32), ("x", "y", "z", "intensity"), 20)
    image = _image(T0, np.zeros((2, 2, 3), np.uint8), "rgb8")
    bag = tmp_path / "bag"
    messages = [
        ("/cam", "sensor_msgs/msg/Image", T0, image),
        ("/lidar", "sensor_msgs/msg/PointCloud2", T0, cloud),
    ]
    _write_bag(bag, StoragePlugin.SQLITE3, messages)
    out = tmp_path / "out.mcap"
    cases = {
        "--map /cam=cam/a and --map /cam=cam/b: topic /cam mapped twice": (["/cam=cam/a", "/cam=cam/b"], {}),
        "--map /cam=x/y and --map /lidar=x/y: two topics into": (["/cam=x/y", "/lidar=x/y"], {}),
        r"--sample-rate 16000: no mapped topic is audio \(/cam is camera": (
            ["/cam=c/f"],
            {"sample_rate": 16000},
        ),
        "--channels 2: no mapped topic is audio": (["/cam=c/f"], {"channels": 2}),
    }
    for message, (maps, options) in cases.items():
        with pytest.raises(Ros2Error, match=message):
            import_ros2(bag, out, parse_map(maps), **options)
        assert not out.exists()
    # The same map given twice is one map.
    assert import_ros2(bag, out, parse_map(["/cam=camera/front", "/cam=camera/front"])) == {"camera/front": 1}


def _radar_log(path: Path, stamps_ns: list[int]) -> Path:
    with LogWriter(path) as writer:
        for seq, stamp in enumerate(stamps_ns):
            arrays = {"detections": np.ones((2, 5), np.float32)}
            writer.write(Sample("radar/front", "radar", seq, stamp, arrays, "radar_front"), T0 + seq)
    return path


@pytest.mark.parametrize("appears", ["file", "directory"])
def test_export_takes_the_bag_name_only_when_whole_and_never_over_what_appeared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, appears: str
) -> None:
    """The bag is built in a hidden .NAME.* directory beside it: until it is whole, nothing is under its
    name (so a SIGKILL leaves only that directory), and what took the name meanwhile is kept."""
    import fusion_pipeline.logs.ros2 as ros2

    log = _radar_log(tmp_path / "log.mcap", [T0, T0 + 1])
    bag = tmp_path / "bag"
    seen: list[list[str]] = []

    def to_ros(store, sample):
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        if sample.seq == 1:  # someone takes the name while the export runs
            if appears == "file":
                bag.write_text("kept\n")
            else:
                (bag / "mine").mkdir(parents=True)
        return ros2_messages.to_ros(store, sample)

    monkeypatch.setattr(ros2, "to_ros", to_ros)
    with pytest.raises(Ros2Error, match=f"{bag} appeared during the export, not overwriting it"):
        export_ros2([log], bag)
    staging, *rest = seen[0]
    assert staging.startswith(".bag.") and rest == ["log.mcap"]  # no "bag" until the bag is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "log.mcap"]  # the staging dir is gone
    assert bag.read_text() == "kept\n" if appears == "file" else [p.name for p in bag.iterdir()] == ["mine"]


def test_export_refuses_a_stamp_past_ros2_time_naming_stream_and_stamp(tmp_path: Path) -> None:
    # builtin_interfaces/Time.sec is int32; before, struct.error escaped from the CDR serializer.
    late = 2**31 * 1_000_000_000
    log = _radar_log(tmp_path / "log.mcap", [T0, late])
    with pytest.raises(Ros2Error, match=f"stream radar/front seq 1: stamp {late} ns \\(2147483648 s\\)"):
        export_ros2([log], tmp_path / "bag")
    assert [p.name for p in tmp_path.iterdir()] == ["log.mcap"]


@pytest.mark.parametrize("export", [export_ros2, export_foxglove])
def test_exports_skip_arrays_not_of_their_standard_shape_and_say_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, export
) -> None:
    """Written as rgb8 or as x, y, z, intensity fields, these arrays would give messages whose byte count
    does not match their header; they are skipped and counted per topic instead."""
    log = tmp_path / "log.mcap"
    ok = {"camera": np.zeros((2, 3, 3), np.uint8), "lidar": np.zeros((4, 4), np.float32)}
    odd = [np.zeros((2, 3), np.uint8), np.zeros((2, 3, 4), np.uint8), np.zeros((4, 3), np.float32)]
    with LogWriter(log) as writer:
        for seq, array in enumerate([ok["camera"], *odd[:2], odd[1], ok["lidar"], odd[2]]):
            modality, name = ("camera", "image") if array.dtype == np.uint8 else ("lidar", "points")
            writer.write(Sample(f"{modality}/x", modality, seq, T0, {name: array}, "f"), T0 + seq)
    out = tmp_path / "out"
    assert export([log], out) == {"/camera/x": 1, "/lidar/x": 1}
    for topic, note in (
        ("/camera/x", "1 messages skipped: image of shape [2, 3], not [H, W, 3]"),
        ("/camera/x", "2 messages skipped: image of shape [2, 3, 4], not [H, W, 3]"),
        ("/lidar/x", "1 messages skipped: points of shape [4, 3], not [N, 4]"),
    ):
        assert any(f"{out}: {topic}: " in line and note in line for line in caplog.messages), (topic, note)


def test_a_cloud_with_velocity_and_rcs_imports_as_radar_unless_mapped_lidar(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """export-ros2 writes radar as PointCloud2 with velocity and rcs: mapped without a modality it comes
    back as radar (before: as lidar, velocity and rcs silently dropped); mapped :lidar, the loss is said."""
    log = _radar_log(tmp_path / "log.mcap", [T0, T0 + 1])
    export_ros2([log], tmp_path / "bag")
    import_ros2(tmp_path / "bag", tmp_path / "radar.mcap", parse_map(["/radar/front=radar/front"]))
    back = [m.sample for m in LogReader(tmp_path / "radar.mcap")]
    assert [s.modality for s in back] == ["radar", "radar"]
    assert all(np.array_equal(s.arrays["detections"], np.ones((2, 5), np.float32)) for s in back)
    assert "dropped" not in caplog.text
    import_ros2(tmp_path / "bag", tmp_path / "lidar.mcap", parse_map(["/radar/front=lidar/x:lidar"]))
    assert {m.sample.modality for m in LogReader(tmp_path / "lidar.mcap")} == {"lidar"}
    assert caplog.messages == [
        "topic /radar/front (sensor_msgs/msg/PointCloud2): PointCloud2 fields velocity, rcs dropped: "
        "imported as lidar (x, y, z, intensity); --map /radar/front=lidar/x:radar keeps them"
    ]


def test_zero_header_stamps_are_kept_and_counted_per_topic(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    bag = tmp_path / "bag"
    stamps = [0, 0, T0 + 2]
    images = [("/cam", "sensor_msgs/msg/Image", T0 + i, _image(s, rgb, "rgb8")) for i, s in enumerate(stamps)]
    _write_bag(bag, StoragePlugin.SQLITE3, images)
    out = tmp_path / "out.mcap"
    assert import_ros2(bag, out, [TopicMap("/cam", "camera/front")]) == {"camera/front": 3}
    assert [m.sample.stamp_ns for m in LogReader(out)] == stamps  # kept, as the docs say
    assert caplog.messages == [
        f"{out}: topic /cam: 2 of 3 messages have a zero header stamp, kept as their stamp_ns (their log "
        "time is the bag's time)"
    ]


def test_export_foxglove_writes_a_non_uint8_image_as_rgb8_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Written as rgb8 with its float32 bytes, the image's data was 4x what its header said."""
    from mcap.reader import make_reader

    log = tmp_path / "log.mcap"
    with LogWriter(log) as writer:
        image = np.full((2, 3, 3), 200.0, np.float32)
        writer.write(Sample("camera/x", "camera", 0, T0, {"image": image}, "f"), T0)
    out = tmp_path / "fox.mcap"
    assert export_foxglove([log], out) == {"/camera/x": 1}
    with out.open("rb") as f:
        (message,) = (json.loads(m.data) for _, _, m in make_reader(f).iter_messages())
    assert len(base64.b64decode(message["data"])) == 2 * 3 * 3 == message["step"] * message["height"]
    assert any("/camera/x: 1 messages: image float32 converted to uint8 (rgb8)" in m for m in caplog.messages)
