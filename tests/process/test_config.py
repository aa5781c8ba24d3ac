"""Config as processes see it: loading a config loads no sockets, and `run` refuses ipc paths too long for
its run dir before it starts anything."""

import os
import subprocess
import sys
from pathlib import Path

from pipeline_harness import demo_text


def test_config_sits_below_the_transport() -> None:
    # config is the bottom layer (docs/ARCHITECTURE.md): loading a config loads no sockets.
    code = (
        "import sys, fusion_pipeline.config; print(sorted(m for m in sys.modules"
        " if m.split('.')[0] == 'zmq' or m.startswith('fusion_pipeline.transport')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_run_refuses_ipc_paths_too_long_for_its_run_dir_and_leaves_nothing_behind(
    tmp_path: Path, run_cli
) -> None:
    fixed = tmp_path / ("r" * (99 - len(str(tmp_path))))  # 100 bytes: no socket name fits after it
    config = tmp_path / "long.toml"
    config.write_text(demo_text(fixed))
    done = run_cli("run", "-c", str(config), "--duration", "5")
    assert done.returncode == 2, done.stderr
    assert f"{config}: invalid config for run dir {fixed}:" in done.stderr
    assert f"streams[0].endpoint: ipc path '{fixed}/sensor-camera_front.sock' is 125 bytes" in done.stderr
    assert "shorten these endpoints or pipeline.run_dir" in done.stderr
    assert "Traceback" not in done.stderr and not fixed.exists()
    # A temp run dir (run_dir = "") under a deep TMPDIR: refused too, and the temp dir removed again.
    deep = tmp_path / ("t" * (90 - len(str(tmp_path))))
    deep.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "fusion_pipeline.cli", "run", "--duration", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TMPDIR": str(deep)},
    )
    assert done.returncode == 2, done.stderr
    assert "the 107-byte limit of a socket address (sun_path)" in done.stderr
    assert "Traceback" not in done.stderr and not list(deep.glob("fusion-*"))
