"""echo, hz and topics on an ipc endpoint with no socket file say so: ZeroMQ waits silently for a bind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

LISTEN = {"echo": ["--timeout", "0.3"], "hz": ["--duration", "0.3"], "topics": ["--duration", "0.3"]}


@pytest.mark.parametrize("command", sorted(LISTEN))
def test_a_missing_socket_file_is_named(command: str, ipc_dir: Path, run_cli) -> None:
    missing = ipc_dir / "results.sock"
    done = run_cli(command, f"ipc://{missing}", *LISTEN[command])
    assert done.returncode == 1
    # hz says how long it listened (a little more than asked), echo and topics what was asked.
    assert re.search(
        rf"no message on ipc://{missing} within [0-9.]+ s: {missing} does not exist", done.stderr
    )


@pytest.mark.parametrize("command", sorted(LISTEN))
def test_a_missing_run_dir_is_named(command: str, ipc_dir: Path, run_cli) -> None:
    gone = ipc_dir / "fusion-demo-old"  # a run dir removed when its pipeline stopped
    done = run_cli(command, f"ipc://{gone}/results.sock", *LISTEN[command])
    assert done.returncode == 1 and f": {gone} does not exist: no publisher has bound" in done.stderr


def test_a_file_that_is_not_a_socket_is_named(ipc_dir: Path, run_cli) -> None:
    plain = ipc_dir / "results.sock"
    plain.write_text("not a socket")
    done = run_cli("echo", f"ipc://{plain}", "--timeout", "0.3")
    assert done.returncode == 1 and f": {plain} is not a socket file" in done.stderr
