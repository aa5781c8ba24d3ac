"""The views logged for a recording's messages: projection, entities and one entry per result."""

from __future__ import annotations

import math

import numpy as np
import pytest

rr = pytest.importorskip("rerun")

from fusion_pipeline.config import load_config  # noqa: E402
from fusion_pipeline.sim import CAMERA_SHAPE, Mount  # noqa: E402
from fusion_pipeline.transport.wire import Sample  # noqa: E402
from fusion_pipeline.view.scene import Scene, project  # noqa: E402


def test_projection_follows_the_simulated_pinhole() -> None:
    height, width, _ = CAMERA_SHAPE
    ahead = project(Mount(), width, height, 20.0, 0.0)
    assert ahead is not None and math.isclose(ahead[0], width / 2)
    assert ahead[1] > height / 2  # the ground ahead lies below the horizon
    left = project(Mount(), width, height, 20.0, 3.0)
    assert left is not None and left[0] < width / 2  # +y is left in the ego frame
    assert project(Mount(), width, height, -5.0, 0.0) is None  # behind the camera
    # a camera looking left sees the point on its axis at its centre column
    turned = project(Mount(yaw_deg=90.0), width, height, 0.0, 20.0)
    assert turned is not None and math.isclose(turned[0], width / 2, abs_tol=1e-6)


def _memory_scene(config):  # type: ignore[no-untyped-def]
    recording = rr.RecordingStream("test-scene")
    memory = recording.memory_recording()
    return Scene(config, recording), recording, memory


def test_one_text_entry_per_result_and_latencies() -> None:
    config = load_config(None)
    scene, recording, memory = _memory_scene(config)
    stages = {"capture": 1, "ingest_in": 2_000_001, "ingest_out": 3_000_001, "sync_in": 4_000_001}
    for seq in range(3):
        result = Sample(
            "result/fused",
            "result",
            seq,
            1_700_000_000_000_000_000 + seq,
            {
                "class_probs": np.array([0.1, 0.9, 0, 0, 0], np.float32),
                "position": np.array([15.0, 1.0], np.float32),
                "siren_prob": np.array([0.2], np.float32),
                "presence": np.array([1, 1, 0, 1], np.uint8),
            },
            "",
            {
                "classes": ["none", "car", "pedestrian", "cyclist", "emergency"],
                "streams": ["camera/front", "lidar/top", "radar/front", "audio/roof"],
                "stages": stages,
            },
        )
        scene.show(result, received_ns=5_000_001)
    recording.flush()
    assert scene.summary()["ingest_in->ingest_out"]["n"] == 3
    assert len(memory.drain_as_bytes()) > 0
