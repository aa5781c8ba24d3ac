"""The surround suite live: 6 cameras, a lidar, 3 radars and a microphone, one presence bit each; a
camera driver killed with SIGKILL leaves its bit 0 and the others 1 until the supervisor brings it back."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from paths import ROOT
from pipeline_harness import collect, pipeline, presence

from fusion_pipeline.config import load_config
from fusion_pipeline.inference import model_path
from fusion_pipeline.transport import Sample

SURROUND = ROOT / "configs" / "surround.toml"
KILLED = "camera/front_left"


@pytest.fixture
def surround_model() -> Path:
    """The surround model the config names (a path from the repository root), shipped in the package."""
    model = model_path(load_config(SURROUND))
    assert model.is_file(), f"{model}: the shipped surround model is missing"
    return model


def surround_text(run_dir: Path, model: Path) -> str:
    text = SURROUND.read_text()
    text = re.sub(r'^run_dir = ""', f'run_dir = "{run_dir}"', text, count=1, flags=re.M)
    text = re.sub(r'^path = "[^"]*"', f'path = "{model}"', text, count=1, flags=re.M)
    return text.replace('address = "127.0.0.1:9464"', 'address = "127.0.0.1:0"')


def bit(result: Sample, stream: str) -> int:
    return presence(result)[result.meta["streams"].index(stream)]


def test_a_killed_camera_driver_clears_only_its_bit_until_it_is_back(
    tmp_path: Path, surround_model: Path
) -> None:
    with pipeline(lambda d: surround_text(d, surround_model), "--warmup", "0", workdir=tmp_path) as run:
        results = run.results()
        try:
            full = collect(results, lambda rs: sum(sum(presence(r)) == 11 for _, r in rs) >= 10, timeout_s=60)
            assert all(len(presence(r)) == 11 for _, r in full)
            assert full[-1][1].meta["streams"][1] == KILLED  # bit order: the config's streams

            (driver,) = run.node_pids("sensor_sim", KILLED)
            os.kill(driver, signal.SIGKILL)
            killed_ns = time.time_ns()
            back: list[int] = []
            while not back and time.time_ns() - killed_ns < 5e9:
                back = [p for p in run.node_pids("sensor_sim", KILLED) if p != driver]
                time.sleep(0.02)
            assert back, run.output()
            back_ns = time.time_ns()

            after = collect(
                results,
                lambda rs: any(r.stamp_ns > back_ns + 1e9 and sum(presence(r)) == 11 for _, r in rs),
                timeout_s=30,
            )
            degraded = [r for _, r in after if killed_ns < r.stamp_ns < back_ns and bit(r, KILLED) == 0]
            assert degraded, "no result without the killed camera while its driver was down"
            for result in degraded:  # every other sensor stays present
                others = [
                    b for s, b in zip(result.meta["streams"], presence(result), strict=True) if s != KILLED
                ]
                assert others == [1] * 10, (result.meta["streams"], presence(result))
            assert bit(after[-1][1], KILLED) == 1
        finally:
            results.close()
