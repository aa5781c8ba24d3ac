"""The project's commands as a user runs them, each in its own process: the CLI, and the sample-log tool."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from paths import ROOT


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`fusion-pipeline ARGS`, from the repository root; the completed process, output as text."""
    return subprocess.run(
        [sys.executable, "-m", "fusion_pipeline.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sample_log(out: Path, duration_s: float, config: Path | None = None) -> Path:
    """`tools/make_sample_log.py`: `duration_s` of the simulated sensors of `config` (default: the demo's)
    recorded into `out`, which it returns."""
    command = [sys.executable, "tools/make_sample_log.py", "-o", str(out), "--duration", f"{duration_s:g}"]
    if config is not None:
        command += ["-c", str(config)]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return out
