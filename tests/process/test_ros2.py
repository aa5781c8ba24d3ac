"""ROS 2 interop as commands: a real recording through export-ros2 and import-ros2 comes back exact."""

import os
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from extras import without
from samples import same_sample

from fusion_pipeline.config import load_config
from fusion_pipeline.logs import (
    LogReader,
    Recorder,
    RecordSettings,
    Ros2Error,
    import_ros2,
    parse_map,
)
from fusion_pipeline.transport import Publisher, Sample

T0 = 1_700_000_000_000_000_000


def test_record_export_import_round_trip_keeps_audio_format_and_results(ipc_dir: Path) -> None:
    """A real recording (live sockets, the recorder) through export-ros2 and import-ros2, as commands:
    float32 stereo audio comes back exact with its sample rate, and so do the results."""
    config = load_config(None)
    rng = np.random.default_rng(5)
    audio = [
        Sample("audio/roof", "audio", i, T0 + i * 20_000_000,
               {"samples": rng.uniform(-1, 1, (320, 2)).astype(np.float32)}, "mic",
               {"sample_rate": 16000, "gain": 2})
        for i in range(3)
    ]  # fmt: skip
    results = [
        Sample("result/fused", "result", 7 + i, T0 + i, {"class_probs": rng.random(5).astype(np.float32),
               "presence": np.array([1, 0, 1, 1], np.uint8)}, "", {"classes": ["a", "b"], "stamps": {"x": 1}})
        for i in range(2)
    ]  # fmt: skip
    log = ipc_dir / "run.mcap"
    recorder = Recorder(config, ipc_dir, RecordSettings(path=log, streams=("audio/roof", "result/fused")))
    endpoints = {
        "audio/roof": config.endpoint(config.stream("audio/roof").endpoint, ipc_dir),
        "result/fused": config.endpoint(config.output.endpoint, ipc_dir),
    }
    publishers = {
        name: Publisher(url, name, "audio" if name == "audio/roof" else "result", lossless=True)
        for name, url in endpoints.items()
    }
    try:
        for pub in publishers.values():
            assert pub.wait_for_subscribers()
        for sample in audio + results:
            publishers[sample.stream].send(sample)
        deadline = time.monotonic() + 10
        while recorder.report.written < 5:
            assert time.monotonic() < deadline, "the recorder did not receive everything"
            recorder.poll(100)
    finally:
        recorder.close()
        for pub in publishers.values():
            pub.close()

    bag = ipc_dir / "bag"
    cli = [sys.executable, "-m", "fusion_pipeline.cli"]
    old = os.umask(0o002)
    try:
        exported = subprocess.run(
            [*cli, "export-ros2", str(log), "-o", str(bag)], capture_output=True, text=True
        )
    finally:
        os.umask(old)
    assert exported.returncode == 0, exported.stderr
    # Said, not silently dropped: the message meta the bag has no place for, and the recorder's channel
    # metadata (its sample rate comes back with every message's AudioInfo).
    assert (
        "/audio/roof: channel metadata ['offset_ms', 'rate_hz'] not carried; meta ['gain'] not carried"
        in exported.stderr
    )
    assert stat.S_IMODE(bag.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in bag.iterdir()} == {0o600}
    assert not [p for p in ipc_dir.iterdir() if p.name.startswith(".bag")]  # no staging left

    back = ipc_dir / "back.mcap"
    imported = subprocess.run(
        [*cli, "import-ros2", str(bag), "-o", str(back), "--map", "/audio/roof=audio/roof",
         "--map", "/result/fused=result/fused"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert {stat.S_IMODE(p.stat().st_mode) for p in (log, back)} == {0o600}  # the recording and the import
    got = sorted((m.sample for m in LogReader(back)), key=lambda s: s.stream)  # two sockets: any order
    assert [s.stream for s in got] == ["audio/roof"] * 3 + ["result/fused"] * 2
    for sample, want in zip(got, audio + results, strict=True):
        if want.modality == "audio":
            want = replace(want, meta={"sample_rate": 16000})  # the rate comes back, "gain" was said lost
        assert same_sample(sample, want)

    # Options that contradict the bag's AudioInfo are refused, naming the topic.
    with pytest.raises(
        Ros2Error, match=r"topic /audio/roof_info .*says sample-rate 16000, --sample-rate says 8000"
    ):
        import_ros2(bag, ipc_dir / "other.mcap", parse_map(["/audio/roof=a/b"]), sample_rate=8000)


@pytest.mark.parametrize(
    "command",
    [
        ["export-ros2", "demo.mcap", "-o", "new-bag"],
        ["import-ros2", "bag", "-o", "out.mcap", "--map", "/points=lidar/top"],
    ],
    ids=["export-ros2", "import-ros2"],
)
def test_a_missing_ros_extra_says_what_to_install(command: list[str], tmp_path: Path) -> None:
    """Not a traceback: the extra, and its packages by name for a CPU-only install."""
    (tmp_path / "demo.mcap").write_bytes(b"")
    (tmp_path / "bag").mkdir()
    done = without("rosbags", *command, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "needs the [ros] extra: pip install 'fusion-pipeline[ros]'" in done.stderr
    assert "'rosbags>=" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "demo.mcap"]  # nothing written
