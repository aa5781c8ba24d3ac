import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

RunCli = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def run_cli() -> RunCli:
    """Run `fusion-pipeline ARGS` as its own process and return the completed process."""

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "fusion_pipeline.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def ipc_dir() -> Iterator[Path]:
    # ipc paths must stay under ~100 bytes (sun_path), so use a short temp dir, not pytest's deep one.
    with tempfile.TemporaryDirectory(prefix="fp-") as path:
        yield Path(path)
