import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import commands
import pytest

RunCli = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def run_cli() -> RunCli:
    """Run `fusion-pipeline ARGS` as its own process and return the completed process."""
    return commands.run_cli


@pytest.fixture
def ipc_dir() -> Iterator[Path]:
    # ipc paths must stay under ~100 bytes (sun_path), so use a short temp dir, not pytest's deep one.
    with tempfile.TemporaryDirectory(prefix="fp-") as path:
        yield Path(path)
