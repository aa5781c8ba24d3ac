"""The record command and the recorder as processes: kill -9 loses at most the open chunk, split by
duration, refusals before recording, no pipeline running."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from paths import ROOT
from samples import numbered_radar

from fusion_pipeline.config import parse_config
from fusion_pipeline.logs import LogReader
from fusion_pipeline.node import node_command
from fusion_pipeline.transport import Publisher

DEMO = (ROOT / "fusion_pipeline" / "configs" / "demo.toml").read_text()


def _config_text(run_dir: Path, record: str) -> str:
    """The demo config with a fixed run dir and the given [record] section."""
    text = DEMO.replace('run_dir = ""', f'run_dir = "{run_dir}"')
    return text[: text.index("[record]")] + record


def test_kill_9_loses_at_most_the_open_chunk(ipc_dir: Path) -> None:
    out = ipc_dir / "crash.mcap"
    config_path = ipc_dir / "crash.toml"
    config_path.write_text(
        _config_text(ipc_dir, f'[record]\nenabled = true\npath = "{out}"\nstreams = ["camera/front"]\n')
    )
    config = parse_config(config_path.read_text())
    child = subprocess.Popen(
        [
            *node_command("recorder"),
            "--config",
            str(config_path),
            "--run-dir",
            str(ipc_dir),
        ],
        cwd=ROOT,
    )
    frames = 32  # 921,600 bytes each: the 4 MiB chunks close after every 5th frame
    try:
        with Publisher(
            config.endpoint(config.stream("camera/front").endpoint, ipc_dir),
            "camera/front",
            "camera",
            lossless=True,
        ) as pub:
            assert pub.wait_for_subscribers(timeout_s=30), "recorder did not subscribe"
            for seq in range(frames):
                pub.publish(seq, image=np.full((480, 640, 3), seq, np.uint8), meta={"encoding": "rgb8"})
            # Wait until the recorder has written all it will write (the file stops growing), then kill it.
            size, stable_since = -1, time.monotonic()
            while time.monotonic() - stable_since < 1.0:
                time.sleep(0.1)
                if out.exists() and out.stat().st_size != size:
                    size, stable_since = out.stat().st_size, time.monotonic()
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    reader = LogReader(out)
    seqs = [m.sample.seq for m in reader]
    assert reader.truncated and str(out) in reader.truncated[0]  # no footer: the process never closed it
    assert seqs == list(range(len(seqs)))  # a clean prefix, whole messages only
    assert frames - 5 <= len(seqs) < frames  # only the open chunk (at most 5 frames) is gone
    assert all(m.sample.arrays["image"][0, 0, 0] == m.sample.seq for m in LogReader(out))


def test_record_command_splits_by_duration(ipc_dir: Path) -> None:
    config_path = ipc_dir / "rec.toml"
    config_path.write_text(_config_text(ipc_dir, "[record]\n"))
    config = parse_config(config_path.read_text())
    out, report = ipc_dir / "split.mcap", ipc_dir / "report.json"
    command = [
        sys.executable, "-m", "fusion_pipeline.cli", "record", str(out), "-c", str(config_path),
        "--streams", "radar/front", "--duration", "3", "--split-duration", "0.5",
        "--report-json", str(report),
    ]  # fmt: skip
    child = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    sent = []
    with Publisher(
        config.endpoint(config.stream("radar/front").endpoint, ipc_dir), "radar/front", "radar", lossless=True
    ) as pub:
        assert pub.wait_for_subscribers(timeout_s=30)
        for seq in range(60):  # 1.2 s at 50 Hz
            pub.send(numbered_radar(seq))
            sent.append(seq)
            time.sleep(0.02)
        _, stderr = child.communicate(timeout=30)
    assert child.returncode == 0, stderr
    parts = sorted(ipc_dir.glob("split_*.mcap"))
    assert len(parts) >= 2
    assert [m.sample.seq for m in LogReader(parts)] == sent
    assert "radar/front: 60 written, seq 0..59, 0 lost upstream" in stderr
    numbers = json.loads(report.read_text())  # numbers, not the strings of the MCAP metadata
    assert numbers["written"] == 60 and numbers["lost"] == 0 and len(numbers["paths"]) == len(parts)
    radar = numbers["streams"]["radar/front"]
    assert radar == {
        "written": 60, "first_seq": 0, "last_seq": 59, "lost_upstream": 0, "out_of_order": 0,
        "lag_ms_max": radar["lag_ms_max"], "late": 60,  # stamped in 1970: every one logged late
    }  # fmt: skip


def _record_command(run_dir: Path, out: Path, duration_s: float, report: Path) -> subprocess.CompletedProcess:
    """`fusion-pipeline record OUT` on a run dir, for `duration_s`, writing its report to `report`."""
    command = [
        sys.executable,
        "-m",
        "fusion_pipeline.cli",
        "record",
        str(out),
        "--run-dir",
        str(run_dir),
    ]
    return subprocess.run(
        [*command, "--duration", str(duration_s), "--report-json", str(report)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_record_refuses_an_unwritable_report_before_recording(tmp_path: Path) -> None:
    out, report = tmp_path / "rec.mcap", tmp_path / "missing-dir" / "report.json"
    done = _record_command(tmp_path, out, 30, report)
    assert done.returncode == 2 and f"--report-json {report}: directory" in done.stderr
    assert not out.exists()  # refused before anything was recorded


def test_record_with_no_pipeline_running_exits_1_and_leaves_no_log(tmp_path: Path) -> None:
    out, report = tmp_path / "rec.mcap", tmp_path / "report.json"
    done = _record_command(tmp_path, out, 1, report)
    assert done.returncode == 1 and "nothing received" in done.stderr and "is it running?" in done.stderr
    assert not out.exists()  # so that a retry under the same name is not refused
    written = json.loads(report.read_text())
    assert written["written"] == 0 and written["paths"] == []  # it named the log it did not write
