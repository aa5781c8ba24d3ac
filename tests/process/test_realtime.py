"""`pipeline.realtime_priority`: the data-path nodes run SCHED_FIFO, or say plainly why they cannot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from pipeline_harness import demo_text, pipeline

PRIORITY = 7


def _enter(priority: int) -> tuple[str, str]:
    """Call enter_realtime in a fresh interpreter (never in pytest's own process); (stdout, stderr)."""
    code = (
        "import logging, os\n"
        "from fusion_pipeline.node import enter_realtime\n"
        "logging.basicConfig(level='INFO')\n"
        f"granted = enter_realtime({priority})\n"
        "print(granted, os.sched_getscheduler(0) == os.SCHED_FIFO, os.sched_getparam(0).sched_priority)\n"
    )
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip(), done.stderr


def _fifo_allowed() -> bool:
    out, _ = _enter(1)
    return out.startswith("True")


def test_enter_realtime_gets_fifo_or_warns() -> None:
    out, err = _enter(PRIORITY)
    if out.startswith("True"):
        assert out == f"True True {PRIORITY}"
        assert f"SCHED_FIFO priority {PRIORITY}" in err
    else:  # no CAP_SYS_NICE here: the process keeps the normal scheduler and says so
        assert out == "False False 0"
        assert "SCHED_FIFO refused" in err


def test_refused_priority_keeps_the_normal_scheduler() -> None:
    out, err = _enter(100)  # beyond SCHED_FIFO's range: the kernel refuses it even for root
    assert out == "False False 0"
    assert "pipeline.realtime_priority = 100: SCHED_FIFO refused" in err


def _policy(pid: int) -> int:
    return os.sched_getscheduler(pid)


def test_pipeline_runs_its_data_path_under_fifo(tmp_path: Path) -> None:
    def edit(text: str) -> str:
        return re.sub(r"^realtime_priority = 0", f"realtime_priority = {PRIORITY}", text, count=1, flags=re.M)

    allowed = _fifo_allowed()
    with pipeline(lambda run_dir: demo_text(run_dir, edit), "--duration", "6", workdir=tmp_path) as run:
        # Each data-path node logs its scheduler once it has switched (or been refused).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and run.output().count("SCHED_FIFO") < 6:
            time.sleep(0.2)
        data_path = run.node_pids("ingest") + run.node_pids("synchronizer") + run.node_pids("inference")
        drivers = run.node_pids("sensor_sim")
        assert len(data_path) == 6 and len(drivers) == 4
        want = os.SCHED_FIFO if allowed else os.SCHED_OTHER
        assert [_policy(pid) for pid in data_path] == [want] * 6, run.output()
        # zmq's I/O threads are started after the switch, so they share it
        threads = [int(t) for t in os.listdir(f"/proc/{data_path[0]}/task")]
        assert len(threads) > 1 and all(_policy(t) == want for t in threads)
        assert all(_policy(pid) == os.SCHED_OTHER for pid in drivers)  # the simulated world stays normal
        assert run.process.wait(timeout=60) == 0, run.output()
    if not allowed:
        assert "SCHED_FIFO refused" in run.output()
