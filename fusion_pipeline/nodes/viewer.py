"""Viewer node: the sensor streams and results shown in Rerun (and Foxglove) while the pipeline runs.

    python -m fusion_pipeline.nodes.viewer --config PATH --run-dir DIR

The supervisor starts it when ``view.enabled = true``. It runs under SCHED_IDLE (the kernel gives it a
core only when nothing else wants one; nice VIEWER_NICENESS where that is refused) and on real-time
sockets, draining them each pass and showing the newest
message per sensor (fusion_pipeline.view.LiveView), so a viewer that falls behind skips, counted in its
heartbeats and in the recording, and never slows the pipeline. The views and outputs are
fusion_pipeline.view's; ``view.save`` is never written over (NAME-1.rrd, NAME-2.rrd, ...).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

from fusion_pipeline.logs import SplitPolicy, unused_path
from fusion_pipeline.node import POLL_MS, Node, run_node

log = logging.getLogger("fusion_pipeline.nodes.viewer")

#: Added to the viewer's nice value where SCHED_IDLE is refused.
VIEWER_NICENESS = 10


def enter_idle() -> None:
    """Put every thread of this process so far, and so every thread it starts later, under SCHED_IDLE:
    a data-path node that wakes preempts the viewer at once, on a loaded host the viewer falls behind
    (and skips, counted) instead of the pipeline. Needs no privilege; where refused, nice the process."""
    try:
        for thread in sorted(int(tid) for tid in os.listdir("/proc/self/task")):
            os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError) as exc:  # AttributeError: no SCHED_IDLE off Linux
        log.info("SCHED_IDLE refused (%s); nice +%d instead", exc, VIEWER_NICENESS)
        os.nice(VIEWER_NICENESS)


def main(argv: list[str] | None = None) -> int:
    # Here, not at the top: without the [view] extra the ViewError is one log line and exit 2 (run_node).
    from fusion_pipeline.view import LiveView, Views, ViewSettings, open_sources, summary

    enter_idle()
    with Node("viewer", argv) as node:
        settings = ViewSettings.from_config(node.config.view)
        if settings.save is not None:
            settings = replace(settings, save=unused_path(settings.save, SplitPolicy()))
        sources = open_sources(node.subscriber, node.config, node.run_dir)
        views = Views(node.config, settings)
        for line in views.served():
            log.info("%s", line)
        live = LiveView(sources, views)
        try:
            for _ in node.loop(live.counters):
                live.poll(POLL_MS)
        finally:
            saved = views.close()
        log.info("%s%s", summary(live.counters(), "; "), f"; wrote {saved}" if saved else "")
    return 0


if __name__ == "__main__":
    run_node(main)
