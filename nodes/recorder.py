"""Recorder node: writes the streams named in the config's [record] section to an MCAP log.

    python -m nodes.recorder --config PATH --run-dir DIR

The supervisor starts it when ``record.enabled = true``. The loop and the file format live in
fusion_pipeline.logs.recorder and fusion_pipeline.logs.writer; this module wires them to the node plumbing.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from fusion_pipeline.logs import Recorder, RecordSettings, unused_path
from fusion_pipeline.node import Heartbeat, node_arguments, run_node, stop_requested

log = logging.getLogger("nodes.recorder")


def main(argv: list[str] | None = None) -> int:
    ctx = node_arguments("recorder", argv)
    settings = RecordSettings.from_config(ctx.config)
    settings = replace(settings, path=unused_path(settings.path, settings.split))
    log.info("recording to %s", settings.path.resolve())
    recorder = Recorder(ctx.config, ctx.run_dir, settings)
    heartbeat = Heartbeat(ctx)
    try:
        recorder.run(stop_requested, heartbeat.beat)
    finally:
        report = recorder.close()
        heartbeat.close(recorder.counters())
        log.info("%s", report.summary())
    return 1 if report.not_written else 0


if __name__ == "__main__":
    run_node(main)
