"""`run` and a node refuse key files others can read before they start anything."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from commands import run_cli
from paths import ROOT
from security import host_config, host_keys


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
    node = [sys.executable, "-m", "nodes.sensor_sim", "--config", str(config), "--run-dir", str(ipc_dir)]
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
    """The supervisor read its own results as a CURVE client of the peer's server key, not this host's:
    every result was lost to it, and the run said `healthy`, results 0. It now reads them on an ipc
    endpoint the results publisher binds beside the tcp one."""
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    config = tmp_path / "host.toml"
    security = {"certificate": site["certificate"], "authorized_keys": site["authorized"]}
    config.write_text(
        host_config(security, stream=f"tcp://127.0.0.1:{ports[0]}", output=f"tcp://127.0.0.1:{ports[1]}")
    )
    summary = tmp_path / "summary.json"
    run = ["run", "-c", str(config), "--duration", "8", "--warmup", "2", "--summary-json", str(summary)]
    # The host's ingest presents the host's key to its own simulated driver: refused before the start
    # while the allow-list lacks it (the pipeline ran deaf to its own sensor).
    done = run_cli(*run, timeout=60)
    assert done.returncode == 2 and "does not hold this host's own public key" in done.stderr, done.stderr
    own = site["certificate"].with_suffix(".key")
    (site["authorized"] / own.name).write_bytes(own.read_bytes())
    done = run_cli(*run, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"results on tcp://127.0.0.1:{ports[1]} (on this host also ipc://" in done.stderr
    report = json.loads(summary.read_text())
    assert report["results"] > 0 and report["result_ratio"] >= 0.9, report["result_ratio_counts"]
