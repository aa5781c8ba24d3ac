"""Recorder node: writes the streams named in the config's [record] section to an MCAP log.

    python -m fusion_pipeline.nodes.recorder --config PATH --run-dir DIR

The supervisor starts it when ``record.enabled = true``. The loop and the file format live in
fusion_pipeline.logs.recorder and fusion_pipeline.logs.writer; this module wires them to the node plumbing.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from fusion_pipeline.logs import Recorder, RecordSettings, unused_path
from fusion_pipeline.node import Node, run_node

log = logging.getLogger("fusion_pipeline.nodes.recorder")


def main(argv: list[str] | None = None) -> int:
    with Node("recorder", argv) as node:
        settings = RecordSettings.from_config(node.config)
        settings = replace(settings, path=unused_path(settings.path, settings.split))
        recorder = Recorder(node.config, node.run_dir, settings)  # it says which file it writes
        node.counters = recorder.counters  # the last beat, at the node's exit, follows the file's close
        try:
            recorder.run(lambda: not node.running, node.beat)
        finally:
            report = recorder.close()
            log.info("%s", report.summary())
    return 1 if report.not_written else 0


if __name__ == "__main__":
    run_node(main)
