"""A simulated sensor driver as a real process publishes the world in real time."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from node_harness import Control
from pipeline_harness import DEMO_TEXT, add_to_stream

from fusion_pipeline.node import node_command
from fusion_pipeline.sim import World
from fusion_pipeline.transport import Subscriber

S = 1_000_000_000


def test_driver_process_publishes_the_world_in_real_time() -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="fp-sim-"))
    config = run_dir / "sim.toml"
    config.write_text(add_to_stream(DEMO_TEXT, "radar/front", "sim = { seed = 5, latency_ms = 20 }"))
    subscriber = Subscriber(f"ipc://{run_dir}/sensor-radar_front.sock", topics=["radar/front"])
    process = subprocess.Popen(
        [
            *node_command("sensor_sim"),
            "--config",
            str(config),
            "--run-dir",
            str(run_dir),
        ]
        + ["--stream", "radar/front"],
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        received = []
        deadline = time.monotonic() + 20
        while len(received) < 12 and time.monotonic() < deadline:
            sample = subscriber.recv(timeout_ms=100)
            if sample is not None:
                received.append((time.time_ns(), sample))
    finally:
        process.terminate()
        _, log = process.communicate(timeout=10)
        code = process.returncode
        subscriber.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    assert code == 0 and len(received) == 12, log
    world = World(5)
    seqs = np.array([s.seq for _, s in received])
    periods = np.diff([s.stamp_ns for _, s in received]) // (S // 20)
    # One seq per capture: a capture the driver skipped (starved of CPU, and it says so) is a gap in both.
    assert (np.diff(seqs) == periods).all() and (periods >= 1).all()
    if (periods > 1).any():
        assert "skipped" in log, log
    for arrival, sample in received:
        assert (sample.stream, sample.modality, sample.frame_id) == ("radar/front", "radar", "radar_front")
        np.testing.assert_array_equal(sample.arrays["detections"], world.radar(sample.stamp_ns))
        assert arrival - sample.stamp_ns >= 20_000_000  # sent latency_ms after capture
    stamps = np.array([s.stamp_ns for _, s in received])
    assert (np.diff(stamps) % (S // 20) == 0).all()  # on the 20 Hz grid (a late driver skips, never shifts)
    arrivals = np.array([a for a, _ in received])
    assert np.median(np.diff(arrivals)) == pytest.approx(S / 20, rel=0.3)  # paced in real time
    assert not list(run_dir.glob("*.sock"))


def test_an_outage_for_good_is_counted_as_it_passes_and_costs_no_cpu() -> None:
    """The driver walked through the captures of an outage as fast as it could: one for good spun a core
    and counted millions, a finite one was counted whole at its start."""
    run_dir = Path(tempfile.mkdtemp(prefix="fp-sim-"))
    config = run_dir / "sim.toml"
    config.write_text(
        add_to_stream(DEMO_TEXT, "radar/front", "sim = { outage = { start_s = 0.5, duration_s = inf } }")
    )
    control = Control(run_dir)
    process = subprocess.Popen(
        [
            *node_command("sensor_sim"),
            "--config",
            str(config),
            "--run-dir",
            str(run_dir),
        ]
        + ["--stream", "radar/front"],
    )
    try:
        started = control.wait_for("sensor_sim:radar/front", lambda c: c["outage"] > 0, timeout_s=30)
        begun = time.monotonic()
        time.sleep(2.0)
        control.poll(1000)
        counters = control.latest["sensor_sim:radar/front"]
        elapsed = time.monotonic() - begun
        cpu_s = counters["cpu_s"] - started["cpu_s"]
    finally:
        process.terminate()
        process.wait(timeout=10)
        control.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    outage = counters["outage"] - started["outage"]
    assert outage <= 20 * (elapsed + 1.5), outage  # 20 Hz as the time passes, a heartbeat's lag aside
    assert cpu_s < 0.5 * elapsed, cpu_s
