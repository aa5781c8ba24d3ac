"""The replay command refuses to write its results over an existing file."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from fusion_pipeline.logs import (
    LogWriter,
)
from fusion_pipeline.transport import Sample


def test_replay_refuses_to_write_results_over_an_existing_file(tmp_path: Path) -> None:
    log, results = tmp_path / "log.mcap", tmp_path / "results.mcap"
    with LogWriter(log) as writer:
        writer.write(Sample("radar/front", "radar", 0, 1, {"detections": np.zeros((1, 5), np.float32)}), 1)
    results.write_bytes(b"yesterday's results")
    command = [
        sys.executable,
        "-m",
        "fusion_pipeline.cli",
        "replay",
        str(log),
        "--results",
        str(results),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"--results {results}: exists already" in done.stderr
    assert results.read_bytes() == b"yesterday's results"
