"""Synchronizer node: the ingest streams in, one set message per aligned set out.

    python -m nodes.synchronizer --config PATH --run-dir DIR [--replay]

Receives every ingest sample in order (lossless recv: the synchronizer must see each stream's
messages in sequence, so it never drains to the newest), drives fusion_pipeline.sync.synchronizer.Synchronizer
and publishes each finished set on the sync endpoint (docs/PROTOCOL.md section 8).

Live mode (default): the loop also ticks the Synchronizer with the wall clock, waking exactly when
the next deadline is due, so a silent optional sensor delays a set by max_wait at most. With
--replay it never reads the clock for matching: deadlines pass only as other streams' stamps advance,
the messages are taken in the replayer's send order (fusion_pipeline.sync.reorder: the ingest nodes run in
parallel) and sets are published lossless, so a replayed log yields the same sets at any speed. The
replayer's end-of-replay message (on fusion_pipeline.sync.reorder.end_endpoint, in send order after the
last message) flushes the Synchronizer: the sets still open are published with completed_by "end",
so the last reference message of a log is not left waiting for a message that never comes.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter, deque

from fusion_pipeline.node import Heartbeat, node_arguments, run_node, shut_down, stop_requested
from fusion_pipeline.ops import percentiles
from fusion_pipeline.sync import (
    END_STREAM,
    SET_MODALITY,
    SET_STREAM,
    FusedSet,
    InputError,
    ReplayOrder,
    SetBuilder,
    SyncError,
    Synchronizer,
    end_endpoint,
    settings_from_config,
)
from fusion_pipeline.transport import Publisher, Role, Sample, Subscriber

log = logging.getLogger("nodes.synchronizer")

POLL_MS = 50  # the longest the loop waits before it checks for a stop request and beats
LATENCY_WINDOW = 1000  # sets behind the added_ms_* heartbeat figures
INPUT_HWM = 64  # per ingest connection: ~2 s of the fastest stream if this loop stalls


def _poll_ms(sync: Synchronizer[Sample], now_ns: int) -> int:
    """Wait until the next deadline (rounded up to whole ms, as zmq polls in ms), at most POLL_MS."""
    deadline = sync.next_deadline_ns()
    if deadline is None:
        return POLL_MS
    return min(POLL_MS, max(0, -((now_ns - deadline) // 1_000_000)))


def main(argv: list[str] | None = None) -> int:
    ctx = node_arguments("synchronizer", argv, realtime=True)
    config = ctx.config
    builder = SetBuilder(config)
    sync: Synchronizer[Sample] = Synchronizer(
        *settings_from_config(config), window_transform=builder.audio_features
    )
    live = not ctx.replay
    order: ReplayOrder[Sample] = ReplayOrder()
    inputs = [config.ingest_endpoint(s.name, ctx.run_dir) for s in config.streams]
    topics = [s.name for s in config.streams]
    if ctx.replay:
        inputs.append(end_endpoint(ctx.run_dir))
        topics.append(END_STREAM)
    source = Subscriber(inputs, topics=topics, hwm=INPUT_HWM, curve=config.curve_for(inputs))
    sets_url = ctx.endpoint(config.sync.endpoint)
    sink = Publisher(
        sets_url,
        stream=SET_STREAM,
        modality=SET_MODALITY,
        role=Role.SET,
        lossless=ctx.replay,
        curve=config.curve_for(sets_url),
        shm=config.pipeline.shm,
    )
    heartbeat = Heartbeat(ctx)
    # Everything allocated so far (modules, config, sockets) lives as long as the process; freezing it
    # keeps a full garbage collection from scanning it in the data path (tens of ms otherwise).
    gc.freeze()
    rejected: Counter[str] = Counter()
    # Arrival of the completing message to the set sent, for the last LATENCY_WINDOW sets a message
    # completed; the set itself can only carry stamps taken before its send (sync_in, sync_emit).
    added_ns: deque[int] = deque(maxlen=LATENCY_WINDOW)
    log.info(
        "%s mode, reference %s, %s time -> %s",
        config.sync.mode,
        config.sync.reference,
        "live" if live else "event",
        sink.last_endpoint,
    )

    def emit(sets: list[FusedSet[Sample]], sync_in_ns: int, completed_by: str) -> None:
        for fused in sets:
            message = builder.build(fused, sync_in_ns, completed_by)
            message.meta["stages"]["sync_emit"] = time.time_ns()
            # Copied, not zero-copy: pyzmq frees zero-copy buffers from its garbage-collector thread,
            # and each GIL hand-off to it costs a scheduler slice (ms) on a busy machine; copying the
            # ~350 KB of a set is cheaper than that tail (tools/bench_sync_node.py). With pipeline.shm
            # the large arrays go to shared memory instead.
            sink.send(message, zero_copy=False)
            if completed_by not in ("deadline", "end"):
                added_ns.append(time.time_ns() - sync_in_ns)

    def counters() -> dict[str, float]:
        return {
            **source.counters(),
            **sync.counters.as_dict(),
            **(order.counters.as_dict() if ctx.replay else {}),
            **{f"rejected_{reason}": n for reason, n in sorted(rejected.items())},
            "sets_published": builder.built,
            **{f"added_ms_{k}": v for k, v in percentiles(added_ns).items() if k != "n"},
        }

    next_beat_ns = 0
    try:
        while not stop_requested():
            received = source.recv(timeout_ms=_poll_ms(sync, time.time_ns()) if live else POLL_MS)
            now = time.time_ns()
            if live:
                arrived = [] if received is None else [received]
            else:
                # In send order; a hole is given up after its timeout even while later messages arrive.
                arrived = order.expire(now)
                if received is not None:
                    arrived += order.push(received.meta.get("replay_seq"), received, now)
            for sample in arrived:
                if sample.stream == END_STREAM:  # only subscribed to in a replay
                    emit(sync.flush(), now, "end")
                    continue
                try:
                    sets = sync.add(sample.stream, sample.stamp_ns, builder.payload(sample))
                    emit(sets, now, sample.stream)
                except (InputError, SyncError) as exc:
                    reason = exc.reason if isinstance(exc, InputError) else "sync_refused"
                    if not rejected[reason]:
                        log.warning("refusing a message (%s, further ones only counted): %s", reason, exc)
                    rejected[reason] += 1
            if live:
                emit(sync.tick(time.time_ns()), now, "deadline")
            if now >= next_beat_ns:  # build the counters only when a beat is due
                heartbeat.beat(counters())
                next_beat_ns = now + heartbeat.interval_ns
    finally:
        shut_down(heartbeat, counters(), sink, source)
    return 0


if __name__ == "__main__":
    run_node(main)
