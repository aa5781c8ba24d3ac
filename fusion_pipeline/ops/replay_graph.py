"""The pipeline graph a replay runs: the supervisor's graph minus the sensor drivers, in event time.

The replayer takes the drivers' place on their endpoints; every node gets ``--replay``: ingest and
inference take every message (no skipping to the newest), publishers block instead of dropping, and the
synchronizer matches in event time, in the replayer's send order, so a log yields the same sets at any
replay speed (docs/ARCHITECTURE.md, "Time"). The supervisor runs in a background thread, so the replayer
can publish from the calling thread; `ready()` waits until every node has sent its first heartbeat,
which each node sends only after its sockets exist.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from fusion_pipeline.config import Config
from fusion_pipeline.logs.records import LogError
from fusion_pipeline.ops.supervisor import NodeSpec, Supervisor
from fusion_pipeline.sync.reorder import end_endpoint

__all__ = ["ReplayGraph"]

#: After the last node's first heartbeat: time for its ZeroMQ connections to complete (ipc: ~ms).
SETTLE_S = 0.5


class ReplayGraph(Supervisor):
    """Ingest, synchronizer (event time) and inference of `config`, supervised, without drivers."""

    LOG_TIME = True  # results carry the log's capture stamps, not today's

    def __init__(self, config: Config, config_path: Path | None, **kwargs: Any) -> None:
        super().__init__(config, config_path, **kwargs)
        self.nodes = [node for node in self.nodes if node.spec.kind != "sensor_sim"]
        self._thread: threading.Thread | None = None
        self.result: dict[str, Any] = {}

    def _own_sockets(self, run_dir: Path) -> list[tuple[str, str]]:
        # The replayer binds the end-of-replay socket once the nodes are up: too long a path must be
        # refused before they start, like the config's own.
        own = super()._own_sockets(run_dir)
        return [*own, ("pipeline.run_dir (the end-of-replay socket)", end_endpoint(run_dir))]

    def _argv(self, spec: NodeSpec) -> list[str]:
        argv = super()._argv(spec)
        return [*argv, "--replay"]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="replay-graph", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.result = self.run()

    def ready(self, timeout_s: float = 60.0) -> None:
        """Wait for every node's first heartbeat; LogError naming the silent ones on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            silent = [n.spec.name for n in self.nodes if n.last_beat is None]
            if not silent:
                time.sleep(SETTLE_S)
                return
            time.sleep(0.05)
        raise LogError(f"replay graph not ready after {timeout_s:.0f} s: no heartbeat from {silent}")

    def finish(self) -> dict[str, Any]:
        """Stop the graph and return the supervisor's summary."""
        self.stop()
        if self._thread is not None:
            self._thread.join()
        return self.result
