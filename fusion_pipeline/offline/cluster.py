"""A batch on Ray (the `[cluster]` extra): one Ray task per log, on a cluster or on a Ray started here.

Each task is `worker.run_log` with one CPU: Ray runs as many at once as its nodes have CPUs, and a Ray
worker process keeps its graph from one task to the next. Tasks read the logs and write their results
at the paths the batch gives them, so every node must see the logs and the batch's directory at the same
paths (a shared file system), and have this package installed. Ray is imported only here, and only when
a batch asks for it: the runtime installs without it.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator, Sequence
from types import ModuleType

from fusion_pipeline.extras import install_hint
from fusion_pipeline.offline.errors import BatchError
from fusion_pipeline.offline.manifest import LogRecord
from fusion_pipeline.offline.worker import LogTask, failed_record, run_log

__all__ = ["import_ray", "ray_records"]


def import_ray() -> ModuleType:
    """The ray module, or a BatchError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise BatchError(
            f"--ray needs Ray, which is not installed ({exc}): {install_hint('cluster')}"
        ) from None
    return ray


def _last_line(text: str) -> str:
    """A Ray error's own line (its text may hold a remote traceback before it)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text


def ray_records(tasks: Sequence[LogTask], address: str, cpus: int) -> Iterator[LogRecord]:
    """Each task's record as it finishes: on the Ray cluster at `address`, or ("") on a Ray started
    here with `cpus` CPUs and shut down at the end."""
    ray = import_ray()
    # ray.init takes SIGTERM over (its driver then dies with a stack dump, its tasks' partial files and
    # its agents left behind): the caller's handlers are put back, so a stop goes through ray.shutdown.
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def restore_handlers() -> None:
        for signum, handler in handlers.items():
            if handler is not None:  # None: set outside Python, nothing to put back
                signal.signal(signum, handler)

    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(
                num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
            )
    except ConnectionError as exc:
        raise BatchError(f"--ray {address}: no Ray cluster to connect to there: {exc}") from exc
    except ValueError as exc:  # Ray's word on the address itself (its form, a Ray Client it lacks)
        raise BatchError(f"--ray {address}: {_last_line(str(exc))}") from exc
    except BaseException as exc:  # a stop while Ray starts: what it started goes too
        restore_handlers()  # a second stop meets the caller's, not Ray's
        ray.shutdown()
        if isinstance(exc, SystemExit):  # Ray's own SIGTERM handlers exit (15, or 1 from its node's)
            raise KeyboardInterrupt from None
        raise
    finally:
        restore_handlers()
    try:
        remote = ray.remote(num_cpus=1)(run_log)
        tasks_by_ref = {remote.remote(task): task for task in tasks}
        pending = list(tasks_by_ref)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as exc:  # the task's worker or node died, after Ray's retries
                    yield failed_record(tasks_by_ref[ref], f"Ray: {_last_line(str(exc))}")
    finally:
        ray.shutdown()
