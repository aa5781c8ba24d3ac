"""echo, hz and topics on an ipc endpoint with a missing or stale socket file say so: ZeroMQ just waits.
Each command runs as its own process."""

from __future__ import annotations

import re
import selectors
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from paths import SUPPORT

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


def _first_stderr_line(child: subprocess.Popen, within: float) -> str:
    """The first line `child` writes to stderr, or '' when it wrote none `within` seconds."""
    with selectors.DefaultSelector() as sel:
        sel.register(child.stderr, selectors.EVENT_READ)
        return child.stderr.readline() if sel.select(within) else ""


# Listening with no end (echo's default) or for long: the problem must not wait for the end to be said.
LISTEN_LONG = {"echo": [], "hz": [], "topics": ["--duration", "60"]}


@pytest.mark.parametrize("command", sorted(LISTEN_LONG))
def test_a_missing_socket_file_is_named_at_once(command: str, ipc_dir: Path) -> None:
    missing = ipc_dir / "results.sock"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fusion_pipeline.cli",
            command,
            f"ipc://{missing}",
            *LISTEN_LONG[command],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _first_stderr_line(child, within=20)  # python start-up on a busy 2-core machine
        assert f"{missing} does not exist: no publisher has bound" in line
        assert child.poll() is None  # still listening: a pipeline started afterwards is picked up
    finally:
        child.kill()
        child.wait()


def test_echo_picks_up_a_publisher_that_binds_after_the_warning(ipc_dir: Path) -> None:
    url = f"ipc://{ipc_dir}/radar.sock"
    echo = subprocess.Popen(
        [sys.executable, "-m", "fusion_pipeline.cli", "echo", url, "--count", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    driver = None
    try:
        assert "does not exist" in _first_stderr_line(echo, within=20)
        driver = subprocess.Popen([sys.executable, str(SUPPORT / "protocol_publisher.py"), url, "400", "50"])
        out, err = echo.communicate(timeout=30)
        assert echo.returncode == 0, err
        assert out.startswith("radar/front [radar] seq=")
    finally:
        for child in (echo, driver):
            if child is not None:
                child.kill()
                child.wait()


def _stale_socket(path: Path) -> None:
    """A socket file with nothing listening: what a killed publisher leaves (it never unlinked it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen()


@pytest.mark.parametrize("command", sorted(LISTEN))
def test_a_stale_socket_file_is_named(command: str, ipc_dir: Path, run_cli) -> None:
    stale = ipc_dir / "results.sock"
    _stale_socket(stale)
    done = run_cli(command, f"ipc://{stale}", *LISTEN[command])
    assert done.returncode == 1
    assert f": {stale}: nothing listens on it (a socket left behind by a process that exited?)" in done.stderr
