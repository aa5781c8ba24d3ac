"""Fault injection: a sensor sending at 5x its configured rate must not make any node's memory grow.

The one long test of the fault suite (about 75 s: start-up, a few seconds of warm-up, 60 s sampled).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
from pipeline_harness import add_to_stream, collect, demo_text, pipeline, present

from fusion_pipeline.node import node_kind

FACTOR = 5
WARMUP_S = 5.0
SAMPLED_S = 60.0
EVERY_S = 2.0
LAST = 5  # samples that make "the end of the run"


def _fast_radar(run_dir: Path) -> str:
    return demo_text(
        run_dir, lambda t: add_to_stream(t, "radar/front", f"sim = {{ rate_factor = {FACTOR} }}")
    )


def _label(pid: int) -> str:
    cmd = psutil.Process(pid).cmdline()
    kind = node_kind(cmd)
    return f"{kind}:{cmd[cmd.index('--stream') + 1]}" if "--stream" in cmd else kind


def test_radar_at_5x_its_rate_keeps_every_node_rss_stable_for_60_s(tmp_path: Path) -> None:
    """The radar driver sends 100 Hz where the config says 20 Hz: its ingest node takes them all, the
    synchronizer's radar queue overflows into counted drops, and every process's resident memory
    after 60 s is within 20 % of what it was after the warm-up."""
    summary_path = tmp_path / "summary.json"
    with pipeline(_fast_radar, "--summary-json", str(summary_path), "--warmup", "0", workdir=tmp_path) as run:
        results = run.results()
        try:
            collect(results, lambda rs: sum(present(r, "radar/front") for _, r in rs) >= 5, timeout_s=60)
            time.sleep(WARMUP_S)
            processes = {pid: psutil.Process(pid) for pid in run.all_node_pids()}
            labels = {pid: _label(pid) for pid in processes}
            assert len(processes) == 10, labels
            rss: dict[int, list[int]] = {pid: [] for pid in processes}
            received: list[float] = []
            end = time.monotonic() + SAMPLED_S
            while time.monotonic() < end:
                for pid, process in processes.items():
                    rss[pid].append(process.memory_info().rss)
                pause = time.monotonic() + EVERY_S
                while (left := pause - time.monotonic()) > 0:
                    if results.recv(timeout_ms=int(left * 1000) + 1) is not None:
                        received.append(time.monotonic())
            assert sorted(run.all_node_pids()) == sorted(processes), "a node was restarted"
        finally:
            results.close()
        code, _ = run.terminate(timeout_s=15)
        assert code == 0, run.output()

    mb = {labels[pid]: [round(v / 2**20, 1) for v in (s[0], max(s[-LAST:]))] for pid, s in rss.items()}
    print(f"RSS MB (after warm-up, max of the last {LAST} samples): {mb}")
    grown = {name: (first, last) for name, (first, last) in mb.items() if last > 1.2 * first}
    assert not grown, f"RSS grew more than 20 % in 60 s: {grown}"
    assert received and received[-1] > end - 10, "results stopped coming"

    summary = json.loads(summary_path.read_text())
    counters = summary["counters"]
    radar = counters["sensor_sim:radar/front"]["published"]
    lidar = counters["sensor_sim:lidar/top"]["published"]
    drops = {k: v for k, v in counters["synchronizer"].items() if k.startswith("dropped.radar/front.") and v}
    print(f"published: radar {radar}, lidar {lidar}; synchronizer radar drops {drops}")
    # 5x 20 Hz against the 10 Hz lidar: 10 radar messages per lidar (a little less when a driver is late).
    assert radar >= 0.7 * 2 * FACTOR * lidar
    assert counters["ingest:radar/front"]["published"] >= 0.7 * radar
    assert sum(drops.values()) > 0.5 * radar  # all but the one matched per set
