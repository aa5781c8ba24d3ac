"""`echo`, `hz`, `topics` read frames from a driver that follows docs/PROTOCOL.md alone."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from paths import SUPPORT

from fusion_pipeline.cli.commands import build_parser


@pytest.fixture
def protocol_driver(ipc_dir: Path):
    url = f"ipc://{ipc_dir}/radar.sock"
    child = subprocess.Popen([sys.executable, str(SUPPORT / "protocol_publisher.py"), url, "400", "50"])
    yield url
    child.kill()
    child.wait()


def test_echo_json_reads_a_protocol_only_driver(protocol_driver: str, run_cli) -> None:
    done = run_cli("echo", protocol_driver, "--count", "3", "--json", "--timeout", "10")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 3
    first = lines[0]
    assert (
        first["stream"] == "radar/front"
        and first["modality"] == "radar"
        and first["frame_id"] == "radar_front"
    )
    detections = first["arrays"]["detections"]
    assert detections["dtype"] == "<f4" and detections["shape"] == [3, 5]
    assert detections["min"] == -3.0 and detections["max"] == 20.0 + max(0, first["seq"] - 10)
    # A small array is shown in full, in C order, exactly as the protocol-only driver wrote it.
    written = [10.0 + first["seq"], 0.5, 0.2, -3.0, 12.0, 20.0, -1.0, 0.1, 0.0, 5.0, 5.0, 2.0, 0.0, 1.5, -2.0]
    assert np.array_equal(np.float32(detections["values"]), np.float32(written))
    assert [line["seq"] for line in lines] == list(range(first["seq"], first["seq"] + 3))


def test_echo_text_filters_by_stream_prefix(protocol_driver: str, run_cli) -> None:
    done = run_cli("echo", protocol_driver, "--stream", "radar", "--count", "1", "--timeout", "10")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("radar/front [radar] seq=")
    assert (
        " 0.5 0.2 -3 12 20 -1 0.1 0 5 5 2 0 1.5 -2]" in done.stdout and "detections:<f4[3x5] [" in done.stdout
    )
    other = run_cli("echo", protocol_driver, "--stream", "camera", "--count", "1", "--timeout", "1")
    assert other.returncode == 1 and "from streams 'camera'* within 1 s" in other.stderr


def test_hz_reports_rate_and_bandwidth(protocol_driver: str, run_cli) -> None:
    done = run_cli("hz", protocol_driver, "--duration", "2.5", "--window", "50")
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("radar/front: rate ")
    rate = float(last.split("rate ")[1].split(" Hz")[0])
    assert 30 < rate < 60  # published at 50 Hz, give a noisy 2-core machine room
    assert "Mbit/s" in last


def test_topics_lists_streams(protocol_driver: str, run_cli) -> None:
    done = run_cli("topics", protocol_driver, "--duration", "1.5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("radar/front  radar  ")


def test_echo_timeout_and_bad_endpoint_exit_non_zero(ipc_dir: Path, run_cli) -> None:
    silent = run_cli("echo", f"ipc://{ipc_dir}/nobody.sock", "--timeout", "0.5")
    assert silent.returncode == 1 and "no message on" in silent.stderr and "within 0.5 s" in silent.stderr
    bad = run_cli("echo", "udp://127.0.0.1:5", "--timeout", "0.5")
    assert bad.returncode == 2 and "scheme must be ipc:// or tcp://" in bad.stderr


def _subcommands(parser):
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, child in action.choices.items():
            yield [name]
            yield from ([name, *rest] for rest in _subcommands(child))


def test_every_subcommand_has_help(run_cli) -> None:
    commands = list(_subcommands(build_parser()))
    assert ["echo"] in commands and ["hz"] in commands and ["topics"] in commands
    for command in commands:
        done = run_cli(*command, "--help")
        assert done.returncode == 0 and "usage: fusion-pipeline" in done.stdout, command


def test_hz_on_a_silent_endpoint_says_so_and_exits_1(ipc_dir: Path, run_cli) -> None:
    done = run_cli("hz", f"ipc://{ipc_dir}/nobody.sock", "--duration", "1.5")
    assert done.returncode == 1 and done.stdout == ""
    assert f"fusion-pipeline hz: no message on ipc://{ipc_dir}/nobody.sock within" in done.stderr


def test_a_reader_that_leaves_the_pipe_ends_echo_quietly(protocol_driver: str) -> None:
    # `fusion-pipeline echo ... | head -1`: no BrokenPipeError traceback, the SIGPIPE exit status.
    echo = subprocess.Popen(
        [sys.executable, "-m", "fusion_pipeline.cli", "echo", protocol_driver, "--timeout", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert echo.stdout is not None and echo.stderr is not None
    assert echo.stdout.readline().startswith(b"radar/front [radar]")
    echo.stdout.close()
    assert echo.wait(timeout=30) == 141
    assert b"Traceback" not in echo.stderr.read()
