"""`run` and a node refuse key files others can read before they start anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
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
