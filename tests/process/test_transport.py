"""Transport between real processes: ipc and tcp, lossless back-pressure, a socket that fails to bind."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from paths import SUPPORT

from fusion_pipeline.transport import Subscriber


def _start_publisher(endpoint: str, count: int, *flags: str) -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen(
        [sys.executable, str(SUPPORT / "publish_lidar.py"), endpoint, str(count), *flags],
        stdout=subprocess.PIPE,
        text=True,
    )
    bound = child.stdout.readline().strip()
    assert bound, "publisher did not start"
    return child, bound


@pytest.mark.parametrize("scheme", ["ipc", "tcp", "ipc+shm"])
def test_two_processes_pub_sub(scheme: str, ipc_dir: Path) -> None:
    endpoint = f"ipc://{ipc_dir}/lidar.sock" if scheme.startswith("ipc") else "tcp://127.0.0.1:*"
    child, bound = _start_publisher(endpoint, 30, *(["--shm"] if scheme == "ipc+shm" else []))
    try:
        with Subscriber(bound, topics=["lidar/"], hwm=100) as sub:
            received = []
            while (sample := sub.recv(timeout_ms=5000)) is not None:
                received.append(sample)
                if sample.seq == 29:
                    break
        assert child.wait(10) == 0
    finally:
        child.kill()
    assert received, "nothing received"
    assert [s.seq for s in received] == list(range(received[0].seq, 30))
    for sample in received:
        points = sample.arrays["points"]
        assert points.shape == (20_000, 4) and points.dtype == np.float32
        assert np.all(points == sample.seq) and sample.stamp_ns == 1_000_000_000 + sample.seq * 100_000_000
        assert sample.frame_id == "lidar_top" and not points.flags.writeable


def test_lossless_mode_blocks_instead_of_dropping(ipc_dir: Path) -> None:
    child, bound = _start_publisher(f"ipc://{ipc_dir}/replay.sock", 200, "--lossless")
    try:
        with Subscriber(bound, hwm=2) as sub:
            seqs = []
            while len(seqs) < 200 and (sample := sub.recv(timeout_ms=5000)) is not None:
                seqs.append(sample.seq)
                if len(seqs) % 20 == 0:
                    time.sleep(0.05)  # a slow consumer: a real-time PUB would drop here
        assert child.wait(10) == 0
    finally:
        child.kill()
    assert seqs == list(range(200))


FAILED_BIND = """
import gc
from fusion_pipeline.transport import EndpointError, Publisher
def fail():
    try:
        Publisher("ipc://{shared}/a.sock", "s", "radar")
    except EndpointError as exc:
        trap = [exc]
        trap.append(trap)  # a cycle through the traceback to the half-made socket, as pytest.raises keeps
fail()
gc.collect()
print("collected")
"""


def test_a_socket_that_fails_to_bind_is_closed_not_left_to_the_collector(ipc_dir: Path) -> None:
    """Left open, its context's term() in the garbage collector waited forever (hung the suite once)."""
    shared = ipc_dir / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)  # refused by the bind: others could connect
    done = subprocess.run(
        [sys.executable, "-c", FAILED_BIND.format(shared=shared)], capture_output=True, text=True, timeout=30
    )
    assert done.stdout.strip() == "collected", done.stderr
