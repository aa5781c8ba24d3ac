"""Synchronizer node: the ingest streams in, one set message per aligned set out.

    python -m fusion_pipeline.nodes.synchronizer --config PATH --run-dir DIR [--replay]

Receives every ingest sample in order (lossless recv: the synchronizer must see each stream's
messages in sequence, so it never drains to the newest), hands it to fusion_pipeline.sync.stage.SyncStage
and publishes the set messages it returns on the sync endpoint (docs/PROTOCOL.md section 8).

Live mode (default): the loop also ticks the stage with the wall clock, waking exactly when the next
deadline is due, so a silent optional sensor delays a set by max_wait at most; it ticks only once the
messages already waiting are in, so a deadline never passes over samples queued in its socket. With
--replay it never reads the clock for matching: deadlines pass only as other streams' stamps advance,
the messages are taken in the replayer's send order (fusion_pipeline.sync.reorder: the ingest nodes run
in parallel) and sets are published lossless, so a replayed log yields the same sets at any speed. The
replayer's
end-of-replay message (on fusion_pipeline.sync.reorder.end_endpoint, in send order after the last
message) flushes the stage: the sets still open are published with completed_by "end", so the last
reference message of a log is not left waiting for a message that never comes.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from fusion_pipeline.inference import load_bindings
from fusion_pipeline.node import POLL_MS, Node, run_node, stream_hwm
from fusion_pipeline.ops import percentiles
from fusion_pipeline.protocol import SET_MODALITY, SET_STREAM, SYNC_EMIT, SYNC_IN
from fusion_pipeline.sync import END_STREAM, SKIP_STREAM, ReplayOrder, SyncStage, end_endpoint
from fusion_pipeline.transport import Role, Sample

log = logging.getLogger("fusion_pipeline.nodes.synchronizer")

LATENCY_WINDOW = 1000  # sets behind the added_ms_* heartbeat figures
INPUT_HWM = 64  # per ingest connection: ~2 s of a discrete stream if this loop stalls


class AddedLatency:
    """From the arrival of the message that completed a set (sync_in) to the set sent on, over the last
    LATENCY_WINDOW sets a message completed (not a deadline, not the end): the `added_ms_*` heartbeat
    figures, of this node and of the composed node's synchronizer part. The set itself can only carry
    stamps taken before its send (sync_in, sync_emit)."""

    def __init__(self) -> None:
        self._ns: deque[int] = deque(maxlen=LATENCY_WINDOW)

    def add(self, fused: Sample, sent_ns: int) -> None:
        if fused.meta["completed_by"] not in ("deadline", "end"):
            self._ns.append(sent_ns - fused.meta["stages"][SYNC_IN])

    def counters(self) -> dict[str, float]:
        return {f"added_ms_{k}": v for k, v in percentiles(self._ns).items() if k != "n"}


def main(argv: list[str] | None = None) -> int:
    with Node("synchronizer", argv, realtime=True) as node:
        config = node.config
        # A config the model cannot take ends the node (run_node): ContractError from the bindings.
        stage = SyncStage(config, load_bindings(config))
        order: ReplayOrder[Sample] = ReplayOrder()
        inputs = [config.ingest_endpoint(s.name, node.run_dir) for s in config.streams]
        topics = [s.name for s in config.streams]
        if node.replay:
            inputs.append(end_endpoint(node.run_dir))
            topics += [END_STREAM, SKIP_STREAM]
        # One receive HWM for every connection: the largest continuous stream's queue (1 s at its rate).
        hwm = max([INPUT_HWM, *(stream_hwm(s) or 0 for s in config.streams)])
        source = node.subscriber(inputs, topics, hwm=hwm)
        if not node.replay:  # a replay takes its input in send order: a refused one is a hole there
            source.on_refused = stage.refused_at_socket
        sink = node.publisher(node.endpoint(config.sync.endpoint), SET_STREAM, SET_MODALITY, role=Role.SET)
        added = AddedLatency()
        log.info(
            "%s mode, reference %s, %s time -> %s",
            config.sync.mode,
            config.sync.reference,
            "event" if node.replay else "live",
            sink.last_endpoint,
        )

        def publish(sets: list[Sample]) -> None:
            for message in sets:
                message.meta["stages"][SYNC_EMIT] = time.time_ns()
                # The tensors ingest sent are passed on as the frames they came in, never copied
                # (transport.received_frame); the rest (the log-mel) is copied, not zero-copy: pyzmq
                # frees zero-copy buffers from its garbage-collector thread, and each GIL hand-off to it
                # costs a scheduler slice (ms) on a busy machine. With pipeline.shm the large arrays go
                # to shared memory instead.
                sink.send(message, zero_copy=False)
                added.add(message, time.time_ns())

        def counters() -> dict[str, float]:
            return {
                **source.counters(),
                **(order.counters.as_dict() if node.replay else {}),
                **stage.counters(),
                **added.counters(),
            }

        for _ in node.loop(counters):
            if node.replay:
                received = source.recv(timeout_ms=POLL_MS)
                now = time.time_ns()
                # In send order; a hole is given up after its timeout even while later messages arrive.
                arrived = order.expire(now)
                if received is not None:
                    arrived += order.push(received.meta.get("replay_seq"), received, now)
                for sample in arrived:
                    if sample.stream == END_STREAM:
                        publish(stage.flush(now))
                    elif sample.stream == SKIP_STREAM:  # a message ingest refused: its place, passed over
                        order.counters.replay_skipped += 1
                    else:
                        publish(stage.add(sample, now))
            else:
                # Everything already waiting goes in before the clock's deadlines pass: behind on a 1 kHz
                # stream, a tick between its queued samples would close sets they belong to. At most
                # POLL_MS of input per pass, so the node still beats and sees a stop.
                received = source.recv(timeout_ms=stage.wait_ms(time.time_ns(), POLL_MS))
                pass_end = time.monotonic() + POLL_MS / 1000
                while received is not None:
                    publish(stage.add(received, time.time_ns()))
                    received = source.recv(timeout_ms=0) if time.monotonic() < pass_end else None
                publish(stage.tick(time.time_ns()))
    return 0


if __name__ == "__main__":
    run_node(main)
