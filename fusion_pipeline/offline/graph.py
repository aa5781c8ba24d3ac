"""The replay graph in one process: a log through ingest, sync and inference with no sockets.

`OfflineGraph.run` reads a log in the replayer's send order (fusion_pipeline.logs.send_order: the same
planned streams, window and meta, ``replay_seq`` and ``log_time_ns``) and chains the stages the nodes
run: per stream the ingest node's receive checks (the stream's wire limits) and `Ingest` in replay mode,
then `SyncStage`, then `InferenceStage`; at the log's end `SyncStage.flush` finishes the sets still
open, as the replayer's end-of-replay message does. The socket graph needs `ReplayOrder` to undo the
interleaving of its parallel ingest processes; here the messages reach the sync stage in send order
already. Nothing reads the wall clock to decide anything (the watermark is the log's stamps), so the
sets and results are those of ``replay --max-speed`` through the process graph, to the bit on the CPU
(tests/process/test_offline_replay.py).

One departure from the nodes, for speed, with the same sets and results: a camera, lidar or radar
frame's front end (preprocessing, most of ingest's time) runs only when a set takes the frame. Ingest
runs the front end's checks at once (`InputPreprocessor.check`: everything that makes it refuse a
payload), so it refuses exactly the frames the node refuses; the arithmetic waits, and the frames the
synchronizer drops (two thirds of the demo's camera frames are superseded by a nearer one) never pay
for it. Set messages are complete when they leave the sync stage; the deferred work shows in their
``sync_in`` .. ``sync_emit`` stage.

Four threads share the work, each stage in its own order: one reads the log ahead (`prefetch`; its
chunks are decompressed on READ_THREADS more, LogReader `threads`), one runs ingest and the sync stage
over it, one the front ends of the frames each set takes (and the sets' writes), and the caller's runs
inference and the results' writes (zstd, numpy and ONNX Runtime release the GIL). Each stage keeps its
state in one thread, so the order of everything it sees is the send order, as in a single thread.

The stage stamps (``ingest_in`` ... ``publish``) and the log time of every written result come from the
`clock` the graph is given: the wall clock by default, so the result latencies say where the time went.
The model runtime is built once per graph (session, warm-up) and reused by every run; each run starts
its stages afresh, so one graph replays any number of logs, each as if alone.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fusion_pipeline.config import Config
from fusion_pipeline.inference import InferenceStage, ModelRuntime
from fusion_pipeline.ingest import Ingest
from fusion_pipeline.logs.reader import LogReader, prefetch
from fusion_pipeline.logs.records import REPLAYED_BY
from fusion_pipeline.logs.send_order import (
    ReplaySettings,
    absent_streams,
    left_out_streams,
    message_total,
    plan_streams,
    send_order,
)
from fusion_pipeline.logs.writer import LogWriter
from fusion_pipeline.ops.metrics import is_count, is_drop_counter, unbound_held
from fusion_pipeline.preprocess.deferred import defer, resolve
from fusion_pipeline.protocol import INGEST_OUT, PUBLISH, SYNC_EMIT
from fusion_pipeline.sync.settings import settings_from_config
from fusion_pipeline.sync.stage import SyncStage
from fusion_pipeline.transport.errors import WireError
from fusion_pipeline.transport.wire import Sample, check, encode

__all__ = ["RECORDED_BY", "OfflineGraph", "OfflineReport"]

#: The ``recorded_by`` metadata of the logs an offline run writes (a socket replay: "fusion-pipeline replay").
RECORDED_BY = f"{REPLAYED_BY} --offline"
#: Set messages matched ahead of inference (each holds its frames until their front ends run).
SETS_AHEAD = 8
#: Threads that decompress the log's chunks (LogReader `threads`). zstd is the largest single piece of
#: the work (a third of it for the demo log): in line, it alone would hold the reader thread near 30x
#: real time. On 2 cores both are busy either way (no gain measured there); on more, this lifts that bound.
READ_THREADS = 2


@dataclass
class OfflineReport:
    """What one offline run did: messages, sets and results, drops by stage and reason, and its speed."""

    sent: dict[str, int] = field(default_factory=dict)  # log messages fed to ingest, per config stream
    ingested: dict[str, int] = field(default_factory=dict)  # ingest's outputs per config stream
    sets: int = 0
    results: int = 0
    unbound_held: dict[str, int] = field(default_factory=dict)  # sets that held each unbound stream
    #: Non-zero drop counters by stage, then reason, named as in the supervisor's summary of a socket
    #: replay ("ingest:STREAM", "synchronizer", "inference"; fusion_pipeline.ops.metrics.is_drop_counter).
    drops: dict[str, dict[str, int]] = field(default_factory=dict)
    log_s: float = 0.0  # log time replayed: from the first message sent to the last
    wall_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of the whole process (every thread) during the run
    provider: str = ""
    truncated: list[str] = field(default_factory=list)  # 'PATH: reason' of a log cut short
    absent: list[str] = field(default_factory=list)  # config streams the log holds nothing for
    left_out: list[str] = field(default_factory=list)  # log streams not replayed (not in the config)

    @property
    def messages(self) -> int:
        return sum(self.sent.values())

    @property
    def speedup(self) -> float:
        """Log time replayed per wall-clock second."""
        return self.log_s / self.wall_s if self.wall_s > 0 else float("inf")

    @property
    def cores(self) -> float:
        """CPU seconds per wall-clock second: how many cores the run kept busy on average."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> str:
        sent = ", ".join(f"{name} {n}" for name, n in sorted(self.sent.items()))
        drops = "; ".join(
            f"{stage}: " + ", ".join(f"{reason} {n}" for reason, n in reasons.items())
            for stage, reasons in self.drops.items()
        )
        lines = [
            f"replayed offline {self.messages} messages ({sent}) in {self.wall_s:.2f} s: {self.log_s:.2f} s "
            f"of log, {self.speedup:.2f}x real time, {self.cores:.2f} cores busy ({self.provider})",
            f"  sets {self.sets}, results {self.results}; drops: {drops or 'none'}",
        ]
        if self.unbound_held:
            lines.append(f"  streams in no model input: {unbound_held(self.unbound_held, self.sets)}")
        lines += [f"  log cut short: {problem}" for problem in self.truncated]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ingested": self.ingested,
            "sets": self.sets,
            "results": self.results,
            "unbound_held": self.unbound_held,
            "drops": self.drops,
            "log_s": self.log_s,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "speedup": self.speedup,
            "provider": self.provider,
            "truncated": self.truncated,
            "absent": self.absent,
            "left_out": self.left_out,
        }


class OfflineGraph:
    """The replay graph of `config` in one process (module docstring).

    `clock` gives the stage stamps and the written logs' log times, in ns (default: the wall clock).
    Building one loads the model and warms it up; `run` replays a log.
    """

    def __init__(self, config: Config, *, clock: Callable[[], int] = time.time_ns) -> None:
        self.config = config
        self.clock = clock
        model = config.model
        if model.intra_op_threads == 0:
            # One set at a time: ONNX Runtime's own threads would only compete with the graph's for the
            # cores (its default, one per core, cost a quarter more CPU per run here and no wall time).
            model = model.model_copy(update={"intra_op_threads": 1})
        # A model that does not fit the config is refused here (ContractError), as the nodes refuse it.
        self.runtime = ModelRuntime(config.model_copy(update={"model": model}))

    def run(
        self,
        logs: str | Path | Iterable[str | Path] | LogReader,
        results: Path | None = None,
        *,
        sets: Path | None = None,
        start_s: float = 0.0,
        end_s: float | None = None,
        streams: Iterable[str] = (),
        remap: Mapping[str, str] | None = None,
        progress: bool = False,
        stop: Callable[[], bool] = lambda: False,
        verify_crcs: bool = False,
    ) -> OfflineReport:
        """Replay `logs` (one log, or the parts of a split one in order) through the graph.

        The results go to the log `results` and the set messages to the log `sets` (each created new,
        when given), in the format of ``replay --results``. `start_s`, `end_s`, `streams` and `remap`
        choose what is replayed as ``replay`` does (LogError for what does not fit). `stop()` ends the
        run early; the sets still open are flushed either way. `verify_crcs`: check the CRCs of logs
        given as paths (a LogReader given comes as it was made); off, as reading is most of the time.
        """
        reader = (
            logs
            if isinstance(logs, LogReader)
            else LogReader(logs, verify_crcs=verify_crcs, threads=READ_THREADS)
        )
        settings = ReplaySettings(
            rate=None,
            start_s=start_s,
            end_s=end_s,
            streams=tuple(streams),
            remap=dict(remap or {}),
            graph=True,  # the replay meta a graph's messages carry
        )
        logged = reader.scan_streams()
        plan = plan_streams(self.config, logged, settings)
        report = OfflineReport(
            provider=self.runtime.provider,
            left_out=left_out_streams(self.config, logged, plan, settings),  # each said, and reported
            absent=absent_streams(self.config, logged, settings),
        )
        writers = _Writers(results, sets)
        stages = _Stages(self.config, self.runtime, self.clock, on_set=writers.set)
        bar = tqdm(
            total=message_total(reader, plan, settings), unit="msg", disable=not progress, dynamic_ncols=True
        )
        first = last = None  # log times of the first and the last message sent

        def matched() -> Iterator[Sample]:
            """Ingest and sync over the log, in send order: the set messages, as they complete."""
            nonlocal first, last
            for message in prefetch(send_order(reader, plan, settings)):
                if stop():
                    break
                first = message.log_time_ns if first is None else first
                last = message.log_time_ns
                stream = message.sample.stream
                report.sent[stream] = report.sent.get(stream, 0) + 1
                yield from stages.add(message.sample)
                bar.update()
            yield from stages.flush()

        wall_started, cpu_started = time.perf_counter(), time.process_time()
        prepared = prefetch(map(stages.prepare, prefetch(matched(), SETS_AHEAD)), SETS_AHEAD)
        try:
            for set_message in prepared:  # module docstring: four threads
                result = stages.infer(set_message)
                if result is not None:
                    writers.result(result, self.clock())
        finally:
            prepared.close()  # its threads stop and are joined before the files close
            bar.close()
            writers.close()
        report.wall_s = time.perf_counter() - wall_started
        report.cpu_s = time.process_time() - cpu_started
        report.log_s = 0.0 if first is None or last is None else (last - first) / 1e9
        report.ingested = {name: ingest.produced for name, ingest in stages.ingest.items() if ingest.produced}
        report.sets, report.results = stages.sync.builder.built, stages.inference.results
        report.unbound_held = dict(stages.sync.builder.unbound_held)
        report.drops = stages.drops()
        report.truncated = reader.truncated
        return report


class _Stages:
    """One run's stages, chained: each node's data work, without its sockets."""

    def __init__(
        self,
        config: Config,
        runtime: ModelRuntime,
        clock: Callable[[], int],
        on_set: Callable[[Sample, int], None],
    ) -> None:
        self.clock = clock
        self.on_set = on_set  # each set message as it goes to inference, with the clock's time
        time_jump_ns = settings_from_config(config)[0].time_jump_ns  # the synchronizer's, as in the node
        self.ingest = {
            s.name: Ingest(runtime.bindings.for_ingest(s.name, defer), live=False, time_jump_ns=time_jump_ns)
            for s in config.streams
        }
        # What the ingest node's subscriber refuses on receipt, by WireError reason.
        self.malformed: dict[str, Counter[str]] = {name: Counter() for name in self.ingest}
        self.sync = SyncStage(config, runtime.bindings)
        self.inference = InferenceStage(runtime, clock=clock)

    def add(self, sample: Sample) -> list[Sample]:
        """The set messages one replayed message completes (none while its sets are open)."""
        ingest = self.ingest[sample.stream]
        try:
            check(encode(sample), ingest.limits)  # the stream's limits, as the ingest node receives it
        except WireError as exc:
            self.malformed[sample.stream][exc.reason] += 1
            if exc.header is not None:
                ingest.refused_at_socket(exc.header, self.clock())
            return []
        ready = ingest.process(sample, self.clock())
        if ready is None:
            return []
        ready.meta["stages"][INGEST_OUT] = self.clock()
        return self.sync.add(ready, self.clock())

    def flush(self) -> list[Sample]:
        """The set messages still open at the end of the replay."""
        return self.sync.flush(self.clock())

    def prepare(self, set_message: Sample) -> Sample:
        """A set message from `add` or `flush`, complete: its deferred tensors computed."""
        set_message.arrays = resolve(set_message.arrays)
        set_message.meta["stages"][SYNC_EMIT] = self.clock()
        self.on_set(set_message, self.clock())
        return set_message

    def infer(self, set_message: Sample) -> Sample | None:
        """The result of a set message from `prepare`."""
        result = self.inference.run(set_message)
        if result is not None:
            result.meta["stages"][PUBLISH] = self.clock()
        return result

    def drops(self) -> dict[str, dict[str, int]]:
        """Non-zero drop counters by stage and reason, as the supervisor's summary names them."""
        counters: dict[str, Mapping[str, Any]] = {
            **{
                f"ingest:{name}": {
                    **{f"malformed_{reason}": n for reason, n in self.malformed[name].items()},
                    **ingest.counters(),
                }
                for name, ingest in self.ingest.items()
            },
            "synchronizer": self.sync.counters(),
            "inference": self.inference.counters(),
        }
        out = {}
        for stage, values in sorted(counters.items()):
            reasons = {k: v for k, v in values.items() if is_drop_counter(k) and is_count(v) and v}
            if reasons:
                out[stage] = dict(sorted(reasons.items()))
        return out


class _Writers:
    """The run's optional output logs: results and sets, each created new (LogWriter never overwrites)."""

    def __init__(self, results: Path | None, sets: Path | None) -> None:
        metadata = {"recorded_by": RECORDED_BY}
        self._counts = {"results": 0, "sets": 0}
        self._sets: LogWriter | None = None
        self._results = None if results is None else LogWriter(results, metadata=metadata)
        try:
            self._sets = None if sets is None else LogWriter(sets, metadata=metadata)
        except BaseException:
            self.close()  # finish the results file created above; the error says why sets is refused
            raise

    def result(self, sample: Sample, log_time_ns: int) -> None:
        if self._results is not None:
            self._results.write(sample, log_time_ns)
            self._counts["results"] += 1

    def set(self, sample: Sample, log_time_ns: int) -> None:
        if self._sets is not None:
            self._sets.write(sample, log_time_ns)
            self._counts["sets"] += 1

    def close(self) -> None:
        """Finish the files, each with the count it holds in its report metadata (as `replay` does)."""
        if self._results is not None:
            self._results.close({"results": self._counts["results"]})
        if self._sets is not None:
            self._sets.close({"sets": self._counts["sets"]})
