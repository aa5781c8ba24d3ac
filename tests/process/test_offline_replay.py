"""`replay --offline` against the socket graph's `replay --max-speed`: the same sets and the same results,
bitwise, for the demo log, a log with a dead camera stretch, and a log with camera frames ingest refuses
(CPU).

The socket side runs as a user runs it: the CLI starts the node processes; a `record` process beside them
keeps the sets the synchronizer node publishes. The offline side writes its own sets (OfflineGraph's
`sets`), since the CLI offers only --results."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from commands import run_cli, sample_log
from paths import ROOT
from pipeline_harness import add_to_stream, demo_text

from fusion_pipeline.config import load_config
from fusion_pipeline.logs import LogReader, LogWriter
from fusion_pipeline.offline import OfflineGraph
from fusion_pipeline.transport import Sample

LOG_S = 12
#: The camera sends nothing from 4 s to 6.5 s into the log: 25 sets lose their camera.
CAMERA_OUTAGE = "sim = { outage = { start_s = 4.0, duration_s = 2.5 } }"


#: The camera's socket takes uint8 arrays only.
UINT8_CAMERA = 'limits = { dtypes = ["|u1"] }'


def _refused_frames(log: Path) -> Path:
    """The log with every 7th camera frame too small for the model's input, which the stage refuses
    (schema_preprocess), and every 11th of float32, which the socket refuses (malformed, by UINT8_CAMERA).
    The socket graph's synchronizer waited a second for each in its replay order, and the replay ended
    with results missing, exit 0."""
    edited = log.with_name("refused.mcap")
    images = {3: np.zeros((32, 32, 3), np.uint8), 5: np.zeros((4, 4, 3), np.float32)}
    with LogWriter(edited) as writer:
        for message in LogReader(log):
            sample = message.sample
            kind = 3 if sample.seq % 7 == 3 else 5 if sample.seq % 11 == 5 else None
            if sample.stream == "camera/front" and kind is not None:
                sample = Sample(
                    sample.stream, sample.modality, sample.seq, sample.stamp_ns,
                    {"image": images[kind]}, sample.frame_id, sample.meta,
                )  # fmt: skip
            writer.write(sample, log_time_ns=message.log_time_ns)
    return edited


#: name -> (the camera's config line, what is done to the log)
CASES: dict[str, tuple[str | None, Callable[[Path], Path] | None]] = {
    "demo": (None, None),
    "camera_outage": (CAMERA_OUTAGE, None),
    "refused_frames": (UINT8_CAMERA, _refused_frames),
}


@pytest.fixture(scope="module")
def run_dir() -> Iterator[Path]:
    # A fixed run dir (the recorder must find the sets socket), short enough for ipc paths.
    with tempfile.TemporaryDirectory(prefix="fp-off-") as path:
        yield Path(path) / "run"


@pytest.fixture(scope="module", params=list(CASES))
def case(request: pytest.FixtureRequest, run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The config (the demo's, with the case's camera line) and a LOG_S log its simulated sensors make."""
    folder = tmp_path_factory.mktemp(request.param)
    line, edit = CASES[request.param]
    config = folder / "config.toml"
    config.write_text(
        demo_text(run_dir, None if line is None else lambda t: add_to_stream(t, "camera/front", line))
    )
    log = sample_log(folder / "log.mcap", LOG_S, config)
    return {
        "name": request.param,
        "config": config,
        "log": log if edit is None else edit(log),
        "folder": folder,
    }


def _socket_replay(case: dict, results: Path, sets: Path) -> dict:
    """`replay --max-speed` through the process graph, with a recorder on the synchronizer's sets."""
    config = str(case["config"])
    recorder = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fusion_pipeline.cli",
            "record",
            str(sets),
            "-c",
            config,
            "--streams",
            "set/fused",
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Its subscriber exists once it says so; it connects as soon as the synchronizer node binds,
        # long before the replayer sends the first message (every node's first heartbeat comes first).
        assert recorder.stderr is not None
        for line in recorder.stderr:
            if "recording set/fused" in line:
                break
        report = case["folder"] / "socket.json"
        done = run_cli(
            "replay", str(case["log"]), "-c", config, "--max-speed", "--results", str(results),
            "--no-progress", "--report-json", str(report), timeout=240,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.communicate(timeout=30)
    assert recorder.returncode == 0
    return json.loads(report.read_text())


def _records(path: Path) -> list[Sample]:
    return [m.sample for m in LogReader(path)]


def _key(message: Sample) -> tuple:
    """A set or result to the bit, but for its wall-clock stage stamps."""
    meta = {k: v for k, v in message.meta.items() if k != "stages"}
    arrays = {name: (a.dtype.str, a.shape, a.tobytes()) for name, a in message.arrays.items()}
    return message.stream, message.seq, message.stamp_ns, message.frame_id, meta, arrays


def test_offline_sets_and_results_equal_the_socket_graphs(case: dict) -> None:
    folder = case["folder"]
    socket = _socket_replay(case, folder / "socket_results.mcap", folder / "socket_sets.mcap")
    done = run_cli(
        "replay", str(case["log"]), "-c", str(case["config"]), "--offline",
        "--results", str(folder / "offline_results.mcap"), "--no-progress",
        "--report-json", str(folder / "offline.json"), timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    offline = json.loads((folder / "offline.json").read_text())
    # The same graph in-process, to keep its sets too (the CLI writes results only).
    graph = OfflineGraph(load_config(case["config"]))
    again = graph.run(case["log"], folder / "library_results.mcap", sets=folder / "offline_sets.mcap")

    lidar = sum(1 for _ in LogReader(case["log"]).messages(["lidar/top"]))
    results = _records(folder / "socket_results.mcap")
    assert len(results) == lidar  # every reference message: a result, in both graphs
    assert [_key(r) for r in _records(folder / "offline_results.mcap")] == [_key(r) for r in results]
    assert [_key(r) for r in _records(folder / "library_results.mcap")] == [_key(r) for r in results]
    sets = _records(folder / "socket_sets.mcap")
    assert len(sets) == lidar
    assert [_key(s) for s in _records(folder / "offline_sets.mcap")] == [_key(s) for s in sets]

    # The same messages in, the same drops by node and reason (the socket graph's from its heartbeats).
    assert offline["sent"] == socket["sent"] and socket["replay_gaps"] == 0
    assert offline["results"] == again.results == socket["results"] == lidar
    assert offline["drops"] == socket["drops"]
    if case["name"] == "refused_frames":
        refused = socket["drops"]["ingest:camera/front"]
        assert refused["schema_preprocess"] > 0 and refused["malformed_dtype_not_allowed"] > 0, refused
        assert (
            socket["replay_skipped"] == refused["schema_preprocess"] + refused["malformed_dtype_not_allowed"]
        )

    camera_missing = sum(1 for r in results if not r.arrays["presence"][0])
    if case["name"] == "camera_outage":
        assert 20 <= camera_missing <= 30, camera_missing  # the dead stretch: partial sets, no stall
        assert socket["drops"]["ingest:camera/front"]["seq_lost"] == 75  # 2.5 s at 30 Hz
    else:
        assert camera_missing == 0


@pytest.fixture(scope="module")
def short_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_log(tmp_path_factory.mktemp("short") / "short.mcap", 2)


def test_offline_refuses_the_options_it_cannot_honour(short_log: Path, tmp_path: Path) -> None:
    done = run_cli("replay", str(short_log), "--offline", "--rate", "2", "--loop")
    assert done.returncode == 2
    assert (
        "error: --offline runs the stages in this process; --rate does not go with it: it runs as fast as "
        "the stages go (--max-speed is implied); --loop does not go with it: it reads the log once"
    ) in done.stderr
    done = run_cli("replay", str(short_log), "--offline", "--publish-only", "--run-dir", str(tmp_path))
    assert done.returncode == 2 and "--publish-only does not go with it" in done.stderr
    assert "--run-dir does not go with it: it starts no graph" in done.stderr
    done = run_cli("replay", str(short_log), "--offline", "--max-speed", "--streams", "radar/front")
    assert done.returncode == 2
    assert "'lidar/top' (the reference stream) is not replayed: --streams leaves it out" in done.stderr


def test_offline_takes_the_window_streams_and_remap(short_log: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = run_cli(
        "replay", str(short_log), "--offline", "--start", "1", "--end", "1.5", "--streams", "lidar/top",
        "camera/front", "--remap", "camera/front=camera/front", "--results", str(tmp_path / "r.mcap"),
        "--no-progress", "--report-json", str(report),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    sent = json.loads(report.read_text())["sent"]
    replayed = [m for m in LogReader(short_log) if m.sample.stream in ("lidar/top", "camera/front")]
    first = replayed[0].log_time_ns  # the window counts from the replayed streams' first message
    window = [m.sample.stream for m in replayed if 1e9 <= m.log_time_ns - first <= 1.5e9]
    assert sent == {stream: window.count(stream) for stream in set(window)}
    assert len(_records(tmp_path / "r.mcap")) == sent["lidar/top"]
