"""Offline: the pipeline's stages run over logs in one process, without sockets.

`OfflineGraph` replays a log through ingest, sync and inference in one process and writes its results as
``replay --results`` does; its sets and results equal the socket graph's (`fusion-pipeline replay
--offline`). The batch runner over many logs will live beside it.
"""

from __future__ import annotations

from fusion_pipeline.offline.graph import RECORDED_BY, OfflineGraph, OfflineReport

__all__ = ["RECORDED_BY", "OfflineGraph", "OfflineReport"]
