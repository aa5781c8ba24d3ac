"""A stand-in for the batch's worker (fusion_pipeline.offline.worker.run_log) whose process dies on the
log named "dies", as a worker killed for memory or crashed in native code does; any other log is done
after a short while, without replaying anything. The local pool imports it in its spawned workers."""

from __future__ import annotations

import os
import time

from fusion_pipeline.offline import LogRecord
from fusion_pipeline.offline.worker import LogTask


def run_or_die(task: LogTask) -> LogRecord:
    if task.log.name == "dies":
        os._exit(9)
    time.sleep(0.3)
    return LogRecord(task.log.name, [str(p) for p in task.log.paths], "done", worker=str(os.getpid()))
