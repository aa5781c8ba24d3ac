"""Metrics and `fusion-pipeline status` against real `fusion-pipeline run` processes (about 15 s each)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from pipeline_harness import DEMO_TEXT, Run, add_to_stream, demo_text, pipeline, wait_for
from prometheus_client.parser import text_string_to_metric_families

from fusion_pipeline.ops import StatusError, query, run_file
from fusion_pipeline.transport import Publisher, Role, Subscriber

ANY_PORT = 'address = "127.0.0.1:0"'
STREAMS = ["camera/front", "lidar/top", "radar/front", "audio/roof"]


def _any_port(text: str) -> str:
    assert 'address = "127.0.0.1:9464"' in text
    return text.replace('address = "127.0.0.1:9464"', ANY_PORT)


def _metrics_url(run: Run) -> str:
    found = wait_for(
        lambda: re.search(r"metrics at (http://\S+)", run.output()), 30, "metrics URL logged", run
    )
    return found.group(1)


def _scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{sample name: {sorted labels: value}}."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _per_stream(scrape: dict[str, Any], name: str) -> dict[str, float]:
    return {dict(labels)["stream"]: value for labels, value in scrape.get(name, {}).items()}


def _healthy(run_dir: Path) -> dict[str, Any] | None:
    with contextlib.suppress(StatusError):
        report = query(run_dir, timeout_s=2.0)
        return None if report["degraded"] else report
    return None


def _status_cli(*args: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "fusion_pipeline.cli", "status", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.returncode, done.stdout + done.stderr


def _status_until(code: int, run: Run, *args: str, timeout_s: float) -> str:
    """Run `fusion-pipeline status ARGS` until it exits with `code`; its output."""

    def attempt() -> str | None:
        got, out = _status_cli(*args)
        return out if got == code else None

    return wait_for(attempt, timeout_s, f"`fusion-pipeline status {' '.join(args)}` exits {code}", run)


def test_metrics_endpoint_serves_every_family_with_growing_counters(tmp_path: Path) -> None:
    with pipeline(lambda d: demo_text(d, _any_port), "--warmup", "0", workdir=tmp_path) as run:
        url = _metrics_url(run)
        wait_for(lambda: _healthy(run.run_dir), 60, "pipeline healthy", run)

        def has_results() -> dict[str, Any] | None:
            scrape = _scrape(url)
            counts = scrape.get("fusion_inference_latency_seconds_count", {})
            return scrape if counts and min(counts.values()) > 0 else None

        first = wait_for(has_results, 30, "latency histogram filled", run)
        time.sleep(2.0)
        second = _scrape(url)

        for name in (
            "fusion_stream_messages_total",
            "fusion_stream_bytes_total",
            "fusion_stream_dropped_total",
            "fusion_stream_seq_gaps_total",
            "fusion_stream_seq_lost_total",
            "fusion_sync_sets_total",
            "fusion_sync_presence_ratio",
            "fusion_inference_latency_seconds_bucket",
            "fusion_inference_skipped_total",
            "fusion_inference_provider_info",
            "fusion_node_up",
            "fusion_node_restarts_total",
            "fusion_pipeline_degraded",
        ):
            assert second.get(name), f"{name} missing from {url}"
        before, after = (_per_stream(s, "fusion_stream_messages_total") for s in (first, second))
        assert sorted(after) == sorted(STREAMS)
        assert all(after[s] > before[s] for s in STREAMS), (before, after)  # non-zero rates
        size_before, size_after = (_per_stream(s, "fusion_stream_bytes_total") for s in (first, second))
        assert all(size_after[s] > size_before[s] for s in STREAMS)
        assert set(_per_stream(second, "fusion_sync_presence_ratio")) == set(STREAMS)
        sets = {dict(k)["kind"]: v for k, v in second["fusion_sync_sets_total"].items()}
        assert sets["full"] > 0
        stages = {dict(k)["stage"] for k in second["fusion_inference_latency_seconds_count"]}
        assert stages == {"model", "end_to_end"}
        (provider,) = second["fusion_inference_provider_info"]
        assert dict(provider)["provider"].endswith("ExecutionProvider")
        up = {dict(k)["node"]: v for k, v in second["fusion_node_up"].items()}
        assert len(up) == 10 and set(up.values()) == {1.0}
        assert second["fusion_pipeline_degraded"][()] == 0.0
        # Every node's process figures: a Python process that decodes messages collects garbage, and the
        # longest pause is a duration, not a count.
        collections = {dict(k)["node"]: v for k, v in second["fusion_node_gc_collections_total"].items()}
        assert set(collections) == set(up) and min(collections.values()) > 0, collections
        pauses = {dict(k)["node"]: v for k, v in second["fusion_node_gc_pause_max_seconds"].items()}
        assert set(pauses) == set(up) and all(0 < v < 1 for v in pauses.values()), pauses
        assert set(dict(k)["node"] for k in second["fusion_node_preempted_total"]) == set(up)


def test_status_reports_a_killed_node_as_degraded_then_recovered(tmp_path: Path) -> None:
    with pipeline(lambda d: demo_text(d, _any_port), workdir=tmp_path) as run:
        url = _metrics_url(run)
        wait_for(lambda: _healthy(run.run_dir), 60, "pipeline healthy", run)
        code, out = _status_cli("--run-dir", str(run.run_dir))
        assert code == 0, out
        assert out.startswith("demo: healthy") and "synchronizer" in out
        before = _scrape(url)

        (old_pid,) = run.node_pids("synchronizer")
        os.kill(old_pid, signal.SIGKILL)

        def degraded() -> list[str]:
            with contextlib.suppress(StatusError):
                reasons = query(run.run_dir, timeout_s=2.0)["reasons"]
                return [r for r in reasons if r.startswith("synchronizer ")]
            return []

        reasons = wait_for(degraded, 10, "synchronizer reported down after kill -9", run)
        assert reasons[0] in ("synchronizer restarting", "synchronizer starting"), reasons
        # Here the restarted node beats within a second of the kill, sooner than the status command can
        # start; hold the new process stopped so that the command sees it down (starting, or hung if it
        # already beat), then let it go.
        new_pid = wait_for(
            lambda: [p for p in run.node_pids("synchronizer") if p != old_pid], 10, "restart", run
        )[0]
        os.kill(new_pid, signal.SIGSTOP)
        try:
            out = _status_until(1, run, "--run-dir", str(run.run_dir), timeout_s=15)
            assert "DEGRADED" in out and "synchronizer" in out.splitlines()[0], out
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(new_pid, signal.SIGCONT)

        out = _status_until(0, run, "--run-dir", str(run.run_dir), "--json", timeout_s=30)
        report = json.loads(out)
        (sync,) = [n for n in report["nodes"] if n["name"] == "synchronizer"]
        assert sync["state"] == "running" and sync["restarts"] >= 1 and sync["pid"] != old_pid
        assert report["degraded"] is False and report["reasons"] == []

        # Counters stay monotonic across the restart; the restart is counted.
        after = _scrape(url)
        for name in ("fusion_stream_messages_total", "fusion_sync_sets_total"):
            assert all(after[name][k] >= v for k, v in before[name].items()), name
        restarts = {dict(k)["node"]: v for k, v in after["fusion_node_restarts_total"].items()}
        assert restarts["synchronizer"] >= 1 and restarts["inference"] == 0


def test_no_metrics_when_disabled_and_status_finds_a_private_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # inherited by the run and status processes
    name = f"status-test-{os.getpid()}"
    config = DEMO_TEXT.replace('name = "demo"', f'name = "{name}"', 1).replace(
        "enabled = true\naddress", "enabled = false\naddress", 1
    )
    assert name in config and "enabled = false" in config
    config_path = tmp_path / "pipeline.toml"  # where the harness writes it
    with pipeline(lambda _: config, workdir=tmp_path) as run:
        recorded = run_file(name)
        wait_for(recorded.exists, 30, f"run dir recorded in {recorded}", run)
        run_dir = Path(recorded.read_text().strip())
        assert run_dir.stat().st_mode & 0o777 == 0o700

        wait_for(lambda: _healthy(run_dir), 60, "pipeline healthy", run)
        code, out = _status_cli("-c", str(config_path))  # finds the run dir through the run file
        assert code == 0 and out.startswith(f"{name}: healthy"), out
        supervisor = psutil.Process(run.process.pid)
        listening = [c for c in supervisor.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        assert listening == [], listening
        assert "metrics at" not in run.output()

        code, _ = run.terminate(timeout_s=10)
        assert code == 0
    assert not recorded.exists(), "the run file outlived its supervisor"
    code, out = _status_cli("-c", str(config_path))
    assert code == 2
    assert f"no supervisor recorded one in {recorded}" in out


@contextlib.contextmanager
def _publishing(
    url: str, stream: str, modality: str, ahead_ns: int = 0, **arrays: np.ndarray
) -> Iterator[None]:
    """An external driver binding `url` and sending `arrays` at 30 Hz in a thread, while in the block,
    stamped `ahead_ns` ahead of the host's clock (a sensor clock running ahead)."""
    stop = threading.Event()

    def drive() -> None:
        driver = Publisher(url, stream=stream, modality=modality)
        try:
            while not stop.wait(1 / 30):
                driver.publish(time.time_ns() + ahead_ns, **arrays)
        finally:
            driver.close()

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def _status_line(run: Run, *parts: str) -> str:
    """The first status line of the run's log holding every one of `parts`."""

    def line() -> str | None:
        found = [x for x in run.output().splitlines() if x.startswith("[status] ")]
        return next((x for x in found if all(p in x for p in parts)), None)

    return wait_for(line, 60, f"a status line with {parts}", run)


def test_a_stream_nobody_publishes_and_plain_tcp_show_in_the_log_status_line_status_and_metrics(
    tmp_path: Path,
) -> None:
    """Items 3, 21, 23: the camera's external driver does not start, then sends frames that ingest drops;
    the results are on plain tcp."""
    with socket.socket() as probe:  # a free port for the results (taken again by the inference node)
        probe.bind(("127.0.0.1", 0))
        results_url = f"tcp://127.0.0.1:{probe.getsockname()[1]}"

    def edit(text: str) -> str:
        text = add_to_stream(_any_port(text), "camera/front", 'driver = "external"')
        assert 'endpoint = "ipc://{run_dir}/results.sock"' in text
        text = text.replace('endpoint = "ipc://{run_dir}/results.sock"', f'endpoint = "{results_url}"', 1)
        return text.replace("insecure = false", "insecure = true", 1)

    with pipeline(lambda d: demo_text(d, edit), workdir=tmp_path) as run:
        camera_url = f"ipc://{run.run_dir}/sensor-camera_front.sock"
        # At start: where the results are (item 23) and a warning naming the plain tcp key (item 3).
        printed = wait_for(
            lambda: re.search(
                r"results on (\S+) \(on this host also (\S+)\): fusion-pipeline echo (\S+)", run.output()
            ),
            30,
            "results",
            run,
        )
        # On tcp for other hosts, and on ipc for this one's own readers (the echo the line suggests).
        local = f"ipc://{run.run_dir}/results-local.sock"
        assert printed.groups() == (results_url, local, local)
        assert f"[supervisor] run dir {run.run_dir};" in run.output()
        assert f"WARNING: output.endpoint {results_url} is plain tcp" in run.output()
        results = Subscriber(results_url, topics=["result/"], role=Role.RESULT)
        try:
            result = wait_for(
                lambda: results.recv(timeout_ms=100), 60, "a result on the printed endpoint", run
            )
        finally:
            results.close()
        assert result.stream == "result/fused"

        # The silent camera (item 21): warned in the log, tagged in the status line, degraded in
        # `status`, counted in the metrics; the other streams are not.
        silent = "stream camera/front silent for "
        warning = wait_for(
            lambda: next((x for x in run.output().splitlines() if f"WARNING: {silent}" in x), None),
            60,
            "silent camera warned",
            run,
        )
        assert f"(expects 30 Hz from its external driver on {camera_url})" in warning
        line = _status_line(run, "SILENT camera/front")
        assert "insecure tcp" in line and "SILENT lidar" not in line
        code, out = _status_cli("--run-dir", str(run.run_dir))
        assert code == 1, out
        assert out.startswith("demo: DEGRADED: ") and silent in out.splitlines()[0], out
        assert f"WARNING: output.endpoint {results_url} is plain tcp" in out
        assert f"results {results_url}" in out
        silent_gauge = _per_stream(_scrape(_metrics_url(run)), "fusion_stream_silent")
        assert silent_gauge == {"camera/front": 1.0, "lidar/top": 0.0, "radar/front": 0.0, "audio/roof": 0.0}

        # Audit of item 21: a driver now publishes frames that ingest drops (4x4: too small to
        # preprocess). They arrive, so the warning, the tag and `status` say so, and why they are dropped.
        with _publishing(camera_url, "camera/front", "camera", image=np.zeros((4, 4, 3), np.uint8)):
            dropped = "received, all dropped (reason: schema_preprocess)"
            warning = wait_for(
                lambda: next((x for x in run.output().splitlines() if dropped in x), None),
                30,
                "dropped camera warned",
                run,
            )
            assert f"WARNING: {silent}" in warning
            _status_line(run, "SILENT camera/front (all dropped: schema_preprocess)")
            code, out = _status_cli("--run-dir", str(run.run_dir))
            assert code == 1 and dropped in out.splitlines()[0], out
            silent_gauge = _per_stream(_scrape(_metrics_url(run)), "fusion_stream_silent")
            assert silent_gauge["camera/front"] == 1.0

        # A driver whose clock runs 200 ms ahead: its frames are taken, and `status` names it as the
        # stream whose clock is ahead (the others' too_old drops would only point at it).
        frame = np.zeros((480, 640, 3), np.uint8)
        with _publishing(camera_url, "camera/front", "camera", ahead_ns=200_000_000, image=frame):
            ahead = "WARNING: stream camera/front: stamps up to "

            def warned() -> str | None:
                return next(
                    (x for x in _status_cli("--run-dir", str(run.run_dir))[1].splitlines() if ahead in x),
                    None,
                )

            line = wait_for(warned, 30, "the clock ahead said", run)
            assert float(line.removeprefix(ahead).split()[0]) > 150, line
            lag = {
                (dict(k)["stream"], dict(k)["stat"]): v
                for k, v in _scrape(_metrics_url(run))["fusion_stream_lag_seconds"].items()
            }
            assert lag["camera/front", "min"] < -0.15 and lag["lidar/top", "min"] >= 0, lag
            assert 0 <= lag["lidar/top", "median"] < 1, lag  # the simulated drivers on this host
            # Said in the run's log too (journald), once, not only to whoever asks `status`.
            assert run.output().count(ahead) == 1, run.output()


def test_a_taken_metrics_port_shows_in_the_status_line_and_status(tmp_path: Path) -> None:
    """Item 27: metrics off (port taken) in the status line and `status`; a served port gives its URL."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f'address = "127.0.0.1:{taken.getsockname()[1]}"'
        with pipeline(
            lambda d: demo_text(d, lambda t: _any_port(t).replace(ANY_PORT, address)), workdir=tmp_path
        ) as run:
            _status_line(run, "metrics off (port taken)")
            assert "metrics at" not in run.output()
            code, out = _status_cli("--run-dir", str(run.run_dir))
            assert "metrics off (port taken)" in out, out
            assert "WARNING: metrics off (port taken): cannot serve on 127.0.0.1:" in out


@pytest.mark.parametrize("composition", ["composed", "processes"])
def test_a_model_that_cannot_keep_up_is_degraded_and_said_where_a_slow_sensor_is_not(
    tmp_path: Path, composition: str
) -> None:
    """A model 400 times slower: most reference stamps get no result. Nothing is silent: only the results
    against the reference messages arriving tell it, and the stage that loses them, inference (in a
    composed node too, whose model runs beside its loop: a loop that waited for it passed the
    reference's messages over, and the status blamed ingest). Status, the log and the status line say
    it; a lidar delivering 4 of its 10 Hz, every scan answered, is not behind (the first version
    compared the results with the configured rate)."""

    def slow(text: str) -> str:
        text = _any_port(text).replace("[pipeline]\n", f'[pipeline]\ncomposition = "{composition}"\n', 1)
        return text.replace("[model]\n", "[model]\nslowdown = 400\n", 1)

    with pipeline(lambda d: demo_text(d, slow), "--warmup", "0", workdir=tmp_path) as run:

        def behind() -> list[str]:
            with contextlib.suppress(StatusError):
                return [r for r in query(run.run_dir, timeout_s=2.0)["reasons"] if r.startswith("results ")]
            return []

        (reason,) = wait_for(behind, 60, "results behind the reference said by status", run)
        assert "of the reference lidar/top arriving: inference is not keeping up" in reason
        said = re.compile(r"WARNING: results [0-9.]+/s for [0-9.]+/s of the reference lidar/top arriving")
        wait_for(lambda: said.search(run.output()), 10, "said in the log", run)


def test_a_reference_slower_than_its_rate_with_every_message_answered_is_not_behind(tmp_path: Path) -> None:
    def slow_lidar(text: str) -> str:
        return add_to_stream(_any_port(text), "lidar/top", "sim = { rate_factor = 0.4 }")

    with pipeline(
        lambda d: demo_text(d, slow_lidar), "--warmup", "0", "--duration", "16", workdir=tmp_path
    ) as run:
        wait_for(lambda: _healthy(run.run_dir), 30, "pipeline healthy", run)
        run.process.wait(timeout=60)
    assert "WARNING: results" not in run.output() and "BEHIND" not in run.output()
