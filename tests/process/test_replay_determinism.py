"""Replaying one log through the real graph at --rate 1 and at --max-speed gives bitwise identical results."""

import json
import subprocess
import sys
from pathlib import Path

from commands import sample_log
from paths import ROOT

from fusion_pipeline.logs import LogReader


def _replay(log: Path, out: Path, *pace: str) -> dict:
    report = out.with_suffix(".json")
    done = subprocess.run(
        [sys.executable, "-m", "fusion_pipeline.cli", "replay", str(log), *pace, "--results", str(out)]
        + ["--no-progress", "--report-json", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    # The stamps are the log's: the summary's latency table starts at ingest_in, with no figure that
    # would subtract a log time from today's clock.
    assert "latency ms (a replay: stamps are the log's" in done.stderr
    assert "ingest_in->ingest_out" in done.stderr and "end_to_end" not in done.stderr
    return json.loads(report.read_text())


def _results(path: Path) -> list[tuple]:
    return [
        (
            m.sample.stamp_ns,
            m.sample.meta["stamps"],
            {name: (a.dtype.str, a.shape, a.tobytes()) for name, a in m.sample.arrays.items()},
        )
        for m in LogReader(path)
    ]


def test_rate_1_and_max_speed_give_identical_results(tmp_path: Path) -> None:
    log = tmp_path / "demo.mcap"
    sample_log(log, 1.5)
    lidar = sum(1 for _ in LogReader(log).messages(["lidar/top"]))
    paced = _replay(log, tmp_path / "paced.mcap", "--rate", "1")
    fast = _replay(log, tmp_path / "fast.mcap", "--max-speed")
    for report in (paced, fast):
        assert report["sent"]["lidar/top"] == lidar and report["inference_skipped"] == 0
        assert report["replay_gaps"] == 0  # the synchronizer saw every message, in log order
        # Lossless end to end: no ingest node skipped to a newer message, inference skipped no set.
        assert not any(
            "skipped" in reasons for node, reasons in report["drops"].items() if node.startswith("ingest")
        )
    a, b = _results(tmp_path / "paced.mcap"), _results(tmp_path / "fast.mcap")
    # Every reference message gives a result, the last one too: the end of the replay flushes its set.
    assert len(a) == lidar
    assert a == b  # same sets (stamps, presence) and the same model outputs, to the bit
    # The comparison covers both masks: audio (the last bit in the default model's presence order) is
    # missing until 500 ms of it (the window) have arrived.
    assert {r[2]["presence"][2] for r in a} == {bytes([1, 1, 1, 0]), bytes([1, 1, 1, 1])}
