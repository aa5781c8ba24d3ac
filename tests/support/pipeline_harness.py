"""Helpers for tests that run the real pipeline: configs, the `run` process, its nodes and its results."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psutil

from fusion_pipeline.node import node_kind
from fusion_pipeline.transport import Sample, Subscriber

DEMO_TEXT = resources.files("fusion_pipeline").joinpath("configs", "demo.toml").read_text()


def demo_text(run_dir: Path, edit: Callable[[str], str] | None = None) -> str:
    """The demo config with a fixed run directory (so a test can find its sockets and processes)."""
    text = re.sub(r'^run_dir = ""', f'run_dir = "{run_dir}"', DEMO_TEXT, count=1, flags=re.M)
    assert str(run_dir) in text
    return edit(text) if edit else text


def add_to_stream(text: str, stream: str, line: str) -> str:
    """Insert a TOML line into the [[streams]] table named `stream`."""
    anchor = f'name = "{stream}"\n'
    assert anchor in text
    return text.replace(anchor, anchor + line + "\n", 1)


@dataclass
class Run:
    """A `fusion-pipeline run` process started by a test."""

    process: subprocess.Popen[bytes]
    run_dir: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def node_pids(self, kind: str, stream: str | None = None) -> list[int]:
        """Live node processes of this run (found by their --run-dir argument)."""
        pids = []
        for proc in psutil.process_iter(["pid", "cmdline", "status"]):
            cmd = proc.info["cmdline"] or []
            if proc.info["status"] == psutil.STATUS_ZOMBIE or str(self.run_dir) not in cmd:
                continue
            if node_kind(cmd) == kind and (stream is None or stream in cmd):
                pids.append(proc.info["pid"])
        return pids

    def all_node_pids(self) -> list[int]:
        return [
            p.info["pid"]
            for p in psutil.process_iter(["pid", "cmdline", "status"])
            if p.info["status"] != psutil.STATUS_ZOMBIE and str(self.run_dir) in (p.info["cmdline"] or [])
        ]

    def ipc_files(self) -> list[Path]:
        return sorted(self.run_dir.glob("*.sock")) if self.run_dir.exists() else []

    def results(self) -> Subscriber:
        return Subscriber(f"ipc://{self.run_dir}/results.sock", topics=["result/"], hwm=1000)

    def terminate(self, timeout_s: float, signum: int = signal.SIGTERM) -> tuple[int, float]:
        """Stop the supervisor with `signum`; (exit code, seconds it took)."""
        start = time.monotonic()
        self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout_s)
        return code, time.monotonic() - start


@contextmanager
def pipeline(config_text: Callable[[Path], str], *args: str, workdir: Path) -> Iterator[Run]:
    """Start `fusion-pipeline run -c CONFIG ARGS` (from `workdir`) and always clean up after it."""
    # A short run directory: ipc socket paths are limited to ~107 bytes.
    run_dir = Path(tempfile.mkdtemp(prefix="fp-"))
    config = workdir / "pipeline.toml"
    config.write_text(config_text(run_dir))
    log = workdir / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "fusion_pipeline.cli", "run", "-c", str(config), *args],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    run = Run(process, run_dir, log)
    try:
        yield run
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in run.all_node_pids():
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(run_dir, ignore_errors=True)


def collect(
    subscriber: Subscriber, until: Callable[[list[tuple[float, Sample]]], bool], timeout_s: float
) -> list[tuple[float, Sample]]:
    """Results with their arrival (monotonic), until `until(results)` holds; fails after timeout_s."""
    results: list[tuple[float, Sample]] = []
    deadline = time.monotonic() + timeout_s
    while not until(results):
        assert time.monotonic() < deadline, f"condition not met after {timeout_s} s ({len(results)} results)"
        sample = subscriber.recv(timeout_ms=100)
        if sample is not None:
            results.append((time.monotonic(), sample))
    return results


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, run: Run) -> Any:
    """`condition()`'s first true value, polled every 0.1 s; fails after timeout_s with the run's log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not after {timeout_s} s\n{run.output()[-3000:]}")


def presence(result: Sample) -> list[int]:
    return [int(x) for x in result.arrays["presence"]]


def present(result: Sample, stream: str) -> bool:
    """Whether `stream` was in the result's set: its presence bit, found through meta.streams."""
    return bool(result.arrays["presence"][result.meta["streams"].index(stream)])
