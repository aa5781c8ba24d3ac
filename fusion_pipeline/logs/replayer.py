"""The replayer: publishes a log in place of the sensor drivers, on each stream's configured endpoint.

Two pacings:

- ``rate = R``: message i is sent at ``t0 + (log_time_i - log_time_0) / R`` on the monotonic clock, so the
  original spacing between receptions is kept (scaled). Each send's lateness against that target is the
  timing error, reported as p50/p99/max.
- ``rate = None`` (as fast as possible): nothing waits on the clock.

Every driver socket is a lossless publisher (XPUB, no drop): an ingest node that falls behind blocks the
replayer instead of losing messages. With ``graph`` (a pipeline consumes the replay, its nodes started
with ``--replay``) the replay is deterministic and lossless end to end without ever waiting on the graph:

- each message carries ``meta.replay_seq``, its index in send order. The ingest nodes work in parallel
  and pass it on; the synchronizer puts their outputs back into send order (fusion_pipeline.sync.reorder)
  before matching in event time, so it cuts the same sets at any speed;
- each message carries ``meta.log_time_ns``, when it was recorded: the ingest nodes' clock for its
  stream (seq plausibility, restarts, stamp jumps), as the arrival time is live;
- every node of the graph takes every message and its publisher blocks rather than drops, so back-
  pressure, not loss, slows the replayer down to what the graph can take;
- the results are collected by a thread of their own, so a replayer blocked on a full ingest queue never
  stops draining the results (which would block inference, then the synchronizer, then ingest: a cycle).

After the last message the replayer tells the synchronizer that the replay ended (the end-of-replay
message, fusion_pipeline.sync.reorder: it flushes the sets still open, so every reference message becomes a
set or a counted drop), then waits for a result for every reference message sent, or until none came
for ``results_timeout_s`` (the command then says how many sets the synchronizer made gave no result).

What is sent, in which order, with which meta (the planned streams, the window, loop passes) is
fusion_pipeline.logs.send_order's, shared with the offline graph (fusion_pipeline.offline), which feeds
the same messages to the stages in one process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fusion_pipeline.config import Config
from fusion_pipeline.logs.errors import LogError
from fusion_pipeline.logs.reader import LogReader, prefetch
from fusion_pipeline.logs.records import REPLAYED_BY
from fusion_pipeline.logs.send_order import (
    LOOP_GAP_NS,
    ReplaySettings,
    message_total,
    plan_streams,
    send_order,
)
from fusion_pipeline.logs.writer import LogWriter
from fusion_pipeline.protocol import RESULT_STREAM
from fusion_pipeline.sync.reorder import END_MODALITY, END_STREAM, end_endpoint
from fusion_pipeline.transport.sockets import Publisher, Role, Subscriber
from fusion_pipeline.transport.wire import Sample

__all__ = ["ReplayReport", "Replayer"]

log = logging.getLogger(__name__)

RESULTS_HWM = 10_000


@dataclass
class ReplayReport:
    sent: dict[str, int] = field(default_factory=dict)
    results: int = 0
    wall_s: float = 0.0  # from the start to the last send or result (not the final idle wait)
    log_s: float = 0.0
    passes: int = 0
    lateness_ns: list[int] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        """Log time replayed per wall-clock second."""
        return self.log_s / self.wall_s if self.wall_s > 0 else float("inf")

    def timing_error_ms(self) -> dict[str, float]:
        """p50, p99 and max lateness of sends against their targets (rate pacing only)."""
        if not self.lateness_ns:
            return {}
        late = np.asarray(self.lateness_ns, dtype=np.float64) / 1e6
        return {
            "p50": float(np.percentile(late, 50)),
            "p99": float(np.percentile(late, 99)),
            "max": float(late.max()),
        }

    def summary(self) -> str:
        sent = ", ".join(f"{name} {n}" for name, n in sorted(self.sent.items()))
        lines = [
            f"replayed {sum(self.sent.values())} messages ({sent}) in {self.wall_s:.2f} s: "
            f"{self.log_s:.2f} s of log, {self.speedup:.2f}x real time, {self.passes} pass(es)"
        ]
        error = self.timing_error_ms()
        if error:
            lines.append(
                f"  timing error: p50 {error['p50']:.3f} ms, p99 {error['p99']:.3f} ms, "
                f"max {error['max']:.3f} ms"
            )
        if self.results:
            lines.append(f"  results received: {self.results}")
        return "\n".join(lines)


class Replayer:
    """Publishes a log on the configured driver endpoints; optionally listens to the results."""

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        reader: LogReader,
        settings: ReplaySettings,
        *,
        subscribers: int = 1,
    ) -> None:
        self.config, self.reader, self.settings = config, reader, settings
        self.plan = plan_streams(config, reader.scan_streams(), settings)
        self.report = ReplayReport()
        self._publishers: dict[str, Publisher] = {}
        by_endpoint: dict[str, Publisher] = {}
        for target in sorted(set(self.plan.values())):
            stream = config.stream(target)
            url = config.endpoint(stream.endpoint, run_dir)
            if url not in by_endpoint:
                by_endpoint[url] = Publisher(
                    url,
                    target,
                    stream.modality,
                    lossless=True,
                    role=Role.REPLAY,
                    curve=config.curve_for(url),
                )
            self._publishers[target] = by_endpoint[url]
        # Lossless publishers and the subscribers each one waits for: ingest on the drivers' endpoints,
        # and in a graph the synchronizer on the end-of-replay endpoint.
        self._peers = {publisher: subscribers for publisher in by_endpoint.values()}
        self._end: Publisher | None = None
        if settings.graph:
            self._end = Publisher(
                end_endpoint(run_dir), END_STREAM, END_MODALITY, lossless=True, role=Role.REPLAY
            )
            self._peers[self._end] = 1
        self.reference = config.sync.reference or min(config.streams, key=lambda s: s.rate_hz).name
        self._results: _ResultCollector | None = None
        if settings.graph or settings.results_path is not None:
            subscriber = Subscriber(
                config.local_results_endpoint(run_dir), topics=[RESULT_STREAM], hwm=RESULTS_HWM
            )
            results_log = None
            if settings.results_path is not None:
                results_log = LogWriter(settings.results_path, metadata={"recorded_by": REPLAYED_BY})
            self._results = _ResultCollector(subscriber, results_log)
        self._sent = 0  # messages sent, over every pass: the next replay_seq
        self._reference_sent = 0
        self._target = 0
        self._last_activity_ns = 0

    def wait_for_subscribers(self) -> None:
        """Block until every endpoint has its subscribers (ingest; the synchronizer for the end), so
        nothing goes into the void."""
        for publisher, count in self._peers.items():
            if not publisher.wait_for_subscribers(count, self.settings.subscribers_timeout_s):
                raise LogError(
                    f"no subscriber on {publisher.last_endpoint} after "
                    f"{self.settings.subscribers_timeout_s} s (is the graph running?)"
                )

    def run(self, stop: Callable[[], bool] = lambda: False) -> ReplayReport:
        settings, report = self.settings, self.report
        self.wait_for_subscribers()
        total = message_total(self.reader, self.plan, settings)
        bar = tqdm(total=total, unit="msg", disable=not settings.progress, dynamic_ncols=True)
        started = time.monotonic_ns()
        self._last_activity_ns = clock_origin = started
        spans: list[int] = []  # per pass begun: log time from its first message to the last one sent
        if self._results is not None:
            self._results.start()
        try:
            for message in prefetch(send_order(self.reader, self.plan, settings)):
                if stop():
                    break
                if message.pass_index == len(spans):
                    spans.append(0)
                    if message.pass_index:
                        # A later pass starts one loop gap (paced) after the previous pass ended.
                        clock_origin = time.monotonic_ns() + round(LOOP_GAP_NS / (settings.rate or 1))
                        bar.reset(total)
                spans[-1] = message.offset_ns
                self._pace(clock_origin, message.offset_ns)
                self._send(message.sample)
                bar.update()
            report.log_s = sum(spans) / 1e9
            report.passes = max(0, len(spans) - 1) if stop() else len(spans)  # passes sent in full
            if self._end is not None:  # in send order after everything sent (fusion_pipeline.sync.reorder)
                self._end.publish(0, meta={"replay_seq": self._sent})
            self._await_results()
        finally:
            bar.close()
            if self._results is not None:
                self._results.stop()
                report.results = self._results.count
                self._last_activity_ns = max(self._last_activity_ns, self._results.last_ns)
            report.wall_s = (self._last_activity_ns - started) / 1e9
        return report

    def close(self) -> None:
        """Close the sockets; a lossless publisher first lets its subscribers leave (see transport)."""
        for publisher, count in self._peers.items():
            publisher.wait_for_unsubscribe(count, timeout_s=0.5)
            publisher.close()
        if self._results is not None:
            self._results.close()

    def _pace(self, clock_origin: int, log_offset_ns: int) -> None:
        rate = self.settings.rate
        if rate is None:
            return
        target = clock_origin + round(log_offset_ns / rate)
        while (remaining := target - time.monotonic_ns()) > 0:
            time.sleep(remaining / 1e9)
        self._target = target

    def _send(self, sample: Sample) -> None:
        """Publish one message of the send order (its replay meta is send_order's, in a graph)."""
        self._publishers[sample.stream].send(sample)
        self._sent += 1
        self._last_activity_ns = time.monotonic_ns()
        if self.settings.rate is not None:
            self.report.lateness_ns.append(time.monotonic_ns() - self._target)
        self.report.sent[sample.stream] = self.report.sent.get(sample.stream, 0) + 1
        if sample.stream == self.reference:
            self._reference_sent += 1

    def _await_results(self) -> None:
        """After the end of the replay: wait until each reference message has its result, or none came
        for results_timeout_s (the flushed synchronizer may have dropped a set, counted)."""
        results = self._results
        if results is None:
            return
        idle_ns = round(self.settings.results_timeout_s * 1e9)
        while results.count < self._reference_sent and time.monotonic_ns() - results.last_ns < idle_ns:
            time.sleep(0.01)


class _ResultCollector:
    """Receives the results in a thread of its own (counted, optionally logged) while the replayer sends."""

    def __init__(self, subscriber: Subscriber, log_writer: LogWriter | None) -> None:
        self.subscriber, self.log_writer = subscriber, log_writer
        self.count = 0
        self.last_ns = time.monotonic_ns()  # last result, or the start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replay-results", daemon=True)

    def start(self) -> None:
        self.last_ns = time.monotonic_ns()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def close(self) -> None:
        self.stop()
        self.subscriber.close()
        if self.log_writer is not None:
            self.log_writer.close({"results": self.count})

    def _run(self) -> None:
        while not self._stop.is_set():
            result = self.subscriber.recv(timeout_ms=50)
            if result is None:
                continue
            if self.log_writer is not None:
                self.log_writer.write(result, time.time_ns())
            self.count += 1
            self.last_ns = time.monotonic_ns()
