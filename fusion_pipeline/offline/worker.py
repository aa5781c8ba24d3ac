"""What a batch worker does with one log: replay it offline into a results file beside its final name,
and report it as a manifest record. The local pool's processes and Ray's tasks both run `run_log`.

A worker process builds its `OfflineGraph` (model session, warm-up) for its first log and reuses it
for every later log of the same config: a log is one task, the graph is not rebuilt per task.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fusion_pipeline.config import Config
from fusion_pipeline.errors import FusionError
from fusion_pipeline.logs.errors import LogError
from fusion_pipeline.logs.reader import LogReader
from fusion_pipeline.offline.graph import OfflineGraph
from fusion_pipeline.offline.manifest import LogRecord
from fusion_pipeline.offline.summary import LogStats

__all__ = ["PARTIAL_SUFFIX", "RESULTS_SUFFIX", "BatchLog", "LogTask", "failed_record", "run_log"]

log = logging.getLogger(__name__)

#: A log's results in the batch's directory: NAME.results.mcap.
RESULTS_SUFFIX = ".results.mcap"
#: What a worker writes, beside the final name; the batch renames it once the manifest says done.
PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class BatchLog:
    """One log of a batch: its name and its files (split parts in order)."""

    name: str
    paths: tuple[Path, ...]

    @property
    def results_name(self) -> str:
        return self.name + RESULTS_SUFFIX

    @property
    def partial_name(self) -> str:
        return self.results_name + PARTIAL_SUFFIX


@dataclass(frozen=True)
class LogTask:
    """What a worker is given: a log, the batch's directory, and the config as the workers run it."""

    log: BatchLog
    out: Path  # absolute, and seen by every worker (on a cluster: a shared file system)
    config: Config
    digest: str  # batch.results_digest(config), written into the record
    verify_crcs: bool = False  # `batch --verify-crcs`


_graphs: dict[str, OfflineGraph] = {}  # this process's graph, by its config's JSON


def _graph(config: Config) -> tuple[OfflineGraph, float]:
    """This process's graph for `config` and the seconds it took to build now (0 when reused)."""
    key = config.model_dump_json()
    if key in _graphs:
        return _graphs[key], 0.0
    started = time.perf_counter()
    _graphs.clear()  # one graph per process: a batch has one config
    _graphs[key] = OfflineGraph(config)
    return _graphs[key], time.perf_counter() - started


def _new_record(task: LogTask) -> LogRecord:
    return LogRecord(
        log=task.log.name,
        paths=[str(p) for p in task.log.paths],
        status="failed",
        digest=task.digest,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )


def failed_record(task: LogTask, error: str) -> LogRecord:
    """The record of a log whose worker could not report it (a process that died, a lost node)."""
    record = _new_record(task)
    record.error = error
    record.worker = ""  # not this process: it is the batch's, which only saw the worker go
    return record


@contextlib.contextmanager
def _lines_name(log_name: str) -> Iterator[None]:
    """Every log line of this process names `log_name` meanwhile: the workers of a batch share stderr,
    and a stage's line ("dropping a message of camera/front ...") would not say which log it is about."""
    plain = logging.getLogRecordFactory()

    def named(*args: object, **kwargs: object) -> logging.LogRecord:
        record = plain(*args, **kwargs)
        record.msg = f"{log_name}: {record.msg}"
        return record

    logging.setLogRecordFactory(named)
    try:
        yield
    finally:
        logging.setLogRecordFactory(plain)


def run_log(task: LogTask) -> LogRecord:
    """Replay `task`'s log into DIR/NAME.results.mcap.partial: a done record with its counts, timings
    and result statistics, or a failed one with the error. Never raises for the log's sake: one bad log
    is one failed record, and the batch goes on."""
    started_s, started = time.time(), time.perf_counter()
    partial = task.out / task.log.partial_name
    record = _new_record(task)
    try:
        partial.unlink(missing_ok=True)  # left by a batch killed while this log ran
        graph, setup_s = _graph(task.config)
        with _lines_name(task.log.name):
            report = graph.run(task.log.paths, partial, verify_crcs=task.verify_crcs)
        if report.truncated:  # the reader stopped at damage: the results would be of part of the log
            raise LogError("log cut short: " + "; ".join(report.truncated))
        stats = LogStats.of(m.sample for m in LogReader(partial, verify_crcs=False))
    except Exception as exc:  # whatever went wrong is this log's, and said in its record
        partial.unlink(missing_ok=True)
        if isinstance(exc, FusionError):
            record.error = str(exc)
        else:  # not a failure the library foresaw: its traceback goes to this worker's log
            log.exception("%s: %s", task.log.name, exc)
            record.error = f"{type(exc).__name__}: {exc}"
        record.timings = {
            "started": started_s,
            "finished": time.time(),
            "task_s": time.perf_counter() - started,
        }
        return record
    except BaseException:  # Ctrl-C reaches the pool's workers too: no half results left behind
        partial.unlink(missing_ok=True)
        raise
    record.status = "done"
    record.results = task.log.results_name
    record.counts = {
        "messages": report.messages,
        "sent": report.sent,
        "sets": report.sets,
        "results": report.results,
        "drops": report.drops,
        "provider": report.provider,
        "absent": report.absent,  # config streams the log holds nothing for
        "left_out": report.left_out,  # log streams not replayed
    }
    record.timings = {
        "started": started_s,
        "finished": time.time(),
        "task_s": time.perf_counter() - started,
        "setup_s": setup_s,
        "wall_s": report.wall_s,
        "log_s": report.log_s,
        "cpu_s": report.cpu_s,
        "speedup": report.speedup,
    }
    record.stats = stats.as_json()
    return record
