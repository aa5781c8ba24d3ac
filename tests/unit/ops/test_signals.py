"""The supervisor signals a node's process group: what a node started (the viewer's rerun server)
ends with it, whatever signal ends the node."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from fusion_pipeline.ops.supervisor import _node_preexec, _signal_group


def test_a_node_and_its_child_both_end() -> None:
    # The "node" starts a child that ignores nothing and would outlive its parent, then prints its pid.
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    node = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, preexec_fn=_node_preexec())
    assert node.stdout is not None
    child = int(node.stdout.readline())
    assert os.getpgid(node.pid) == node.pid == os.getpgid(child)
    _signal_group(node, signal.SIGKILL)
    node.wait(timeout=5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)
    _signal_group(node, signal.SIGTERM)  # a group that is gone is no error


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie of init's does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
