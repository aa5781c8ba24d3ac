"""The ipc probe behind echo, hz and topics: a socket something listens on is no problem, and the probe
neither hangs nor waits for an accept. The commands themselves: tests/process/test_cli_introspect.py."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from fusion_pipeline.cli.introspect import _ipc_problem


def test_a_socket_something_listens_on_is_no_problem(ipc_dir: Path) -> None:
    path = ipc_dir / "results.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen()
        started = time.monotonic()
        assert _ipc_problem(f"ipc://{path}") == ""
        assert time.monotonic() - started < 1.0  # the probe neither hangs nor waits for an accept
