"""The views logged for a recording's messages: projection, entities and one entry per result."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

rr = pytest.importorskip("rerun")

from fusion_pipeline.config import load_config  # noqa: E402
from fusion_pipeline.ops.metrics import ResultStats  # noqa: E402
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


STREAMS = ["camera/front", "lidar/top", "radar/front", "audio/roof"]
CLASSES = ["none", "car", "pedestrian", "cyclist", "emergency"]


def _result(seq: int, stages: dict[str, int]) -> Sample:
    return Sample(
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
        {"classes": CLASSES, "streams": STREAMS, "stages": stages},
    )


STAGES = {"capture": 1, "ingest_in": 2_000_001, "ingest_out": 3_000_001, "sync_in": 4_000_001}


def test_one_text_entry_per_result_and_latencies() -> None:
    config = load_config(None)
    scene, recording, memory = _memory_scene(config)
    for seq in range(3):
        scene.show(_result(seq, STAGES), received_ns=5_000_001)
    recording.flush()
    assert scene.summary()["ingest_in->ingest_out"]["n"] == 3
    assert len(memory.drain_as_bytes()) > 0


def test_series_are_one_row_per_result_with_their_names_logged_on_change() -> None:
    """Latency, presence and class probabilities: one Scalars row per result on one entity each (a log
    call per series made the viewer's results a third of its CPU), its series named by SeriesLines."""
    scene, recording, _ = _memory_scene(load_config(None))
    logged: list[tuple[str, object]] = []
    real_log = recording.log

    def spy(entity: str, entry: object, **kwargs: object) -> None:
        logged.append((entity, entry))
        real_log(entity, entry, **kwargs)

    recording.log = spy  # type: ignore[method-assign]
    for seq in range(3):
        scene.show(_result(seq, STAGES), received_ns=5_000_001)
    scene.show(_result(3, {**STAGES, "sync_emit": 4_500_001}), received_ns=5_000_001)  # one stage more

    def rows(entity: str) -> list[object]:
        return [entry for name, entry in logged if name == entity]

    def values(entry: object, field: str) -> list[object]:
        return getattr(entry, field).as_arrow_array().to_pylist()

    latency = rows("latency")
    names = [values(e, "names") for e in latency if isinstance(e, rr.SeriesLines)]
    expected = ResultStats(STREAMS).add(_result(0, STAGES), 5_000_001)  # the supervisor's stage names
    assert names[0] == [name.replace("->", "_to_") for name in expected] and "end_to_end" in names[0]
    # The stages changed: the new names go at the end, each old one keeps its place (rerun names values
    # by position), and the one this result lacks is NaN.
    assert len(names) == 2 and names[1][: len(names[0])] == names[0] and "sync_in_to_sync_emit" in names[1]
    scalars = [values(e, "scalars") for e in latency if isinstance(e, rr.Scalars)]
    assert len(scalars) == 4 and scalars[0][:2] == [2.0, 1.0] and len(scalars[3]) == len(names[1])
    assert math.isnan(scalars[3][names[1].index("sync_in_to_received")])
    assert scalars[3][names[1].index("end_to_end")] == scalars[0][names[0].index("end_to_end")]
    presence = rows("presence")
    assert values(presence[0], "names") == STREAMS and len(presence) == 5
    assert all(values(e, "scalars") == [1.0, 1.0, 0.0, 1.0] for e in presence[1:])
    probs = rows("result/class_probs")
    assert values(probs[0], "names") == CLASSES and len(probs) == 5
    assert values(probs[1], "scalars") == pytest.approx([0.1, 0.9, 0, 0, 0])
    assert not [
        name for name, _ in logged if name.startswith(("latency/", "presence/", "result/class_probs/"))
    ]


# Run in a child: rerun aborts the whole process (a Rust panic) on an unaligned array, pytest with it.
_UNALIGNED_POINTS = """
import json
import numpy as np
import rerun as rr
from fusion_pipeline.config import load_config
from fusion_pipeline.transport.wire import Sample
from fusion_pipeline.view.scene import Scene

def unaligned(rows, columns):
    values = np.arange(rows * columns, dtype=np.float32) + 1
    buffer = b"\\0" + values.tobytes()  # at offset 1 of a bytes object: not aligned for float32
    array = np.frombuffer(buffer, np.float32, offset=1).reshape(rows, columns)
    assert not array.flags.aligned and array.flags.c_contiguous
    return array

recording = rr.RecordingStream("test-unaligned")
memory = recording.memory_recording()
scene = Scene(load_config(None), recording)
logged = {}
real_log = recording.log

def spy(entity, entry, **kwargs):
    if isinstance(entry, rr.Points3D):
        logged[entity] = entry.positions.as_arrow_array().to_pylist()
    real_log(entity, entry, **kwargs)

recording.log = spy
stamp = 1_700_000_000_000_000_000
scene.show(Sample("radar/front", "radar", 0, stamp, {"detections": unaligned(1, 5)}), stamp)
scene.show(Sample("lidar/top", "lidar", 0, stamp, {"points": unaligned(1, 4)}), stamp)
recording.flush()
assert memory.drain_as_bytes()
print(json.dumps(logged))
"""


def test_unaligned_radar_and_lidar_arrays_are_logged_not_a_crash() -> None:
    """A radar scan of one detection at an odd address in a recorded log: `detections[:, :3]` is
    contiguous, so rerun took it without a copy and its arrow aborted the process."""
    done = subprocess.run(
        [sys.executable, "-c", _UNALIGNED_POINTS], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    logged = json.loads(done.stdout.splitlines()[-1])
    assert logged["ego/radar/front"] == [[1.0, 2.0, 3.0]]
    assert logged["ego/lidar/top"] == [[1.0, 2.0, 3.0]]
