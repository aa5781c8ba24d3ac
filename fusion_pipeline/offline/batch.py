"""Many logs through the offline graph: a local pool of processes, or Ray tasks (offline/cluster.py).

`run_batch` finds the logs (a directory means every log in it; split parts are one log), reads the
manifest of the output directory (offline/manifest.py) and runs what is not done yet (a done log whose
files changed since is refused: its results are of a recording that is gone), one log per task:
in a pool of worker processes by default, or one Ray task per log. Each log's results are written beside
their final name and renamed into place only once the manifest line that says the log is done is on
disk, so DIR/NAME.results.mcap is always whole, and a rerun after a kill redoes only the logs without
such a line. A log that fails (cut short, unreadable, not of this config) is a failed line with its error;
the batch goes on. At the end the summary of every log its manifest holds (offline/summary.py), and with
`compare` the agreement with another batch's results (offline/compare.py), goes to DIR/summary.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fusion_pipeline.config import SHIPPED, Config
from fusion_pipeline.files import not_a_file
from fusion_pipeline.inference import hash_model, model_path
from fusion_pipeline.lifetime import die_with_parent
from fusion_pipeline.logs.sources import log_sources
from fusion_pipeline.offline.cluster import import_ray, ray_records
from fusion_pipeline.offline.compare import check_other, compare_dirs
from fusion_pipeline.offline.errors import BatchError
from fusion_pipeline.offline.manifest import (
    LogRecord,
    Manifest,
    PartIdentity,
    identify,
    identity_changes,
    same_files,
)
from fusion_pipeline.offline.summary import batch_summary
from fusion_pipeline.offline.worker import (
    PARTIAL_SUFFIX,
    RESULTS_SUFFIX,
    BatchLog,
    LogTask,
    failed_record,
    run_log,
)

__all__ = [
    "SUMMARY_NAME",
    "BatchPlan",
    "find_logs",
    "plan_batch",
    "pool_records",
    "results_digest",
    "run_batch",
]

logger = logging.getLogger(__name__)  # not `log`: that is a BatchLog throughout this module

SUMMARY_NAME = "summary.json"

#: Config keys that change how a run goes live, never a replay's results: left out of results_digest.
_NOT_IN_RESULTS: Mapping[str, Any] = {
    "streams": {"__all__": {"endpoint", "ingest_endpoint", "driver", "sim", "max_stamp_ahead_ms"}},
    "sync": {"endpoint"},
    "model": {"path", "providers", "tensorrt", "tf32", "intra_op_threads", "slowdown"},
}


def find_logs(arguments: Sequence[Path]) -> list[BatchLog]:
    """The logs named on the command line: a file is a log, a directory every *.mcap in it (a batch's
    own NAME.results.mcap files left out); split parts (NAME_000.mcap, NAME_001.mcap, ...) are one log
    named NAME, as fusion_pipeline.logs.sources groups them. A file named twice is one log."""
    files: list[Path] = []
    for argument in arguments:
        if argument.is_dir():
            mcaps = sorted(argument.glob("*.mcap"))
            if dangling := [p.name for p in mcaps if p.is_symlink() and not p.exists()]:
                logger.warning("%s: not run, links to nothing: %s", argument, ", ".join(dangling))
            if others := [p.name for p in mcaps if p.exists() and not p.is_file()]:
                logger.warning(
                    "%s: not run, not files (a directory, a FIFO, ...): %s", argument, ", ".join(others)
                )
            found = [p for p in mcaps if p.is_file() and not p.name.endswith(RESULTS_SUFFIX)]
            if not found:
                results = [p.name for p in mcaps if p.name.endswith(RESULTS_SUFFIX)]
                held = f" (only results files, which a batch does not take: {', '.join(results)})"
                raise BatchError(f"{argument}: no .mcap log in this directory{held if results else ''}")
            files += found
        elif argument.is_file():
            files.append(argument)
        elif argument.exists():
            raise BatchError(f"{argument}: {not_a_file(argument, 'log file')}")
        else:
            raise BatchError(f"{argument}: no such log file or directory")
    # Absolute, not resolved: a log reached through a link keeps the name it is given.
    given = Counter(Path(os.path.abspath(p)) for p in files)  # in the order first given
    unique = list(given)
    if twice := sorted(str(p) for p, n in given.items() if n > 1):
        logger.warning("given more than once, run once: %s", ", ".join(twice))
    return [BatchLog(name, tuple(parts)) for name, parts in log_sources(unique).logs]


def results_digest(config: Config) -> str:
    """A digest of what decides a log's results: the streams, [sync], the model's bound inputs and the
    bytes of the model's files, its external weights included; not what only changes speed or the live
    graph (threads, providers, endpoints)."""
    settings = config.model_dump_json(include={"streams", "sync", "model"}, exclude=_NOT_IN_RESULTS)
    digest = hashlib.sha256(settings.encode())
    hash_model(model_path(config), digest)  # a model of one file: its bytes, as before external data counted
    return digest.hexdigest()[:16]


@dataclass
class BatchPlan:
    """What a batch does with each of its logs."""

    run: list[BatchLog] = field(default_factory=list)
    skipped: list[BatchLog] = field(default_factory=list)  # done by an earlier run
    #: Logs of `skipped` whose done line predates `identity`: whether their files changed is unknown.
    unverified: list[str] = field(default_factory=list)
    #: Logs not run: a results file under their name that the manifest does not say is done (written by
    #: something else), which a batch never writes over.
    refused: list[LogRecord] = field(default_factory=list)


def plan_batch(
    logs: Sequence[BatchLog],
    identities: Mapping[str, list[PartIdentity]],
    records: Mapping[str, LogRecord],
    present: Collection[str],
    digest: str,
    where: Path,
) -> BatchPlan:
    """Sort `logs` (their files' `identities` now, by name) by the manifest's `records` and the results
    files `present` in the directory `where`: done (the manifest says done from these very files, and its
    file is there) is skipped, anything else runs. A done log of the same name made from other paths or
    files, or with another config, is a BatchError: its results are not this batch's (or of a recording
    since replaced at its path, which cannot be made again), and a batch never writes over them. So is
    a done log of another config among the directory's others: one directory, one config and model."""
    plan = BatchPlan()
    conflicts = []
    for log in logs:
        record = records.get(log.name)
        paths = [str(p) for p in log.paths]
        if record is not None and record.status == "done" and log.results_name in present:
            if record.paths != paths:
                same = same_files(record.paths, paths)
                conflicts.append(
                    f"{log.name} was made from the same files by other paths, {', '.join(record.paths)} "
                    "(give them by those paths)"
                    if same
                    else f"{log.name} is the results of {', '.join(record.paths)}"
                )
            elif record.digest != digest:
                conflicts.append(f"{log.name} was made with another config or model ({record.digest})")
            elif record.identity and (
                changes := identity_changes(paths, record.identity, identities[log.name])
            ):
                conflicts.append(
                    f"{log.name} was made from its files as they were (then -> now: {changes}); move "
                    f"{where / log.results_name} away to run it again"
                )
            else:
                if not record.identity:  # a line of a version before identity
                    plan.unverified.append(log.name)
                plan.skipped.append(log)
        elif log.results_name in present:
            error = (
                f"{where / log.results_name} is there but the manifest does not say this log is done: not "
                "writing over it (remove it to run this log again)"
            )
            identity = identities[log.name]
            plan.refused.append(
                LogRecord(log.name, paths, "failed", error=error, digest=digest, identity=identity)
            )
        else:
            plan.run.append(log)
    if conflicts:
        raise BatchError(
            f"{where} holds other results under this batch's names: {'; '.join(conflicts)} "
            f"(this batch: config {digest}); give another --out"
        )
    # The directory's other done logs: its summary (and a --compare against it) would pool two models.
    named = {log.name for log in logs}
    others = [
        f"{name} ({record.digest})"
        for name, record in sorted(records.items())
        if name not in named
        and record.status == "done"
        and record.digest != digest
        and record.results in present
    ]
    if others:
        raise BatchError(
            f"{where} holds results of another config or model: {', '.join(others)} (this batch: config "
            f"{digest}); one directory holds one config's results: give another --out"
        )
    return plan


def pool_records(
    tasks: Sequence[LogTask], workers: int, run: Callable[[LogTask], LogRecord] = run_log
) -> Iterator[LogRecord]:
    """Each task's record as it finishes, from a pool of `workers` processes (spawned, so no worker
    inherits the parent's threads or sockets) that call `run` (a module-level function) on each."""
    queue = deque(tasks)
    while queue:
        yield from _until_broken(queue, workers, run)


def _until_broken(
    queue: deque[LogTask], workers: int, run: Callable[[LogTask], LogRecord]
) -> Iterator[LogRecord]:
    """Run `queue`'s tasks in one pool until it is empty or a worker process dies. A pool whose worker
    dies (killed, out of memory, a crash in native code) fails every task in it, and which one killed it
    is unknown: the logs in flight are reported failed (a rerun retries them) and the rest go on in a
    new pool."""
    # A worker dies with the batch: a batch killed with SIGKILL leaves no pool running on (its logs
    # in flight are redone by the next run, their manifest lines never written).
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(os.getpid(),),
    )
    running: dict[Future[LogRecord], LogTask] = {}
    try:
        while queue or running:
            while queue and len(running) < workers:  # queued here, not in the pool: a new pool takes them
                task = queue.popleft()
                running[pool.submit(_run_task, run, task)] = task
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    record = future.result()
                except BrokenProcessPool:
                    lost = list(running.values())
                    running.clear()
                    for task in lost:
                        yield failed_record(
                            task, f"a worker process died while this log and {len(lost) - 1} other(s) ran"
                        )
                    return
                del running[future]
                yield record
    finally:
        if running:  # an interruption (Ctrl-C, SIGTERM): the workers stop too, removing their partials
            for worker in multiprocessing.active_children():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGINT)  # type: ignore[arg-type]
        pool.shutdown(wait=True, cancel_futures=True)


#: In a pool worker: whether it runs a task now, and whether a stop signal came.
_worker_state = {"in_task": False, "stopped": False}


def _start_worker(parent_pid: int) -> None:
    """A pool worker dies with the batch (killed: the next run removes what its log left), and takes
    SIGINT as Ctrl-C even where the batch was started with it ignored (a background job): the batch
    stops the logs in flight with it. A terminal's Ctrl-C or hangup and a service manager's SIGTERM reach
    the whole process group, then the batch sends its own; SIGTERM and SIGHUP stop a worker as SIGINT
    does unless the batch was started with them ignored (`nohup`: a hangup then ends nothing)."""
    die_with_parent(parent_pid, signal.SIGKILL)
    signal.signal(signal.SIGINT, _interrupt_worker)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # inherited from the batch through exec
            signal.signal(signum, _interrupt_worker)


def _interrupt_worker(signum: int, frame: object) -> None:
    """The first stop ends the task running now; an idle worker only remembers it, and ends the task it
    may still be handed (it would otherwise print a traceback from the pool's queue, and the pool's
    shutdown ends it anyway). A second stop (the group's signal, then the batch's) is not raised again:
    it would land in the first one's cleanup."""
    first = not _worker_state["stopped"]
    _worker_state["stopped"] = True
    if first and _worker_state["in_task"]:
        raise KeyboardInterrupt


def _run_task(run: Callable[[LogTask], LogRecord], task: LogTask) -> LogRecord:
    """`run(task)` in a pool worker, as a task that a stop interrupts (`_interrupt_worker`)."""
    _worker_state["in_task"] = True  # first: a stop from now on interrupts this task
    try:
        if _worker_state["stopped"]:
            raise KeyboardInterrupt
        return run(task)
    finally:
        _worker_state["in_task"] = False


def _workers_config(config: Config, threads: int) -> Config:
    """`config` as the workers run it: a relative model path made absolute (a Ray worker does not start
    in this directory), and ONNX Runtime's intra-op threads at `threads` unless the config sets them (its
    default, one per core, in every worker at once would oversubscribe the cores)."""
    model = config.model
    update: dict[str, Any] = {}
    if model.path and not model.path.startswith(SHIPPED):
        update["path"] = str(model_path(config).absolute())
    if model.intra_op_threads == 0:
        update["intra_op_threads"] = threads
    return config.model_copy(update={"model": model.model_copy(update=update)})


def run_batch(
    arguments: Sequence[Path],
    out: Path,
    config: Config,
    *,
    workers: int | None = None,
    ray: str | None = None,
    compare: Path | None = None,
    progress: bool = False,
    verify_crcs: bool = False,
) -> dict[str, Any]:
    """Run the logs `arguments` name into the directory `out` (module docstring); the summary.

    `workers`: processes of the local pool, or CPUs of the local Ray (default: this machine's CPUs).
    `ray`: None for the local pool, "" for a Ray started here, else the address of a Ray cluster.
    `compare`: another batch's directory, whose results this batch's are compared with.
    `verify_crcs`: check every log's CRCs too (slower; a CRC mismatch fails its log as damaged).
    """
    if ray and workers is not None:
        raise BatchError(
            f"--workers {workers} sizes the local pool or a local Ray; the cluster at {ray} runs a task "
            "per CPU it has"
        )
    if ray is not None:
        import_ray()  # a missing [cluster] extra is said before --out is made
    out = Path(os.path.abspath(out))
    if compare is not None:
        compare = Path(os.path.abspath(compare))
        check_other(compare, out)  # before any log runs: a comparison it cannot make is refused now
    logs = find_logs(arguments)
    if out.exists() and not out.is_dir():
        raise BatchError(f"--out {out}: a file, not a directory (the batch's results go into a directory)")
    digest = results_digest(config)
    # Taken before any log runs: a file changed while its log runs differs from its line at the next run.
    identities = {log.name: identify(log.paths) for log in logs}
    made = [d for d in (out, *out.parents) if not d.exists()]  # what mkdir makes, deepest first
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BatchError(f"--out {out}: cannot create it: {exc.strerror}") from exc
    with _removed_if_left_empty(made), Manifest(out) as manifest:
        present = {p.name for p in out.glob("*" + RESULTS_SUFFIX)}
        plan = plan_batch(logs, identities, manifest.records, present, digest, out)
        if plan.unverified:
            logger.warning(
                "%s: done by a version that did not record its files' sizes and times: taken as done "
                "without knowing whether the files changed since",
                ", ".join(plan.unverified),
            )
        for record in plan.refused:
            manifest.append(record)
        cpus = os.cpu_count() or 1
        concurrency = min(workers or cpus, len(plan.run)) or 1
        # A cluster's task gets one CPU (cluster.py); here the cores are shared among the workers.
        threads = 1 if ray else max(1, cpus // concurrency)
        workers_config = _workers_config(config, threads)
        tasks = [LogTask(log, out, workers_config, digest, verify_crcs) for log in plan.run]
        bar = tqdm(
            total=len(logs),
            initial=len(logs) - len(tasks),
            unit="log",
            desc="batch",
            disable=not progress,
            dynamic_ncols=True,
        )
        by_name = {log.name: log for log in plan.run}
        started = time.perf_counter()
        ran: list[LogRecord] = []
        try:
            with contextlib.closing(_records(tasks, ray, concurrency)) as records:
                for record in records:
                    record.identity = identities[record.log]
                    _finish(record, by_name[record.log], out, manifest)
                    ran.append(record)
                    bar.update()
                    bar.set_postfix(failed=sum(r.status == "failed" for r in ran), refresh=False)
        except BaseException:  # stopped: the pool or Ray is shut down; what was in flight leaves nothing
            finished = {r.log for r in ran}
            for log in plan.run:
                if log.name not in finished:
                    with contextlib.suppress(OSError):  # what cannot go is left to a rerun
                        (out / log.partial_name).unlink(missing_ok=True)
            raise
        finally:
            bar.close()
        wall_s = time.perf_counter() - started if tasks else 0.0
        # The directory's summary: every log its manifest holds, not only those named this time; by name,
        # whatever order the logs finished in.
        records = [manifest.records[name] for name in sorted(manifest.records)]
    log_s = sum(r.timings.get("log_s", 0.0) for r in ran if r.status == "done")
    run = {
        "runner": "pool" if ray is None else f"ray at {ray}" if ray else "ray (local)",
        "workers": None if ray else concurrency,  # a cluster's: as many as its CPUs
        "ran": len(tasks),
        "skipped": len(plan.skipped),
        "refused": len(plan.refused),
        "wall_s": wall_s,
        "log_s": log_s,
        "log_s_per_s": log_s / wall_s if wall_s else 0.0,
        # Logs replayed through, per minute: a log that failed (at once, often) is no throughput.
        "logs_per_min": 60 * sum(r.status == "done" for r in ran) / wall_s if wall_s else 0.0,
    }
    comparison = None if compare is None else compare_dirs(records, out, compare)
    # What this command asked for and did not get (its exit status): its own logs only, not the others
    # of the manifest the summary also covers.
    named = {log.name for log in logs}
    run["failed"] = sorted(name for name in named if manifest.records[name].status == "failed")
    not_compared = set()
    if comparison is not None:
        not_compared = set(comparison["errors"])
        if not comparison["logs"]:  # none matched at all: most likely the wrong OTHER_DIR
            not_compared |= set(comparison["missing"])
    run["not_compared"] = sorted(named & not_compared)
    results_now = {p.name for p in out.glob("*" + RESULTS_SUFFIX)}  # a done log's may since be removed
    summary = batch_summary(records, run, comparison, present=results_now)
    partial = out / (SUMMARY_NAME + PARTIAL_SUFFIX)
    partial.write_text(json.dumps(summary, indent=2) + "\n")
    partial.replace(out / SUMMARY_NAME)
    return summary


@contextlib.contextmanager
def _removed_if_left_empty(made: Sequence[Path]) -> Iterator[None]:
    """A batch that fails or stops before it wrote anything (a cluster it cannot reach) leaves none of
    the directories it `made` (--out and its parents, deepest first) behind empty (nor an empty
    manifest: Manifest)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):  # one not empty, or not ours to remove: it and those above stay
            for directory in made:
                directory.rmdir()
        raise


def _records(tasks: Sequence[LogTask], ray: str | None, concurrency: int) -> Iterator[LogRecord]:
    """The tasks' records as they finish: from the local pool, or from Ray (a local one with
    `concurrency` CPUs). Closing it stops the pool or Ray."""
    if not tasks:
        return
    yield from pool_records(tasks, concurrency) if ray is None else ray_records(tasks, ray, concurrency)


def _finish(record: LogRecord, log: BatchLog, out: Path, manifest: Manifest) -> None:
    """Record a finished log; a done log's results then take their final name (a kill in between leaves a
    done line without its file, which a rerun redoes). A file that took that name while the log ran is
    never written over: the log fails, saying so."""
    partial, final = out / log.partial_name, out / log.results_name
    if record.status == "done" and final.exists():
        _fail_for(record, final)
    manifest.append(record)
    if record.status == "done":
        try:
            os.link(partial, final)  # unlike rename, never over a file
        except FileExistsError:  # it came between the look above and the link
            _fail_for(record, final)
            manifest.append(record)
        except OSError as exc:  # the directory refuses it (permissions, an append-only attribute)
            record.status, record.results = "failed", ""
            record.error = f"{final}: cannot link the results into place: {exc.strerror}"
            manifest.append(record)
    try:
        partial.unlink(missing_ok=True)
    except OSError as exc:  # left: a rerun removes it (if it then can); the other logs go on
        logger.warning("%s: cannot remove it: %s", partial, exc.strerror)


def _fail_for(record: LogRecord, final: Path) -> None:
    """Turn a done record into a failed one: another file has its results' name."""
    record.status, record.results = "failed", ""
    record.error = f"{final} appeared while this log ran: not writing over it (move it away and run again)"
