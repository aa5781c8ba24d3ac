"""The ipc probe behind echo, hz and topics: a socket something listens on is no problem, and the probe
neither hangs nor waits for an accept. The commands themselves: tests/process/test_cli_introspect.py."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest
from paths import ROOT
from security import curve_keys, host_config, server_curve

from fusion_pipeline.cli import main
from fusion_pipeline.cli.introspect import _format_line, _ipc_problem, describe_sample
from fusion_pipeline.transport import Publisher, Sample


def test_a_socket_something_listens_on_is_no_problem(ipc_dir: Path) -> None:
    path = ipc_dir / "results.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen()
        started = time.monotonic()
        assert _ipc_problem(f"ipc://{path}") == ""
        assert time.monotonic() - started < 1.0  # the probe neither hangs nor waits for an accept


def test_echo_says_the_server_refused_its_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It only said "no message ... within 4 s", as for a driver that is not running."""
    keys = curve_keys(tmp_path)
    stranger = {"certificate": keys["stranger"][1], "server_key": keys["server"][0]}
    config = tmp_path / "client.toml"
    config.write_text(
        host_config(
            {**stranger, "authorized_keys": keys["authorized"][0]},
            driver="external",
            output="ipc://{run_dir}/results.sock",
        )
    )
    with Publisher("tcp://127.0.0.1:*", "radar/front", "radar", curve=server_curve(keys)) as pub:
        endpoint = pub.last_endpoint
        assert main(["echo", endpoint, "-c", str(config), "--count", "1", "--timeout", "2"]) == 1
        refused = capsys.readouterr().err
        assert main(["echo", endpoint, "--count", "1", "--timeout", "2"]) == 1  # no keys at all
        plain = capsys.readouterr().err
    assert (
        f"no message on {endpoint} within 2 s: {endpoint}: the CURVE server refused this client's key"
        in refused
    )
    assert "-c CONFIG" not in refused
    # libzmq says the mismatch, or the server's close before it (a race): either names the cause
    assert "does not match this socket's (CURVE or none)" in plain
    assert plain.rstrip().endswith("(-c CONFIG connects with that config's CURVE keys)")


def test_the_protocols_worked_example_prints_as_the_protocol_says() -> None:
    """PROTOCOL section 10 showed min/max/mean where echo prints a small array's values."""
    example = Sample(
        "radar/front",
        "radar",
        7,
        1700000000123456789,
        {"detections": np.array([[12.5, -1.0, 0.25, -3.5, 10.0]], np.float32)},
        "radar_front",
    )
    protocol = (ROOT / "docs" / "PROTOCOL.md").read_text()
    assert f"\n{_format_line(describe_sample(example))}\n" in protocol
