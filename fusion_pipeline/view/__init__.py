"""The viewer (extra ``[view]``): the pipeline's sensors, sets and results shown live or from a log in
Rerun (its native or web viewer, or an .rrd file) and on a Foxglove WebSocket, without slowing the
pipeline (docs/VIEW.md).

`Scene` logs messages to a Rerun recording, one entity per view; `DrainTally` decides what a live viewer
that fell behind shows and counts the rest; `LiveView` is the live loop's pass over its sockets, `Views`
every output opened together (and `summary` says what a live view showed); `show_log` shows a recording;
`LoopbackWebViewer` serves rerun's web page on 127.0.0.1 under a policy that keeps it from calling other
hosts, and only to a request for host 127.0.0.1 or localhost. Rerun's usage analytics are
switched off before anything of rerun starts (`disable_analytics`). Rerun and foxglove-sdk are imported by the
modules that need them: importing this face without the extra raises a ViewError that names it.
"""

from __future__ import annotations

from fusion_pipeline.view.analytics import EXTRA_HINT, disable_analytics, rerun_cli
from fusion_pipeline.view.drain import DrainTally, StreamTally
from fusion_pipeline.view.errors import ViewError

try:
    from fusion_pipeline.view.foxglove_live import FoxgloveLive
    from fusion_pipeline.view.live import LiveView, Views, open_sources, summary
    from fusion_pipeline.view.logview import show_log
    from fusion_pipeline.view.scene import RESULT_LOG, Scene, blueprint, project
    from fusion_pipeline.view.sinks import RerunOutput, ViewSettings, free_port
    from fusion_pipeline.view.webserver import LoopbackWebViewer
except ImportError as exc:  # rerun-sdk or foxglove-sdk not installed
    raise ViewError(EXTRA_HINT) from exc

__all__ = [
    "EXTRA_HINT",
    "RESULT_LOG",
    "DrainTally",
    "FoxgloveLive",
    "LiveView",
    "LoopbackWebViewer",
    "RerunOutput",
    "Scene",
    "StreamTally",
    "ViewError",
    "ViewSettings",
    "Views",
    "blueprint",
    "disable_analytics",
    "free_port",
    "open_sources",
    "project",
    "rerun_cli",
    "show_log",
    "summary",
]
