"""A ROS 2 bag of the simulated sensors (Image, CompressedImage, PointCloud2) imports and replays through
the real pipeline into results."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from paths import ROOT
from PIL import Image as PILImage
from rosbags.rosbag2 import StoragePlugin, Writer

from fusion_pipeline.contract import default_contract
from fusion_pipeline.logs import LogReader, typestore
from fusion_pipeline.sim import World

STORE = typestore()
T = STORE.types
T0 = 1_700_000_000_000_000_000
CLASSES = next(o.classes for o in default_contract().outputs if o.kind == "class_logits")


def _header(stamp_ns: int, frame_id: str):
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id
    )


def _cloud(stamp: int, frame_id: str, columns: np.ndarray, names: tuple[str, ...]):
    field = T["sensor_msgs/msg/PointField"]
    n, k = columns.shape
    return T["sensor_msgs/msg/PointCloud2"](
        header=_header(stamp, frame_id), height=1, width=n,
        fields=[field(name=name, offset=4 * i, datatype=7, count=1) for i, name in enumerate(names)],
        is_bigendian=False, point_step=4 * k, row_step=4 * k * n,
        data=np.ascontiguousarray(columns, "<f4").reshape(-1).view(np.uint8), is_dense=True,
    )  # fmt: skip


def _sim_bag(path: Path, duration_s: float) -> np.ndarray:
    """Camera (raw and JPEG), lidar and radar of the simulated world; returns the first raw image."""
    world = World(0)
    first = None
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        topics = {
            "/camera/image_raw": "sensor_msgs/msg/Image",
            "/camera/compressed": "sensor_msgs/msg/CompressedImage",
            "/lidar/points": "sensor_msgs/msg/PointCloud2",
            "/radar/points": "sensor_msgs/msg/PointCloud2",
        }
        connections = {t: writer.add_connection(t, m, typestore=STORE) for t, m in topics.items()}

        def write(topic: str, stamp: int, msg: object) -> None:
            writer.write(connections[topic], stamp, STORE.serialize_cdr(msg, topics[topic]))

        for tick in range(round(duration_s * 60)):  # a 60 Hz grid holds the 30, 20 and 10 Hz sensors
            stamp = T0 + tick * 1_000_000_000 // 60
            if tick % 2 == 0:
                rgb = world.camera(stamp)
                first = rgb if first is None else first
                h, w = rgb.shape[:2]
                raw = T["sensor_msgs/msg/Image"](
                    header=_header(stamp, "camera_front"), height=h, width=w, encoding="rgb8",
                    is_bigendian=0, step=3 * w, data=rgb.reshape(-1),
                )  # fmt: skip
                write("/camera/image_raw", stamp, raw)
                jpeg = io.BytesIO()
                PILImage.fromarray(rgb).save(jpeg, format="JPEG", quality=90)
                data = np.frombuffer(jpeg.getvalue(), np.uint8)
                msg = T["sensor_msgs/msg/CompressedImage"](
                    header=_header(stamp, "camera_front"), format="jpeg", data=data
                )
                write("/camera/compressed", stamp, msg)
            if tick % 3 == 0:
                write(
                    "/radar/points",
                    stamp,
                    _cloud(stamp, "radar_front", world.radar(stamp), ("x", "y", "z", "velocity", "rcs")),
                )
            if tick % 6 == 0:
                write(
                    "/lidar/points",
                    stamp,
                    _cloud(stamp, "lidar_top", world.lidar(stamp), ("x", "y", "z", "intensity")),
                )
    assert first is not None
    return first


def test_ros2_bag_imports_and_replays_into_results(tmp_path: Path) -> None:
    first = _sim_bag(tmp_path / "bag", duration_s=0.7)
    log = tmp_path / "from_ros.mcap"
    maps = [
        "/camera/image_raw=camera/raw", "/camera/compressed=camera/jpeg", "/lidar/points=lidar/top",
        "/radar/points=radar/front:radar",
    ]  # fmt: skip
    cli = [sys.executable, "-m", "fusion_pipeline.cli"]
    done = subprocess.run([*cli, "import-ros2", str(tmp_path / "bag"), "-o", str(log), "--map", *maps],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    counts: dict[str, int] = {}
    for message in LogReader(log):
        counts[message.sample.stream] = counts.get(message.sample.stream, 0) + 1
    assert counts == {"camera/raw": 21, "camera/jpeg": 21, "lidar/top": 7, "radar/front": 14}
    raw = next(LogReader(log).messages(["camera/raw"])).sample
    assert np.array_equal(raw.arrays["image"], first)

    # The demo config has one camera: replay the JPEG topic as it (ingest decodes JPEG).
    results, report = tmp_path / "results.mcap", tmp_path / "report.json"
    done = subprocess.run(
        [*cli, "replay", str(log), "--max-speed", "--no-progress", "--streams", "camera/jpeg", "lidar/top",
         "radar/front", "--remap", "camera/jpeg=camera/front", "--results", str(results),
         "--report-json", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(report.read_text())
    assert summary["sent"] == {"camera/front": 21, "lidar/top": 7, "radar/front": 14}
    out = [m.sample for m in LogReader(results)]
    # lidar/top is the demo's reference stream: since the end-of-replay flush, each of its 7 messages gives
    # a result, the last one included, at the lidar message's stamp.
    lidar = [m.sample.stamp_ns for m in LogReader(log).messages(["lidar/top"])]
    assert len(out) == len(lidar) == 7 and summary["inference_skipped"] == 0
    assert [r.stamp_ns for r in out] == lidar
    assert all(r.modality == "result" and r.arrays["class_probs"].shape == (len(CLASSES),) for r in out)
    # camera, lidar and radar present (the log has no audio), in the default model's presence order
    assert {tuple(r.arrays["presence"]) for r in out} == {(1, 1, 1, 0)}
