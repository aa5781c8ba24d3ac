"""The live viewer's pass over real sockets: paced by the results, it shows once a result arrives, or
after its longest wait; unpaced, as soon as anything arrives."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rerun")

from fusion_pipeline.config import Config, load_config  # noqa: E402
from fusion_pipeline.protocol import RESULT_MODALITY, RESULT_STREAM  # noqa: E402
from fusion_pipeline.sim import CAMERA_SHAPE  # noqa: E402
from fusion_pipeline.transport import Publisher, Role, Subscriber  # noqa: E402
from fusion_pipeline.view import LiveView, Views, ViewSettings, open_sources  # noqa: E402

STAMP = 1_700_000_000_000_000_000
RESULT = {
    "class_probs": np.array([0.1, 0.9, 0, 0, 0], np.float32),
    "position": np.array([15.0, 1.0], np.float32),
    "siren_prob": np.array([0.2], np.float32),
    "presence": np.array([1, 1, 1, 1], np.uint8),
}
RESULT_META = {
    "classes": ["none", "car", "pedestrian", "cyclist", "emergency"],
    "streams": ["camera/front", "lidar/top", "radar/front", "audio/roof"],
    "stages": {"capture": STAMP},
}


@pytest.fixture
def run_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fp-"))  # short: ipc paths hold at most 107 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _drivers(config: Config, run_dir: Path) -> tuple[Publisher, Publisher]:
    camera = config.stream("camera/front")
    return (
        Publisher(config.endpoint(camera.endpoint, run_dir), camera.name, camera.modality),
        Publisher(
            config.endpoint(config.output.endpoint, run_dir), RESULT_STREAM, RESULT_MODALITY, role=Role.RESULT
        ),
    )


def _poll_until_shown(live: LiveView, timeout_s: float = 5.0) -> tuple[int, float]:
    """(messages shown by the first pass that showed any, seconds it took)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        shown = live.poll(20)
        if shown:
            return shown, time.monotonic() - start
    return 0, timeout_s


def test_paced_by_the_results(run_dir: Path, tmp_path: Path) -> None:
    config = load_config(None)
    camera, results = _drivers(config, run_dir)
    sources, pace = open_sources(lambda urls, **options: Subscriber(urls, **options), config, run_dir)
    assert pace is sources[1]  # the results' socket, beside the drivers'
    views = Views(config, ViewSettings(save=tmp_path / "live.rrd"))
    try:
        time.sleep(0.3)  # slow joiner: let the subscriptions reach the publishers
        image = np.zeros(CAMERA_SHAPE, np.uint8)

        # A frame alone waits for the result that ends the pipeline's work on its capture.
        live = LiveView(sources, views, pace=pace, max_wait_s=30.0)
        camera.publish(STAMP, {"image": image})
        assert [live.poll(50) for _ in range(5)] == [0] * 5
        results.publish(STAMP, RESULT, meta=RESULT_META)
        assert _poll_until_shown(live)[0] == 2  # the frame and the result, in one pass
        assert live.counters()["camera/front.shown"] == 1

        # No result within max_wait_s: the frame is shown anyway.
        live = LiveView(sources, views, pace=pace, max_wait_s=0.3)
        camera.publish(STAMP + 100_000_000, {"image": image})
        shown, took = _poll_until_shown(live)
        assert shown == 1 and 0.25 <= took < 5.0

        # Unpaced, a frame is shown as soon as it arrives.
        live = LiveView(sources, views)
        camera.publish(STAMP + 200_000_000, {"image": image})
        shown, took = _poll_until_shown(live)
        assert shown == 1 and took < 0.25
    finally:
        views.close()
        for socket in (*sources, camera, results):
            socket.close()
