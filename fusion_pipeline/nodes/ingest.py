"""Ingest node: one process per stream; raw driver samples in, model-ready samples out.

    python -m fusion_pipeline.nodes.ingest --config PATH --run-dir DIR --stream NAME

Subscribes to the stream's driver endpoint with the stream's receive limits, runs each valid wire
message through fusion_pipeline.ingest.Ingest (stream, stamp, seq and schema checks, offset,
preprocessing) and publishes the result on the stream's ingest endpoint. When it falls behind a
camera, lidar or radar it admits every message it drains and keeps the newest admitted one (the
others counted by reason, the admitted ones passed over as skipped); audio and generic streams it takes
in full, through sockets that queue a second of their messages (node.stream_hwm).
With --replay (a replay graph) it takes every message and its publisher blocks rather than drops.
Malformed and refused messages are counted by reason in the heartbeat, never fatal.

`StreamIngest` is that work on one driver socket, without the output socket: the composed node
(nodes/composed.py) runs one per stream and hands their samples to its sync stage.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from fusion_pipeline.binding import Binding
from fusion_pipeline.config import StreamConfig
from fusion_pipeline.inference import load_bindings
from fusion_pipeline.ingest import Ingest
from fusion_pipeline.node import POLL_MS, Node, run_node, stream_hwm
from fusion_pipeline.protocol import INGEST_OUT
from fusion_pipeline.sync import settings_from_config, skip_marker
from fusion_pipeline.transport import Sample

log = logging.getLogger("fusion_pipeline.nodes.ingest")


class StreamIngest:
    """One stream's ingest on its driver's socket, opened through `node`: receive, check, preprocess,
    count. `binding` is the stream and the model input it feeds, or the config of a generic stream that
    feeds none (Bindings.for_ingest)."""

    def __init__(self, node: Node, binding: Binding | StreamConfig) -> None:
        stream = binding if isinstance(binding, StreamConfig) else binding.stream
        time_jump_ns = settings_from_config(node.config)[0].time_jump_ns  # the synchronizer's
        self.ingest = Ingest(
            binding,
            live=not node.replay,
            time_jump_ns=time_jump_ns,
            resume_from=node.resume_seq.get(stream.name),  # a restarted node: where its predecessor was
        )
        self.driver_url = node.endpoint(stream.endpoint)
        # Whole names: a driver's socket may also carry streams whose names begin with this one's.
        self.source = node.subscriber(
            self.driver_url,
            topics=[stream.name],
            limits=self.ingest.limits,
            hwm=stream_hwm(stream),
            exact=True,
        )
        # Behind on a discrete stream: every drained message is admitted in order (header checks, seq
        # tracking) and the newest admitted one is finished; audio, or a replay: every message in full.
        self.drain_newest = self.ingest.drain_newest and not node.replay
        self.replay = node.replay
        # In a replay, the send indices of messages the socket refused (malformed, over the stream's
        # limits): each becomes a skip marker, as a message the stage refuses does.
        self._refused: deque[int] = deque()
        self.source.on_refused = self._refused_at_socket
        self.published = 0  # model-ready samples handed on
        self._reported: set[str] = set()

    def take(self, timeout_ms: int) -> Sample | None:
        """The next model-ready sample, stamped ingest_out, waiting at most `timeout_ms` for a message;
        None when none came or it was dropped (counted). In a replay a dropped message gives its skip
        marker instead (sync.reorder), so that the synchronizer's replay order does not wait for it."""
        ingest = self.ingest
        if self._refused:
            return skip_marker(self._refused.popleft())
        if self.drain_newest:
            sample = self.source.recv_newest(
                timeout_ms, admit=lambda message: ingest.admit(message, time.time_ns())
            )
            out = None if sample is None else ingest.finish(sample, time.time_ns())
        else:
            sample = self.source.recv(timeout_ms=timeout_ms)
            out = None if sample is None else ingest.process(sample, time.time_ns())
        if len(self._reported) < len(self.source.malformed):
            self._report_new_malformed()
        if out is None:
            replay_seq = None if sample is None or not self.replay else sample.meta.get("replay_seq")
            if type(replay_seq) is int:
                return skip_marker(replay_seq)
            return skip_marker(self._refused.popleft()) if self._refused else None
        out.meta["stages"][INGEST_OUT] = time.time_ns()
        self.published += 1
        return out

    def counters(self) -> dict[str, object]:
        """The socket's and the stream's counters; and, while its driver's handshake fails, how
        (`handshake_failing`: a silent stream's reason in `status`)."""
        failing = "; ".join(self.source.handshake_failing.values())  # its one driver's
        return {
            **self.source.counters(),
            **self.ingest.counters(),
            "published": self.published,
            **({"handshake_failing": failing} if failing else {}),
        }

    def _refused_at_socket(self, header: dict[str, Any]) -> None:
        self.ingest.refused_at_socket(header, time.time_ns())
        meta = header.get("meta")
        replay_seq = meta.get("replay_seq") if isinstance(meta, dict) else None
        if self.replay and type(replay_seq) is int:
            self._refused.append(replay_seq)

    def _report_new_malformed(self) -> None:
        """Log the first message the socket dropped for each reason, as `Ingest` logs the first it
        refuses for each; the counters carry the rest."""
        for reason in self.source.malformed:
            if reason not in self._reported:
                self._reported.add(reason)
                stream = self.ingest.config.name  # the composed node's log prefix does not name it
                log.warning(
                    "dropping a message of %s (malformed_%s, further ones only counted): %s",
                    stream,
                    reason,
                    self.source.last_error,
                )


def main(argv: list[str] | None = None) -> int:
    with Node("ingest", argv, per_stream=True, realtime=True) as node:
        stream = node.stream
        ingest = StreamIngest(node, load_bindings(node.config).for_ingest(stream.name))  # its model input
        sink_url = node.config.ingest_endpoint(stream.name, node.run_dir)
        sink = node.publisher(
            sink_url, stream.name, stream.modality, frame_id=stream.frame_id, hwm=stream_hwm(stream)
        )
        log.info("%s -> %s", ingest.driver_url, sink.last_endpoint)
        for _ in node.loop(ingest.counters):
            out = ingest.take(POLL_MS)
            if out is not None:
                sink.send(out)
    return 0


if __name__ == "__main__":
    run_node(main)
