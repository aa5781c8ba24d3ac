"""Composed node: ingest for every stream and the sync stage in one loop, the inference stage on a thread
beside it, in one process.

    python -m fusion_pipeline.nodes.composed --config PATH --run-dir DIR

``pipeline.composition = "composed"`` runs it in place of the ingest nodes, the synchronizer and the
inference node; the sensor drivers stay processes of their own. It subscribes to every driver endpoint,
one socket per stream (each with its stream's receive limits, so that each drains on its own), and waits
on all of them with one poller, until a message comes or the sync stage's next deadline. Each pass:

1. ingest: one stream with input waiting at a time, the first in priority order (the reference stream,
   whose message opens the set the others complete, then the config's order), taken as its ingest node
   would take it (nodes/ingest.py `StreamIngest`): a camera, lidar or radar socket drained to its newest
   admitted message, audio in full; then the poller is asked again, until a set is complete or no
   input waits. A camera, lidar or radar frame's front end is deferred (preprocess/deferred.py): its
   checks run at once, its arithmetic only when a set takes the frame, so the loop goes on receiving
   (a reference message never queues behind another stream's preprocessing) and the frames the
   synchronizer supersedes (two thirds of the demo's camera frames) never cost it anything. A front-end
   thread pool measured no better (docs/BENCHMARKS.md, End-to-end floor);
2. sync: each model-ready sample straight into the `SyncStage` (no ingest or set socket in between),
   then a tick with the wall clock for the deadlines;
3. inference: the newest set completed in the pass gets its frames' tensors computed and is handed to
   the model's thread (`InferenceThread`), which runs it and publishes its result on output.endpoint
   while the loop goes on receiving: run in the loop, a model slower than a sensor period left the
   sockets undrained for that long, and a stream drained to its newest message after it no longer had
   the frame that matched the reference (partial sets). Older sets (a tick that finished several, or a
   set still waiting when a newer one is handed over) are counted as skipped, as the inference node
   skips to the newest set;
4. the pass's sets are published on sync.endpoint (for `echo` and the recorder), after the hand-over, so
   that copying them never delays a result.

Results carry the same stage stamps as in the process graph (sync_in is the completing sample's arrival
at the stage, sync_emit its hand-over to the model's thread), so the supervisor's latency
figures compare; the front ends' time shows in ``sync_in`` .. ``sync_emit`` (the set's tensors being
computed), not in ``ingest_in`` .. ``ingest_out``. Its heartbeats carry each part's counters under the
separate nodes' names (ingest:STREAM, synchronizer, inference; node.Parts), so `status`, the metrics and
the summary read them unchanged. A replay runs the separate nodes whatever the composition
(`fusion-pipeline replay` logs that composition applies live only); this node refuses --replay.
"""

from __future__ import annotations

import logging
import threading
import time

import zmq

from fusion_pipeline.errors import ConfigError
from fusion_pipeline.inference import InferenceStage, load_bindings
from fusion_pipeline.node import POLL_MS, Node, Parts, node_name, run_node
from fusion_pipeline.nodes.inference import start_inference
from fusion_pipeline.nodes.ingest import StreamIngest
from fusion_pipeline.nodes.synchronizer import AddedLatency
from fusion_pipeline.preprocess.deferred import defer, resolve
from fusion_pipeline.protocol import (
    PUBLISH,
    SET_MODALITY,
    SET_STREAM,
    SYNC_EMIT,
)
from fusion_pipeline.sync import SyncStage
from fusion_pipeline.transport import Publisher, Role, Sample

log = logging.getLogger("fusion_pipeline.nodes.composed")

STOP_WAIT_S = 1.0  # for the model's run in progress at a stop: well inside the supervisor's stop grace


class InferenceThread:
    """The model's runs on a thread of their own (onnxruntime releases the GIL while it runs), one set at
    a time: a set handed over while the model is busy waits, and a newer one replaces it (counted as
    skipped). An error on the thread is raised again in the loop by `check`, which ends the node.
    `run_s` says how long the run in progress has taken: the loop goes on beating whatever the thread
    does, so its heartbeats say how long a run longer than a beat's period has lasted (`stalled_s`), and
    a model that never returns is seen as hung and restarted, as the inference node is, while the
    streams' counters keep coming."""

    def __init__(self, stage: InferenceStage, sink: Publisher) -> None:
        self.stage = stage
        self.taken = 0  # sets the model took, as the inference node counts them received
        self.skipped = 0
        self._sink = sink
        self._changed = threading.Condition()
        self._waiting: Sample | None = None
        self._stopping = False
        self._run_started: float | None = None  # monotonic
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="inference", daemon=True)
        self._thread.start()

    def hand(self, fused: Sample) -> None:
        with self._changed:
            if self._waiting is not None:
                self.skipped += 1
            self._waiting = fused
            self._changed.notify()

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def run_s(self) -> float:
        started = self._run_started
        return 0.0 if started is None else time.monotonic() - started

    def stalled_s(self, beat_s: float) -> float:
        """How long the run in progress has taken, once longer than `beat_s`; 0.0 until then."""
        run_s = self.run_s()
        return run_s if run_s > beat_s else 0.0

    def stop(self, timeout_s: float = STOP_WAIT_S) -> None:
        """Ends the thread: a set still waiting is skipped, and the result of the run in progress is not
        published. A run that does not end within `timeout_s` is left to end with the process (the
        thread is a daemon), so that the node exits and says why rather than outlive its stop grace."""
        with self._changed:
            self._stopping = True
            if self._waiting is not None:
                self.skipped += 1
                self._waiting = None
            self._changed.notify()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("the model's run in progress (%.1f s so far) did not end at the stop", self.run_s())
        elif self._error is not None:  # from the last run, after the loop's last look (check)
            log.error("the model's thread failed", exc_info=self._error)

    def _serve(self) -> None:
        try:
            while (fused := self._next()) is not None:
                self._run_started = time.monotonic()
                result = self.stage.run(fused)
                self._run_started = None
                with self._changed:  # once stopping, the node closes the results socket: not used here
                    if self._stopping:
                        return
                    if result is not None:
                        result.meta["stages"][PUBLISH] = time.time_ns()
                        self._sink.send(result)
        except BaseException as exc:  # noqa: BLE001 - raised again in the node's loop (check)
            self._error = exc

    def _next(self) -> Sample | None:
        with self._changed:
            self._changed.wait_for(lambda: self._stopping or self._waiting is not None)
            if self._stopping:
                return None
            fused, self._waiting = self._waiting, None
            self.taken += 1
            return fused


def main(argv: list[str] | None = None) -> int:
    with Node("composed", argv, realtime=True) as node:
        config = node.config
        if node.replay:
            raise ConfigError('pipeline.composition = "composed": a replay runs the process graph')
        # A config the model cannot take ends the node (run_node): ContractError from the bindings.
        bindings = load_bindings(config)
        reference_first = sorted(config.streams, key=lambda s: s.name != config.sync.reference)
        streams = [StreamIngest(node, bindings.for_ingest(s.name, defer)) for s in reference_first]
        sync = SyncStage(config, bindings)
        sets_out = node.publisher(
            node.endpoint(config.sync.endpoint), SET_STREAM, SET_MODALITY, role=Role.SET
        )
        results_out = node.results_publisher()
        inference = InferenceThread(start_inference(config), results_out)
        poller = zmq.Poller()
        for stream in streams:
            poller.register(stream.source.socket, zmq.POLLIN)
        log.info(
            "%d streams -> sets %s, results %s",
            len(streams),
            sets_out.last_endpoint,
            results_out.last_endpoint,
        )
        added = 0  # model-ready samples into the sync stage
        handed_after = AddedLatency()  # as the synchronizer node's, to the hand-over to the model
        skipped = 0  # sets passed over for a newer set of the same pass

        def counters() -> dict[str, object]:
            return {"received": sum(s.source.received for s in streams), "results": inference.stage.results}

        def parts() -> Parts:
            return {
                **{node_name("ingest", s.ingest.config.name): s.counters() for s in streams},
                "synchronizer": {"received": added, **sync.counters(), **handed_after.counters()},
                "inference": {
                    "received": inference.taken,
                    "skipped": skipped + inference.skipped,
                    **inference.stage.counters(),
                },
            }

        beat_s = config.pipeline.heartbeat_ms / 1000
        try:
            for _ in node.loop(counters, parts, stalled_s=lambda: inference.stalled_s(beat_s)):
                inference.check()
                # Serve one stream at a time, the first ready in priority order (the reference first),
                # and look again after each, until a set is complete: a reference message that arrives
                # while another stream is preprocessed goes next, and a complete set goes to the model at
                # once. A flood of input still ends the pass after POLL_MS, so the node beats and sees a
                # stop.
                for stream in streams:
                    stream.source.check_connections()  # this loop polls the sockets itself
                timeout_ms = sync.wait_ms(time.time_ns(), POLL_MS)
                pass_end = time.monotonic() + POLL_MS / 1000
                sets: list[Sample] = []
                while not sets and time.monotonic() < pass_end and (ready := dict(poller.poll(timeout_ms))):
                    timeout_ms = 0
                    stream = next(s for s in streams if s.source.socket in ready)
                    while not sets and (sample := stream.take(0)) is not None:
                        added += 1
                        sets += sync.add(sample, time.time_ns())
                sets += sync.tick(time.time_ns())
                if not sets:
                    continue
                # Behind (several sets in one pass): a late set is worth less than the newest one.
                newest = max(sets, key=lambda s: s.stamp_ns)
                newest.arrays = resolve(newest.arrays)
                emitted = time.time_ns()
                for fused in sets:
                    fused.meta["stages"][SYNC_EMIT] = emitted
                    handed_after.add(fused, emitted)
                skipped += len(sets) - 1
                inference.hand(newest)
                for fused in sets:
                    fused.arrays = resolve(fused.arrays)
                    # Copied, as the synchronizer node sends sets (its docstring says why not zero-copy).
                    sets_out.send(fused, zero_copy=False)
        finally:
            inference.stop()
    return 0


if __name__ == "__main__":
    run_node(main)
