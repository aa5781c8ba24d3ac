"""Offline: the pipeline's stages run over logs in one process, without sockets.

`OfflineGraph` replays a log through ingest, sync and inference in one process and writes its results as
``replay --results`` does; its sets and results equal the socket graph's (`fusion-pipeline replay
--offline`).

`run_batch` runs many logs, one task per log, on a local pool of processes or on Ray (`fusion-pipeline
batch`): each log's results in DIR/NAME.results.mcap, a `Manifest` of what became of each log (a rerun
skips the done ones), and a summary (`LogStats` per log and merged; `compare_results` against another
batch's results).
"""

from __future__ import annotations

from fusion_pipeline.offline.batch import find_logs, results_digest, run_batch
from fusion_pipeline.offline.compare import Comparison, compare_files, compare_results
from fusion_pipeline.offline.errors import BatchError
from fusion_pipeline.offline.graph import RECORDED_BY, OfflineGraph, OfflineReport
from fusion_pipeline.offline.manifest import LogRecord, Manifest
from fusion_pipeline.offline.summary import LogStats
from fusion_pipeline.offline.worker import BatchLog

__all__ = [
    "RECORDED_BY",
    "BatchError",
    "BatchLog",
    "Comparison",
    "LogRecord",
    "LogStats",
    "Manifest",
    "OfflineGraph",
    "OfflineReport",
    "compare_files",
    "compare_results",
    "find_logs",
    "results_digest",
    "run_batch",
]
