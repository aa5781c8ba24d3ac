"""Runtime as processes: `run` and the inference node refuse a model that does not fit before starting,
and node processes (fusion_pipeline.node.Node: loop, heartbeats, shutdown, exit 2)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import onnxruntime as ort
import pytest
from edited_model import camera_64, camera_64_graph, model_with_contract
from node_harness import Control, running, write_config
from pipeline_harness import DEMO_TEXT

from fusion_pipeline.inference import (
    PROVIDERS,
)
from fusion_pipeline.node import node_command

TRT, CUDA, CPU = PROVIDERS["tensorrt"], PROVIDERS["cuda"], PROVIDERS["cpu"]


def _run(tmp_path: Path, model: str, *command: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "bad.toml"
    config.write_text(DEMO_TEXT.replace('path = ""  ', f'path = "{model}"  ', 1))
    return subprocess.run(
        [sys.executable, *command, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def test_run_refuses_a_mismatched_model_before_starting_anything(tmp_path: Path) -> None:
    path = model_with_contract(tmp_path, camera_64, camera_64_graph)
    done = _run(tmp_path, str(path), "-m", "fusion_pipeline.cli", "run", "--duration", "5")
    assert done.returncode == 2
    assert "inputs.camera.preprocess" in done.stderr and str(path) in done.stderr
    assert "(3, 64, 64)" in done.stderr and "(3, 96, 128)" in done.stderr
    assert "[supervisor]" not in done.stderr  # refused in preflight: no node was started


def test_run_refuses_a_missing_model_naming_the_config_file_and_key(tmp_path: Path) -> None:
    # A relative path is read from the working directory (cwd=tmp_path): the message says where it looked.
    done = _run(tmp_path, "models/nope.onnx", "-m", "fusion_pipeline.cli", "run", "--duration", "5")
    assert done.returncode == 2
    expected = f"{tmp_path / 'bad.toml'}: model.path: {tmp_path / 'models' / 'nope.onnx'}: no such model file"
    assert expected in done.stderr


def test_run_refuses_an_unwritable_summary_path_before_starting(tmp_path: Path) -> None:
    summary = tmp_path / "missing-dir" / "summary.json"
    done = _run(
        tmp_path,
        "",
        "-m",
        "fusion_pipeline.cli",
        "run",
        "--duration",
        "30",
        "--summary-json",
        str(summary),
    )
    assert done.returncode == 2 and "[supervisor]" not in done.stderr
    assert f"--summary-json {summary}: directory {summary.parent} does not exist" in done.stderr


def test_a_node_that_cannot_bind_its_endpoint_exits_2_with_one_line(tmp_path: Path) -> None:
    # An unresolvable host passes the config's syntax check; the driver must say so, not crash with a
    # traceback (the supervisor then restarts it with backoff).
    config = tmp_path / "unresolvable.toml"
    text = DEMO_TEXT.replace("ipc://{run_dir}/sensor-radar_front.sock", "tcp://no-such-host.invalid:5555", 1)
    config.write_text(text.replace("insecure = false", "insecure = true", 1))
    command = ["-m", "fusion_pipeline.nodes.sensor_sim", "--config", str(config), "--run-dir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, *command, "--stream", "radar/front"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "stopped: EndpointError: cannot bind 'tcp://no-such-host.invalid:5555'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_node_given_an_unknown_stream_exits_2_naming_the_streams(tmp_path: Path) -> None:
    command = [
        *node_command("ingest"),
        "--run-dir",
        str(tmp_path),
        "--stream",
        "nope",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no stream 'nope' in the config (streams: ['camera/front', 'lidar/top'" in done.stderr


@pytest.mark.parametrize(
    ("resume", "refused"),
    [
        (["nope=4@5"], "no stream 'nope' in the config"),
        (["camera/front=4"], "'camera/front=4' is not STREAM=SEQ@TIME_NS"),
        (["4@5"], "'4@5' is not STREAM=SEQ@TIME_NS"),
        (["camera/front=4@5", "camera/front=6@7"], "--resume-seq: a stream given twice"),
    ],
    ids=["unknown stream", "malformed", "no stream", "twice"],
)
def test_a_node_refuses_a_resume_seq_it_cannot_use(tmp_path: Path, resume: list[str], refused: str) -> None:
    """The supervisor's hand-over to a restarted node: nothing in it is ignored."""
    command = [
        *node_command("ingest"),
        "--run-dir",
        str(tmp_path),
        "--stream",
        "camera/front",
    ]
    for value in resume:
        command += ["--resume-seq", value]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert refused in done.stderr


def test_inference_node_refuses_a_mismatched_model(tmp_path: Path) -> None:
    path = model_with_contract(tmp_path, camera_64, camera_64_graph)
    done = _run(tmp_path, str(path), "-m", "fusion_pipeline.nodes.inference", "--run-dir", str(tmp_path))
    assert done.returncode == 2
    assert "stopped: ContractError" in done.stderr and "(3, 64, 64)" in done.stderr


def test_inference_node_start_logs_one_provider_line_and_no_onnxruntime_errors(tmp_path: Path) -> None:
    """On a machine without CUDA libraries (or with them), the node asks only for providers whose libraries
    load: onnxruntime prints none of its own load errors, and one line says what runs."""
    config = tmp_path / "demo.toml"
    config.write_text(DEMO_TEXT)
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    log = tmp_path / "inference.log"
    with log.open("w") as out:
        node = subprocess.Popen(
            [
                *node_command("inference"),
                "--config",
                str(config),
                "--run-dir",
                str(run_dir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    provider_line = re.compile(r"(in use|FELL BACK to) (\w+ExecutionProvider)")
    try:
        deadline = time.monotonic() + 60
        while not provider_line.search(log.read_text()) and node.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        node.terminate()
        node.wait(timeout=10)
    lines = log.read_text().splitlines()
    assert [line for line in lines if re.search(r"\[[VIWEF]:onnxruntime:", line)] == [], lines
    (line,) = [line for line in lines if provider_line.search(line)]
    in_use = provider_line.search(line).group(2)  # type: ignore[union-attr]
    assert sum(in_use in other for other in lines) == 1, lines
    if in_use != CUDA and CUDA in ort.get_available_providers():
        assert f"FELL BACK to {in_use}" in line and "CUDAExecutionProvider" in line  # says why


NODE_SCRIPT = """
import sys, time
from fusion_pipeline.node import Node, run_node

def main() -> int:
    with Node("probe", sys.argv[1:]) as node:
        node.publisher(node.endpoint("ipc://{run_dir}/probe.sock"), "probe", "probe")
        passes = 0

        def counters() -> dict:
            return {"passes": passes, "running": node.running}

        for _ in node.loop(counters):
            passes += 1
            time.sleep(0.01)
    return 0

run_node(main)
"""


def test_a_node_loops_beating_until_sigterm_then_sends_its_last_counters_and_closes(tmp_path: Path) -> None:
    config = write_config(tmp_path / "probe.toml", ["lidar"])
    control = Control(tmp_path)
    command = [sys.executable, "-c", NODE_SCRIPT, "--config", str(config), "--run-dir", str(tmp_path)]
    node = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        with running(node):
            control.wait_for("probe", lambda c: c["passes"] > 0, timeout_s=30)
            assert (tmp_path / "probe.sock").exists()
            node.terminate()
            assert node.wait(timeout=10) == 0, node.stderr.read()  # type: ignore[union-attr]
        control.poll(100)
        assert control.latest["probe"]["running"] is False  # the last beat: sent at shutdown, after the stop
        assert control.latest["probe"]["passes"] > 0
        assert not (tmp_path / "probe.sock").exists()  # the publisher was closed, its ipc file removed
    finally:
        control.close()
