"""Viewer node: the sensor streams and results shown in Rerun (and Foxglove) while the pipeline runs.

    python -m nodes.viewer --config PATH --run-dir DIR

The supervisor starts it when ``view.enabled = true``. It runs at a lower CPU priority than the data
path (nice VIEWER_NICENESS) and on real-time sockets, draining them each pass and showing the newest
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

log = logging.getLogger("nodes.viewer")

#: Added to the viewer's nice value: on a loaded host the data path's nodes get the CPU first.
VIEWER_NICENESS = 10


def main(argv: list[str] | None = None) -> int:
    # Here, not at the top: without the [view] extra the ViewError is one log line and exit 2 (run_node).
    from fusion_pipeline.view import LiveView, Views, ViewSettings, open_sources

    with Node("viewer", argv) as node:
        os.nice(VIEWER_NICENESS)
        settings = ViewSettings.from_config(node.config.view)
        if settings.save is not None:
            settings = replace(settings, save=unused_path(settings.save, SplitPolicy()))
        sources = open_sources(node.subscriber, node.config, node.run_dir)
        views = Views(node.config, settings)
        live = LiveView(sources, views)
        try:
            for _ in node.loop(live.counters):
                live.poll(POLL_MS)
        finally:
            saved = views.close()
        log.info("viewer: %s%s", live.counters(), f"; wrote {saved}" if saved else "")
    return 0


if __name__ == "__main__":
    run_node(main)
