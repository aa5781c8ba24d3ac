"""`fusion-pipeline run` end to end: real node processes on the demo config, CPU only."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from onnxruntime import get_available_providers as available_providers
from pipeline_harness import add_to_stream, demo_text, pipeline

from fusion_pipeline.transport import SEGMENT_DIR

CAMERA_OUTAGE = "sim = { outage = { start_s = 3.0, duration_s = 1.5 } }"


def test_demo_run_produces_full_and_partial_sets_and_exits_clean(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"

    def config(run_dir: Path) -> str:
        return demo_text(run_dir, lambda t: add_to_stream(t, "camera/front", CAMERA_OUTAGE))

    with pipeline(
        config, "--duration", "10", "--warmup", "0", "--summary-json", str(summary_path), workdir=tmp_path
    ) as run:
        code = run.process.wait(timeout=40)
        output = run.output()
        assert code == 0, output
        assert run.all_node_pids() == [], "node processes outlived the supervisor"
        assert run.ipc_files() == [], "ipc socket files left behind"

    summary = json.loads(summary_path.read_text())
    assert summary["results"] >= 20, output
    # The camera outage (1.5 s at 10 sets/s) shows as partial sets missing exactly the camera.
    assert summary["sets_full"] >= 10
    assert summary["missing"].get("camera/front", 0) >= 8
    assert summary["missing"]["camera/front"] <= summary["sets_partial"] <= sum(summary["missing"].values())
    assert summary["provider"].endswith("ExecutionProvider")
    if summary["provider"] != "CUDAExecutionProvider" and "CUDAExecutionProvider" in available_providers():
        assert f"FELL BACK to {summary['provider']}" in output  # said loudly
    assert summary["restarts_total"] == 0, output
    # Most reference (lidar) messages yield a result; a few in flight at the window's ends may not.
    assert 0.6 <= summary["result_ratio"] <= 1.05, summary["result_ratio_counts"]
    # Every published set is counted by the synchronizer, so results cannot exceed its count.
    assert summary["results"] <= summary["sync_sets_full"] + summary["sync_sets_partial"]
    # 1.5 s of a 30 Hz camera is 45 captures (a starved driver may count a few as late instead).
    assert summary["drops"]["sensor_sim:camera/front"]["outage"] >= 30

    latency = summary["latency_ms"]
    for stage in (
        "end_to_end",
        "delivered",
        "model",
        "sync_wait",
        "overhead",
        "capture->ingest_in",
        "publish->received",
    ):
        p = latency[stage]
        # Every result after the warm-up is in every stage (the warm-up starts once all nodes are up).
        assert p["n"] == summary["results_timed"] >= summary["results"] // 2, stage
        assert 0 <= p["p50"] <= p["p95"] <= p["p99"] <= p["max"], (stage, p)
    assert latency["end_to_end"]["p50"] < 1000  # bounded: results are not a backlog
    # The stages partition the end-to-end time exactly (the same stamps, added up).
    parts = [v["mean"] for k, v in latency.items() if "->" in k]
    assert abs(sum(parts) - latency["delivered"]["mean"]) < 0.01 * len(parts)
    assert latency["end_to_end"]["mean"] <= latency["delivered"]["mean"]
    # The status line and the node prefixes reached the supervisor's stderr.
    assert "[status] " in output and "[inference] " in output and "latency ms" in output


def test_demo_run_with_shared_memory_delivers_through_the_rings_and_removes_them(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"

    def config(run_dir: Path) -> str:
        return demo_text(run_dir, lambda t: t.replace("\nshm = false", "\nshm = true", 1))

    # Arrays of 128 KiB and more: the camera and lidar drivers' frames, the camera ingest's tensor and
    # the synchronizer's sets each go through their publisher's ring, made at its first such array.
    expected = ["camera_front", "camera_front", "lidar_top", "set_fused"]
    with pipeline(config, "--duration", "12", "--summary-json", str(summary_path), workdir=tmp_path) as run:
        with run.results() as results:
            assert results.recv(timeout_ms=30_000) is not None, run.output()
        # A loaded machine may start the camera after the first (camera-less) results.
        deadline = time.monotonic() + 10
        while True:
            pids = run.all_node_pids()
            rings = sorted(p.name.split("-")[2] for pid in pids for p in SEGMENT_DIR.glob(f"fp-{pid}-*"))
            if rings == expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert rings == expected, run.output()
        # A driver killed mid-run leaves its ring, younger than the sweep at the next ring's making takes:
        # the run's end sweeps it (it stayed in /dev/shm, 15 MB each).
        (killed,) = run.node_pids("sensor_sim", "camera/front")
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while run.node_pids("sensor_sim", "camera/front") in ([killed], []) and time.monotonic() < deadline:
            time.sleep(0.2)
        pids += [killed, *run.all_node_pids()]
        assert run.process.wait(timeout=40) == 0, run.output()
    # The end of the run sweeps it (it says so), unless the new driver's own sweep found it old enough.
    assert not [p for pid in pids for p in SEGMENT_DIR.glob(f"fp-{pid}-*")], "rings left behind"

    summary = json.loads(summary_path.read_text())
    assert summary["results"] >= 20 and summary["sets_full"] >= 20, summary
    # Each consumer keeps up with 30 Hz, so a shared-memory slot is overwritten before it is read only
    # when a loaded machine stalls a node for half a second (16 camera frames).
    stale = sum(drops.get("stale", 0) for drops in summary["drops"].values())
    assert stale <= summary["results"] // 10, summary["drops"]
