"""tools/sched_trace.py: `perf sched timehist` read back, and a data-path wait laid on what held its CPU."""

from __future__ import annotations

import sys

import pytest
from paths import ROOT

sys.path.insert(0, str(ROOT / "tools"))

from sched_trace import blockers, parse_timehist, per_node  # noqa: E402

# perf's own layout: the header, then one line per slice (end time, CPU, task, wait, delay, run in ms).
TIMEHIST = """\
           time    cpu  task name                       wait time  sch delay   run time
                        [tid/pid]                          (msec)     (msec)     (msec)
--------------- ------  ------------------------------  ---------  ---------  ---------
     100.000000 [0000]  <idle>                              0.000      0.000      5.000
     100.003000 [0001]  python[20]                          0.000      0.010      3.000
     100.004000 [0001]  ChunkBatcher::c[31/30]              0.000      0.000      1.000
     100.005000 [0001]  python[10]                          9.000      2.000      1.000
     100.006000 [0000]  ZMQbg/IO/0[11/10]                   1.000      0.200      0.500
"""

ROLES = {10: "ingest:lidar/top", 20: "viewer", 30: "viewer"}


def test_slices_are_read_with_threads_under_their_process() -> None:
    slices = parse_timehist(TIMEHIST)
    assert [(s.comm, s.tid, s.pid) for s in slices] == [
        ("<idle>", 0, 0),
        ("python", 20, 20),
        ("ChunkBatcher::c", 31, 30),
        ("python", 10, 10),
        ("ZMQbg/IO/0", 11, 10),
    ]
    lidar = slices[3]
    assert (lidar.cpu, lidar.delay_ms, lidar.run_ms) == (1, 2.0, 1.0)
    assert lidar.start_s == pytest.approx(100.004)


def test_a_wait_is_blamed_on_what_ran_on_its_cpu_meanwhile() -> None:
    slices = parse_timehist(TIMEHIST)
    # The lidar ingest, woken at 100.002 on CPU 1, ran at 100.004: the viewer's main thread held the CPU
    # for 1 ms of that and its batcher thread for the other; the zmq thread's 0.2 ms is under the bar.
    waits, held = blockers(slices, ROLES, blocked_ms=0.3)
    assert waits == 1
    assert held == pytest.approx({"viewer": 1.0, "viewer (ChunkBatcher::c thread)": 1.0})
    assert blockers(slices, ROLES, blocked_ms=2.0) == (0, {})


def test_per_node_counts_each_process_with_its_threads() -> None:
    rows = per_node(parse_timehist(TIMEHIST), ROLES)
    assert [row.split(" | ")[0] for row in rows] == ["| viewer", "| ingest:lidar/top"]
    assert rows[1].split(" | ")[2] == "2"  # two wake-ups: the main thread's and the zmq thread's
