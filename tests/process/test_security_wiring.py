"""`run` and a node refuse key files others can read before they start anything."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from commands import run_cli
from paths import ROOT
from security import host_config, host_keys, refusing_driver

from fusion_pipeline.node import node_command
from fusion_pipeline.transport import generate_keys


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    return host_keys(tmp_path)


def test_run_and_nodes_refuse_key_files_before_they_start(
    site: dict[str, Path], tmp_path: Path, ipc_dir: Path
) -> None:
    site["certificate"].chmod(0o640)
    config = tmp_path / "host.toml"
    config.write_text(
        host_config({"certificate": site["certificate"], "authorized_keys": site["authorized"]})
    )
    fix = f"chmod 600 {site['certificate']}"
    node = [
        *node_command("sensor_sim"),
        "--config",
        str(config),
        "--run-dir",
        str(ipc_dir),
    ]
    done = subprocess.run(
        [*node, "--stream", "radar/front"], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert done.returncode == 2 and fix in done.stderr and "Traceback" not in done.stderr, done.stderr
    run = [sys.executable, "-m", "fusion_pipeline.cli", "run", "-c", str(config), "--duration", "5"]
    done = subprocess.run(run, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"{config}: security.certificate:" in done.stderr and fix in done.stderr
    assert "[supervisor]" not in done.stderr  # refused before any node started


def test_results_served_on_curve_tcp_are_counted_by_the_supervisor(
    site: dict[str, Path], tmp_path: Path
) -> None:
    """The supervisor read its own results as a CURVE client of the peer's server key (the vehicle's),
    not this host's: every result was lost to it, and the run said `healthy`, results 0. It now reads
    them on an ipc endpoint the results publisher binds beside the tcp one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    vehicle = generate_keys(tmp_path / "vehicle", "vehicle")[0]  # the peer this host dials
    security = {
        "certificate": site["certificate"],
        "authorized_keys": site["authorized"],
        "server_key": vehicle,
    }
    config = tmp_path / "host.toml"
    config.write_text(
        host_config(security, stream="ipc://{run_dir}/radar.sock", output=f"tcp://127.0.0.1:{port}")
    )
    summary = tmp_path / "summary.json"
    done = run_cli(
        "run", "-c", str(config), "--duration", "8", "--warmup", "2", "--summary-json", str(summary)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"results on tcp://127.0.0.1:{port} (on this host also ipc://" in done.stderr
    report = json.loads(summary.read_text())
    assert report["results"] > 0 and report["result_ratio"] >= 0.9, report["result_ratio_counts"]


def test_an_allow_list_without_the_hosts_own_key_is_refused_for_its_own_tcp_drivers(
    site: dict[str, Path], tmp_path: Path
) -> None:
    """The host's ingest presents the host's key to its own simulated driver on tcp: with an allow-list
    lacking it, the pipeline ran deaf to its own sensor."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "host.toml"
    security = {"certificate": site["certificate"], "authorized_keys": site["authorized"]}
    config.write_text(
        host_config(security, stream=f"tcp://127.0.0.1:{port}", output="ipc://{run_dir}/r.sock")
    )
    done = run_cli("run", "-c", str(config), "--duration", "3", timeout=60)
    assert done.returncode == 2 and "does not hold this host's own public key" in done.stderr, done.stderr


def test_a_driver_that_refuses_the_hosts_key_is_named_as_the_silent_streams_reason(tmp_path: Path) -> None:
    """The driver's allow-list lacks this host's key: the run's log said only that the stream was
    silent; the reason was one line of its ingest node's."""
    config = tmp_path / "host.toml"
    with refusing_driver(tmp_path) as (endpoint, text):
        config.write_text(text)
        done = run_cli("run", "-c", str(config), "--duration", "4", timeout=60)
    said = (
        f"silent for .* s \\(expects 20 Hz from its external driver on {endpoint}\\): "
        "the CURVE server refused this client's key"
    )
    assert re.search(said, done.stderr), done.stderr[-3000:]
    assert "HANDSHAKE FAILING at the stop: radar/front: the CURVE server refused this client's key" in (
        done.stderr
    )
