"""The log commands as scripts see them: what they refuse before starting anything (a log cut short, an
empty --start/--end window, a replay that leaves out a stream every set needs) and how `record` finds a
running pipeline without --run-dir. The plan behind the refusals: tests/unit/logs/test_replayer.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from commands import sample_log
from mcap.reader import make_reader
from paths import ROOT

from fusion_pipeline.config import load_config, parse_config
from fusion_pipeline.logs import LogReader
from fusion_pipeline.ops import record_run_dir
from fusion_pipeline.transport import Publisher, Sample

DEMO = (ROOT / "fusion_pipeline" / "configs" / "demo.toml").read_text()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 1 s demo log (many chunks: camera frames) and a copy cut short as a crash leaves it."""
    folder = tmp_path_factory.mktemp("logs")
    whole, cut = folder / "whole.mcap", folder / "cut.mcap"
    sample_log(whole, 1)
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])  # no summary, no footer, half a chunk at the end
    return {"whole": whole, "cut": cut}


def _graph_started(stderr: str) -> bool:
    return "sets full" in stderr  # the graph's end-of-run summary


def test_replay_refuses_a_log_cut_short_before_starting_the_graph(logs: dict[str, Path], run_cli) -> None:
    done = run_cli("replay", str(logs["cut"]), "--max-speed", "--no-progress", timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"error: log cut short: {logs['cut']}: " in done.stderr
    assert "--allow-truncated" in done.stderr and not _graph_started(done.stderr)
    assert done.stderr.count(str(logs["cut"])) == 1  # the reader's warning said it first, in other words


def test_replay_with_allow_truncated_replays_what_the_log_holds(
    logs: dict[str, Path], tmp_path: Path, run_cli
) -> None:
    report = tmp_path / "report.json"
    done = run_cli(
        "replay", str(logs["cut"]), "--max-speed", "--no-progress", "--allow-truncated",
        "--report-json", str(report), timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # Said once as the replay starts and once in its summary (the reader warned at each read through).
    assert done.stderr.count(f"log cut short: {logs['cut']}: ") == 2, done.stderr
    assert "working on the messages before it (--allow-truncated)" in done.stderr
    held = sum(1 for _ in LogReader(logs["cut"]).messages(["lidar/top"]))
    assert 0 < held < 10 and json.loads(report.read_text())["sent"]["lidar/top"] == held


def test_a_replay_that_ends_before_its_sets_gave_results_says_how_many(
    logs: dict[str, Path], tmp_path: Path, run_cli
) -> None:
    """A model slower than the replay's wait for results at the end (seconds a run): the replay ended with
    the results of a few of its sets, said only as "results N for M reference messages"."""
    config = tmp_path / "slow.toml"
    config.write_text(DEMO.replace("[model]\n", "[model]\nslowdown = 3000\n", 1))
    report = tmp_path / "report.json"
    done = run_cli(
        "replay", str(logs["whole"]), "-c", str(config), "--max-speed", "--no-progress",
        "--report-json", str(report), timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    unanswered = json.loads(report.read_text())["unanswered_sets"]
    assert unanswered > 0
    assert f"WARNING: {unanswered} of the " in done.stderr and "gave no result before the" in done.stderr


def test_export_foxglove_refuses_a_log_cut_short_unless_allowed(
    logs: dict[str, Path], tmp_path: Path, run_cli
) -> None:
    out = tmp_path / "view.mcap"
    done = run_cli("export-foxglove", str(logs["cut"]), "-o", str(out))
    assert done.returncode == 2 and f"error: log cut short: {logs['cut']}: " in done.stderr
    assert not out.exists()  # refused before the output was created: a retry is not blocked
    done = run_cli("export-foxglove", str(logs["cut"]), "-o", str(out), "--allow-truncated")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(f"log cut short: {logs['cut']}: ") == 1, done.stderr  # by the export itself
    assert f"{out} holds the messages before it" in done.stderr
    with open(out, "rb") as f:
        assert sum(1 for _ in make_reader(f).iter_messages()) > 0


@pytest.mark.parametrize(
    ("window", "complaint"),
    [
        (["--start", "5"], "--start 5 is beyond the log's end"),
        (["--start", "0.5", "--end", "0.2"], "--start 0.5 is after --end 0.2"),
    ],
)
def test_replay_refuses_a_window_that_holds_nothing(
    window: list[str], complaint: str, logs: dict[str, Path], run_cli
) -> None:
    done = run_cli("replay", str(logs["whole"]), "--max-speed", "--no-progress", *window, timeout=120)
    assert done.returncode == 2 and complaint in done.stderr, done.stderr
    # The span is the replayed streams' first to last message (0.97 s in this log).
    assert "(the replayed streams of the log span 0 to 0.9" in done.stderr
    assert not _graph_started(done.stderr)


def test_replay_refuses_streams_that_leave_out_the_reference(logs: dict[str, Path], run_cli) -> None:
    done = run_cli(
        "replay", str(logs["whole"]), "--max-speed", "--no-progress",
        "--streams", "radar/front", "camera/front", timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert (
        "config stream 'lidar/top' (the reference stream) is not replayed: --streams leaves it out"
        in done.stderr
    )
    assert not _graph_started(done.stderr)


def _radar(seq: int) -> Sample:
    return Sample("radar/front", "radar", seq, 1_000 + seq, {"detections": np.zeros((2, 5), np.float32)})


def _camera(seq: int) -> Sample:
    image = np.full((4, 6, 3), seq, np.uint8)
    return Sample("camera/front", "camera", seq, 1_000 + seq, {"image": image}, meta={"encoding": "rgb8"})


def test_record_finds_the_running_pipeline_as_status_does(
    ipc_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --run-dir, no pipeline.run_dir: the run file the supervisor writes names the run dir. The two
    --streams uses add up (issue 12, item 6): both streams are recorded."""
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    record_run_dir("demo", ipc_dir)  # what a supervisor of the demo config writes at start
    out = tmp_path / "rec.mcap"
    command = [
        sys.executable, "-m", "fusion_pipeline.cli", "record", str(out),
        "--streams", "radar/front", "--streams", "camera/front", "--duration", "4",
    ]  # fmt: skip
    child = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    config = load_config(None)
    try:
        with (
            Publisher(
                config.endpoint(config.stream("radar/front").endpoint, ipc_dir), "radar/front", "radar",
                lossless=True,
            ) as radar,
            Publisher(
                config.endpoint(config.stream("camera/front").endpoint, ipc_dir), "camera/front", "camera",
                lossless=True,
            ) as camera,
        ):  # fmt: skip
            assert radar.wait_for_subscribers(timeout_s=30) and camera.wait_for_subscribers(timeout_s=30)
            for seq in range(10):
                radar.send(_radar(seq))
                camera.send(_camera(seq))
                time.sleep(0.01)
            _, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, stderr
    recorded = [(m.sample.stream, m.sample.seq) for m in LogReader(out)]
    for stream in ("radar/front", "camera/front"):
        assert [seq for name, seq in recorded if name == stream] == list(range(10))


def _short_socket_names(text: str) -> str:
    """`text` with every stream's sockets named in 8 bytes: with the demo's others, 13 at most."""
    for i, slug in enumerate(["camera_front", "lidar_top", "radar_front", "audio_roof"]):
        old = f'endpoint = "ipc://{{run_dir}}/sensor-{slug}.sock"'
        assert old in text
        new = f'endpoint = "ipc://{{run_dir}}/s{i}.sock"\ningest_endpoint = "ipc://{{run_dir}}/i{i}.sock"'
        text = text.replace(old, new)
    return text


def test_replay_refuses_a_run_dir_too_long_for_its_end_socket_before_starting_a_node(
    logs: dict[str, Path], tmp_path: Path, run_cli
) -> None:
    """The graph's own end-of-replay socket is checked with the config's (issue 12, audit item 17): a
    92-byte run dir fits every socket of the config (13-byte names) but not /replay-end.sock (16)."""
    fixed = tmp_path / ("r" * (91 - len(str(tmp_path))))
    assert len(os.fsencode(fixed)) == 92
    text = _short_socket_names(DEMO.replace('run_dir = ""', f'run_dir = "{fixed}"', 1))
    config = tmp_path / "long.toml"
    config.write_text(text)
    parse_config(text)  # valid as a config: only the replay's own socket is too long
    replay = ["replay", str(logs["whole"]), "--max-speed", "--no-progress"]
    done = run_cli(*replay, "-c", str(config), timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"{config}: invalid config for run dir {fixed}:" in done.stderr
    assert (
        f"pipeline.run_dir (the end-of-replay socket): ipc path '{fixed}/replay-end.sock' is 108 bytes, "
        "over the 107-byte limit" in done.stderr
    )
    assert "Traceback" not in done.stderr and not _graph_started(done.stderr)
    assert not fixed.exists()  # no node started, no lock file left
    # A temp run dir (run_dir = ""), /fusion-demo-XXXXXXXX (21 bytes) under TMPDIR: removed again.
    deep = tmp_path / ("t" * (70 - len(str(tmp_path))))
    deep.mkdir()
    config.write_text(_short_socket_names(DEMO))
    done = subprocess.run(
        [sys.executable, "-m", "fusion_pipeline.cli", *replay, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(deep)},
    )
    assert done.returncode == 2, done.stderr
    assert "replay-end.sock' is 108 bytes, over the 107-byte limit" in done.stderr
    assert "Traceback" not in done.stderr and not _graph_started(done.stderr)
    assert not list(deep.glob("fusion-*"))
