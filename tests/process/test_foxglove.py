"""Foxglove export, run as the export-foxglove command: well-known schema names, JSON encoding, binary data
that decodes back to the arrays, a topic per source, never over a file."""

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
from mcap.reader import make_reader
from paths import ROOT

from fusion_pipeline.logs import SCHEMAS, LogWriter, SplitPolicy
from fusion_pipeline.transport import Sample

T0 = 1_700_000_000_123_456_789


def test_export_foxglove(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (4, 6, 3), dtype=np.uint8)
    points = rng.normal(size=(9, 4)).astype(np.float32)
    detections = rng.normal(size=(2, 5)).astype(np.float32)
    result_arrays = {
        "class_probs": np.array([0.1, 0.2, 0.3, 0.25, 0.15], np.float32),
        "position": np.array([12.5, -1.0], np.float32),
        "velocity": np.array([-3.5], np.float32),
        "siren_prob": np.array([0.75], np.float32),
        "presence": np.array([1, 1, 0, 1], np.uint8),
    }
    result_meta = {
        "classes": ["none", "car", "pedestrian", "cyclist", "emergency"],
        "modalities": ["camera", "lidar", "radar", "audio"],
        "stages": {"capture": T0, "publish": T0 + 5},
        "provider": "CPUExecutionProvider",
    }
    samples = [
        Sample("camera/front", "camera", 4, T0, {"image": image}, "camera_front", {"encoding": "rgb8"}),
        Sample(
            "camera/jpeg", "camera", 0, T0, {"jpeg": np.frombuffer(b"\xff\xd8jpegbytes", np.uint8)}, "cam"
        ),
        Sample("lidar/top", "lidar", 0, T0, {"points": points}, "lidar_top"),
        Sample("radar/front", "radar", 0, T0, {"detections": detections}, "radar_front"),
        Sample("audio/roof", "audio", 0, T0, {"samples": np.zeros((320, 1), np.float32)}, "mic"),
        Sample("result/fused", "result", 0, T0, result_arrays, "", result_meta),
    ]
    with LogWriter(tmp_path / "log.mcap") as writer:
        for i, sample in enumerate(samples):
            writer.write(sample, T0 + 1000 + i)
    out = tmp_path / "view.mcap"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusion_pipeline.cli",
            "export-foxglove",
            str(tmp_path / "log.mcap"),
            "-o",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    with open(out, "rb") as f:
        got = {
            channel.topic: (schema, channel, message, json.loads(message.data))
            for schema, channel, message in make_reader(f).iter_messages()
        }
    assert set(got) == {
        "/camera/front",
        "/camera/jpeg",
        "/lidar/top",
        "/radar/front",
        "/result/fused",
    }  # no audio
    for schema, channel, message, _ in got.values():
        assert channel.message_encoding == "json" and schema.encoding == "jsonschema"
        assert json.loads(schema.data) == SCHEMAS[schema.name]
        assert message.publish_time == T0

    schema, _, _, raw = got["/camera/front"]
    assert schema.name == "foxglove.RawImage"
    assert raw["timestamp"] == {"sec": 1_700_000_000, "nsec": 123_456_789}
    assert (raw["width"], raw["height"], raw["step"], raw["encoding"]) == (6, 4, 18, "rgb8")
    assert base64.b64decode(raw["data"]) == image.tobytes() and raw["frame_id"] == "camera_front"

    schema, _, _, jpeg = got["/camera/jpeg"]
    assert schema.name == "foxglove.CompressedImage" and jpeg["format"] == "jpeg"
    assert base64.b64decode(jpeg["data"]) == b"\xff\xd8jpegbytes"

    for topic, array, names in (
        ("/lidar/top", points, ["x", "y", "z", "intensity"]),
        ("/radar/front", detections, ["x", "y", "z", "velocity", "rcs"]),
    ):
        schema, _, _, cloud = got[topic]
        assert schema.name == "foxglove.PointCloud"
        assert [f["name"] for f in cloud["fields"]] == names and {f["type"] for f in cloud["fields"]} == {7}
        assert cloud["point_stride"] == 4 * len(names)
        data = np.frombuffer(base64.b64decode(cloud["data"]), "<f4").reshape(-1, len(names))
        assert np.array_equal(data, array)

    schema, _, _, result = got["/result/fused"]
    assert schema.name == "fusion_pipeline.Result"
    assert result["class_probs"]["pedestrian"] == np.float32(0.3).item()
    assert result["presence"] == {"camera": True, "lidar": True, "radar": False, "audio": True}
    assert result["position"] == [12.5, -1.0] and result["velocity"] == -3.5 and result["siren_prob"] == 0.75
    assert result["stages"] == {"capture": T0, "publish": T0 + 5}


def test_export_foxglove_never_writes_over_a_file_or_leaves_one_for_a_bad_input(tmp_path: Path) -> None:
    log = tmp_path / "log.mcap"
    with LogWriter(log) as writer:
        writer.write(Sample("radar/front", "radar", 0, 1, {"detections": np.zeros((1, 5), np.float32)}), 1)
    before = log.read_bytes()
    command = [sys.executable, "-m", "fusion_pipeline.cli", "export-foxglove"]
    same = subprocess.run([*command, "-o", str(log), str(log)], capture_output=True, text=True, timeout=60)
    assert same.returncode == 2 and "exists already, not overwriting" in same.stderr
    assert log.read_bytes() == before  # its own input survives
    out = tmp_path / "fox.mcap"
    missing = subprocess.run(
        [*command, "-o", str(out), str(tmp_path / "nope.mcap")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "nope.mcap: no such log file" in missing.stderr
    assert not out.exists()


def _result(seq: int, probs: float, stream: str = "result/fused") -> Sample:
    return Sample(stream, "result", seq, T0 + seq, {"class_probs": np.full(5, probs, np.float32)})


def test_each_source_keeps_its_own_topic_and_the_summary_says_which(tmp_path: Path) -> None:
    # A split recording (two parts: one source) with the live results, and the replay's results log.
    recording = LogWriter(tmp_path / "run.mcap", split=SplitPolicy(max_duration_ns=10))
    for seq in range(4):
        recording.write(_result(seq, 0.1), log_time_ns=seq * 10)  # one part per message
        lidar = Sample("lidar/top", "lidar", seq, T0 + seq, {"points": np.zeros((2, 4), np.float32)})
        recording.write(lidar, log_time_ns=seq * 10)
    recording.close()
    assert len(recording.paths) == 4
    with LogWriter(tmp_path / "results.mcap") as replayed:
        for seq in range(3):
            replayed.write(_result(seq, 0.3), seq)
    out = tmp_path / "view.mcap"
    logs = [str(p) for p in [*recording.paths, tmp_path / "results.mcap"]]
    old = os.umask(0o002)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "fusion_pipeline.cli", "export-foxglove", *logs, "-o", str(out)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.umask(old)
    assert done.returncode == 0, done.stderr
    assert "result/fused of results -> /result/fused@results (/result/fused holds run's)" in done.stderr
    assert "/lidar/top 4, /result/fused 4, /result/fused@results 3" in done.stderr
    with open(out, "rb") as f:
        probs: dict[str, set[float]] = {}
        for _, channel, message in make_reader(f).iter_messages():
            if channel.topic.startswith("/result"):
                values = json.loads(message.data)["class_probs"].values()
                probs.setdefault(channel.topic, set()).update(values)
    # Live and replayed results never share a topic.
    assert probs == {
        "/result/fused": {np.float32(0.1).item()},
        "/result/fused@results": {np.float32(0.3).item()},
    }
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_a_source_s_topic_is_its_own_even_where_a_stream_is_named_like_it(tmp_path: Path) -> None:
    # Log a holds a stream literally named result/fused@b: b's result/fused must not join its topic.
    with LogWriter(tmp_path / "a.mcap") as a:
        a.write(_result(0, 0.1), 0)
        a.write(_result(0, 0.2, "result/fused@b"), 1)
    with LogWriter(tmp_path / "b.mcap") as b:
        for seq in range(2):
            b.write(_result(seq, 0.3), seq)
    out = tmp_path / "view.mcap"
    logs = [str(tmp_path / "a.mcap"), str(tmp_path / "b.mcap")]
    done = subprocess.run(
        [sys.executable, "-m", "fusion_pipeline.cli", "export-foxglove", *logs, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    renamed = (
        "result/fused of b -> /result/fused@b#2 (/result/fused holds a's; /result/fused@b holds a's "
        "result/fused@b)"
    )
    assert renamed in done.stderr
    assert "/result/fused 1, /result/fused@b 1, /result/fused@b#2 2" in done.stderr
    with open(out, "rb") as f:
        probs: dict[str, set[float]] = {}
        for _, channel, message in make_reader(f).iter_messages():
            probs.setdefault(channel.topic, set()).update(json.loads(message.data)["class_probs"].values())
    assert probs == {
        "/result/fused": {np.float32(0.1).item()},
        "/result/fused@b": {np.float32(0.2).item()},
        "/result/fused@b#2": {np.float32(0.3).item()},
    }
