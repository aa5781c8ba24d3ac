"""Supervisor with real processes: a killed or hung node is restarted, SIGTERM exits clean, a second run
on the same run dir refuses to start."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

from pipeline_harness import DEMO_TEXT, add_to_stream, collect, demo_text, pipeline, presence, present

from fusion_pipeline.config import parse_config
from fusion_pipeline.node import CONTROL_SOCKET
from fusion_pipeline.ops import (
    RestartPolicy,
    lock_run_dir,
)
from fusion_pipeline.transport import Endpoint, prepare_bind


def test_killed_and_hung_nodes_are_restarted_and_sigterm_exits_clean(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    with pipeline(demo_text, "--summary-json", str(summary_path), "--warmup", "0", workdir=tmp_path) as run:
        results = run.results()
        try:
            collect(results, lambda rs: sum(presence(r) == [1, 1, 1, 1] for _, r in rs) >= 3, timeout_s=30)
            time.sleep(0.6)  # a heartbeat (every 500 ms) with the camera's last seq, for the restart
            (old_pid,) = run.node_pids("ingest", "camera/front")
            os.kill(old_pid, signal.SIGKILL)
            killed, killed_ns = time.monotonic(), time.time_ns()

            new_pids: list[int] = []
            while not new_pids and time.monotonic() - killed < 5:
                new_pids = [p for p in run.node_pids("ingest", "camera/front") if p != old_pid]
                time.sleep(0.02)
            restarted, restarted_ns = time.monotonic(), time.time_ns()
            assert new_pids, run.output()
            assert restarted - killed <= 2.0, f"restart took {restarted - killed:.2f} s"

            # Results go on without the camera, then with it again once the new ingest node is up
            # (judged by capture stamps: results queued before the kill may still be in the socket).
            after = collect(
                results,
                lambda rs: any(r.stamp_ns > restarted_ns and presence(r) == [1, 1, 1, 1] for _, r in rs),
                timeout_s=20,
            )
            degraded = [r for _, r in after if r.stamp_ns > killed_ns and not present(r, "camera/front")]
            assert degraded, "no result without the camera while its ingest node was down"
            assert all(present(r, "lidar/top") for r in degraded)  # the required lidar is always there

            # A stall under the kill timeout: said when it hangs and when it beats again, and the sets a
            # full queue dropped meanwhile are counted (nothing said it; the sets went uncounted).
            (inference,) = run.node_pids("inference")
            os.kill(inference, signal.SIGSTOP)
            time.sleep(3.0)
            os.kill(inference, signal.SIGCONT)

            # A hung node (stopped, so silent but alive) is killed after the heartbeat timeout.
            (hung,) = run.node_pids("ingest", "radar/front")
            os.kill(hung, signal.SIGSTOP)
            stopped = time.monotonic()
            while run.node_pids("ingest", "radar/front") in ([hung], []) and time.monotonic() - stopped < 12:
                time.sleep(0.05)
            replaced = time.monotonic() - stopped
            # The timeout counts from the node's last beat, which may precede the SIGSTOP by one period.
            timeout = RestartPolicy().heartbeat_timeout_s
            beat_s = parse_config(DEMO_TEXT).pipeline.heartbeat_ms / 1000
            assert timeout - beat_s <= replaced <= timeout + 2.0, f"hung node replaced after {replaced:.2f} s"
        finally:
            results.close()

        code, took = run.terminate(timeout_s=10)
        output = run.output()
        assert code == 0, output
        assert took <= 5.0, f"shutdown took {took:.2f} s"
        assert run.all_node_pids() == [], "node processes outlived the supervisor"
        assert run.ipc_files() == [], "ipc socket files left behind"

    summary = json.loads(summary_path.read_text())
    assert summary["restarts"]["ingest:camera/front"] == 1
    assert summary["restarts"]["ingest:radar/front"] == 1
    assert summary["restarts_total"] == 2
    assert summary["exit_codes"] == {"ingest:camera/front": [-9], "ingest:radar/front": [-9]}
    assert "ingest:camera/front exited (signal 9)" in output
    assert "ingest:radar/front (pid " in output and "sent no heartbeat" in output
    assert f"WARNING: inference (pid {inference}) hung: no heartbeat for" in output
    assert "inference running again after" in output and summary["restarts"]["inference"] == 0
    assert summary["counters"]["inference"]["sets_lost"] >= 5, summary["counters"]["inference"]
    # Counters of the killed process are kept: the camera ingest total spans both processes.
    camera = summary["counters"]["ingest:camera/front"]
    assert camera["produced"] > 0
    # The frames the driver sent while no ingest listened are lost, and counted so: the restarted node
    # goes on from its predecessor's last seq (it started afresh, and they were counted nowhere).
    assert camera["seq_lost"] >= 5 and camera["seq_gaps"] >= 1, camera
    assert summary["drops"]["ingest:camera/front"]["seq_lost"] == camera["seq_lost"]


def test_sighup_stops_a_run_as_sigterm_does(tmp_path: Path) -> None:
    """The terminal or ssh session a run was started from going away: a clean stop, not a death that
    leaves its sockets and run file behind."""
    with pipeline(demo_text, "--warmup", "0", workdir=tmp_path) as run:
        results = run.results()
        try:
            collect(results, lambda rs: len(rs) >= 1, timeout_s=30)
        finally:
            results.close()
        code, took = run.terminate(timeout_s=10, signum=signal.SIGHUP)
        output = run.output()
        assert code == 0, output
        assert "\nrestarts 0" in output and "\ndrops:" in output  # the summary, whatever its latency
        assert run.all_node_pids() == [] and run.ipc_files() == []


def test_a_second_run_on_the_same_run_dir_refuses_to_start(tmp_path: Path, run_cli) -> None:
    # It would bind over the first run's sockets and take its sensors' data.
    run_dir = tmp_path / "run"
    config = tmp_path / "fixed.toml"
    config.write_text(demo_text(run_dir))
    prepare_bind(Endpoint(f"ipc://{run_dir}/x"))  # the 0700 run dir the first supervisor made
    first = lock_run_dir(run_dir)
    # The first one's control socket and results, serving: the lock, not a served endpoint, is named.
    served = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2)]
    for sock, name in zip(served, (CONTROL_SOCKET, "results.sock"), strict=True):
        sock.bind(str(run_dir / name))
        sock.listen()
    try:
        second = run_cli("run", "-c", str(config), "--duration", "1")
        assert second.returncode == 2, second.stderr
        assert f"pipeline.run_dir: {run_dir} is in use by another" in second.stderr
        assert f"(pid {os.getpid()})" in second.stderr
    finally:
        os.close(first)
        for sock in served:
            sock.close()
    os.close(lock_run_dir(run_dir))  # released with its holder: the next run may have it


def test_a_run_whose_node_keeps_failing_to_start_exits_1(tmp_path: Path, run_cli) -> None:
    """A node that failed again after each restart (here: its port held by another program) ended a run
    with exit 0, the summary's NOT UP line the only sign."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        def held(text: str) -> str:
            text = text.replace("insecure = false", "insecure = true", 1)
            return add_to_stream(text, "radar/front", f'ingest_endpoint = "tcp://127.0.0.1:{port}"')

        config = tmp_path / "held.toml"
        config.write_text(demo_text(tmp_path / "run", held))
        run = run_cli("run", "-c", str(config), "--duration", "12", timeout=120)  # 2 restarts or more
    assert run.returncode == 1, run.stderr
    assert run.stderr.rstrip().endswith(
        "fusion-pipeline run: exit 1: ingest:radar/front failed again after each restart and never came up "
        "(their log lines say why)"
    )
    assert f"cannot bind 'tcp://127.0.0.1:{port}': Address already in use" in run.stderr
