"""Ingest node: one process per stream; raw driver samples in, model-ready samples out.

    python -m nodes.ingest --config PATH --run-dir DIR --stream NAME

Subscribes to the stream's driver endpoint with the stream's receive limits, runs each valid wire
message through fusion_pipeline.ingest.Ingest (stream, stamp, seq and schema checks, offset,
preprocessing) and publishes the result on the stream's ingest endpoint. When it falls behind a
camera, lidar or radar it admits every message it drains and keeps the newest admitted one (the
others counted by reason, the admitted ones passed over as skipped); audio it takes in full.
With --replay (a replay graph) it takes every message and its publisher blocks rather than drops.
Malformed and refused messages are counted by reason in the heartbeat, never fatal.
"""

from __future__ import annotations

import logging
import time

from fusion_pipeline.inference import load_bindings
from fusion_pipeline.ingest import Ingest
from fusion_pipeline.node import POLL_MS, Node, run_node
from fusion_pipeline.protocol import INGEST_OUT
from fusion_pipeline.sync import settings_from_config
from fusion_pipeline.transport import Sample

log = logging.getLogger("nodes.ingest")


def main(argv: list[str] | None = None) -> int:
    with Node("ingest", argv, per_stream=True, realtime=True) as node:
        stream = node.stream
        time_jump_ns = settings_from_config(node.config)[0].time_jump_ns  # the synchronizer's
        binding = load_bindings(node.config).of(stream.name)  # its model input's front end
        ingest = Ingest(binding, live=not node.replay, time_jump_ns=time_jump_ns)
        driver_url = node.endpoint(stream.endpoint)
        source = node.subscriber(driver_url, topics=[stream.name], limits=ingest.limits)
        sink_url = node.config.ingest_endpoint(stream.name, node.run_dir)
        sink = node.publisher(sink_url, stream.name, stream.modality, frame_id=stream.frame_id)
        log.info("%s -> %s", driver_url, sink.last_endpoint)

        # Behind on a discrete stream: every drained message is admitted in order (header checks, seq
        # tracking) and the newest admitted one is finished; audio, or a replay: every message in full.
        def newest() -> Sample | None:
            sample = source.recv_newest(POLL_MS, admit=lambda message: ingest.admit(message, time.time_ns()))
            return None if sample is None else ingest.finish(sample, time.time_ns())

        def every() -> Sample | None:
            sample = source.recv(timeout_ms=POLL_MS)
            return None if sample is None else ingest.process(sample, time.time_ns())

        receive = newest if ingest.drain_newest and not node.replay else every
        published = 0
        reported: set[str] = set()

        def counters() -> dict[str, int]:
            return {**source.counters(), **ingest.counters(), "published": published}

        def report_new_drop_reasons() -> None:
            """Log the first message dropped for each reason; the counters carry the rest."""
            for reason, error in [
                *((f"malformed_{r}", source.last_error) for r in source.malformed),
                *((f"schema_{r}", ingest.last_error) for r in ingest.rejected),
            ]:
                if reason not in reported:
                    reported.add(reason)
                    log.warning("dropping a message (%s, further ones only counted): %s", reason, error)

        for _ in node.loop(counters):
            out = receive()
            if out is not None:
                out.meta["stages"][INGEST_OUT] = time.time_ns()
                sink.send(out)
                published += 1
            if len(reported) < len(source.malformed) + len(ingest.rejected):
                report_new_drop_reasons()
    return 0


if __name__ == "__main__":
    run_node(main)
