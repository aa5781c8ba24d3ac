"""Helpers for tests that run nodes as real processes: start/stop them, read their heartbeats.

Everything started here is stopped by the same helper (by its own Popen handle, never by name).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import zmq
from paths import ROOT

from fusion_pipeline.contract import default_contract
from fusion_pipeline.node import CONTROL_SOCKET, node_command

STREAMS_TOML = {
    "camera": 'name = "camera/front"\nmodality = "camera"\nrate_hz = 30\n',
    "lidar": 'name = "lidar/top"\nmodality = "lidar"\nrate_hz = 10\nrequired = true\n',
    "radar": 'name = "radar/front"\nmodality = "radar"\nrate_hz = 20\n',
    "audio": 'name = "audio/roof"\nmodality = "audio"\nrate_hz = 50\nsample_rate = 16000\n',
}


def write_config(
    path: Path, modalities: list[str], extra: dict[str, str] | None = None, sync: str = "", model: str = ""
) -> Path:
    """A config with the demo's streams of `modalities`; `extra` adds TOML lines to a modality's stream,
    `sync` and `model` to those sections. The default model's inputs of the other modalities are
    listed in model.unbound_inputs (always absent), so that every node accepts the config."""
    text = "[pipeline]\nheartbeat_ms = 100\n\n"
    for modality in modalities:
        text += f"[[streams]]\n{STREAMS_TOML[modality]}"
        text += f'endpoint = "ipc://{{run_dir}}/sensor-{modality}.sock"\n'
        text += (extra or {}).get(modality, "") + "\n"
    reference = 'reference = "lidar/top"' if "lidar" in modalities else 'mode = "approximate"'
    text += f"[sync]\n{reference}\n{sync}\n\n"
    unbound = [s.name for s in default_contract().inputs if s.modality not in modalities]
    text += f"[model]\nunbound_inputs = {json.dumps(unbound)}\n{model}\n"
    path.write_text(text)
    return path


def start_node(kind: str, config: Path, run_dir: Path, *args: str) -> subprocess.Popen:
    """`python -m fusion_pipeline.nodes.KIND --config CONFIG --run-dir RUN_DIR ARGS`; its log goes to
    RUN_DIR/KIND*.log."""
    log = (run_dir / f"{kind}{'-'.join(a.replace('/', '_') for a in args)}.log").open("w")
    return subprocess.Popen(
        [
            *node_command(kind),
            "--config",
            str(config),
            "--run-dir",
            str(run_dir),
            *args,
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def start_script(script: str, *args: str) -> subprocess.Popen:
    """`python SCRIPT ARGS`, SCRIPT a path from the repository's root (tools/pose_ingest.py)."""
    return subprocess.Popen([sys.executable, str(ROOT / script), *args], cwd=ROOT)


@contextmanager
def running(*processes: subprocess.Popen) -> Iterator[None]:
    """Stop the given processes on exit: SIGTERM, then SIGKILL if one is still there after 5 s."""
    try:
        yield
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in processes:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Control:
    """The supervisor's side of heartbeats: a PULL bound on RUN_DIR/control.sock."""

    def __init__(self, run_dir: Path) -> None:
        self._context = zmq.Context()
        self.socket = self._context.socket(zmq.PULL)
        self.socket.linger = 0
        self.socket.bind(f"ipc://{run_dir}/{CONTROL_SOCKET}")
        self.latest: dict[str, dict[str, Any]] = {}

    def poll(self, timeout_ms: int = 0) -> None:
        while self.socket.poll(timeout_ms):
            beat = msgpack.unpackb(self.socket.recv())
            self.latest[beat["node"]] = beat["counters"]
            timeout_ms = 0

    def wait_for(self, node: str, ready: Callable[[dict[str, Any]], bool], timeout_s: float = 5.0) -> dict:
        """The first counters of `node` that satisfy `ready`; fails with the last counters seen."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll(50)
            counters = self.latest.get(node)
            if counters is not None and ready(counters):
                return counters
        raise AssertionError(f"{node}: counters never got there; last: {self.latest.get(node)}")

    def close(self) -> None:
        self.socket.close()
        self._context.term()
