"""The pipeline graph a replay runs: the supervisor's graph minus the drivers, recorder and viewer.

`REPLAY_GRAPH` is the spec a plain Supervisor is given. The replayer takes the drivers' place on their
endpoints; every node gets ``--replay``: ingest and inference take every message (no skipping to the
newest), publishers block instead of dropping, and the synchronizer matches in event time, in the
replayer's send order, so a log yields the same sets at any replay speed (docs/ARCHITECTURE.md, "Time").
Result stamps are the log's, so the summary works in log time. The replayer binds the end-of-replay
socket once the nodes are up: too long a path is refused with the config's, before they start. A config
with ``pipeline.composition = "composed"`` is replayed through the separate nodes too: the composed node
is a live-latency choice with no replay mode, and the replay's sets and results do not depend on it.

`SupervisorThread` runs the supervisor in a background thread, so the replayer can publish from the
calling thread; `ready()` waits until every node has sent its first heartbeat, which each node sends only
after its sockets exist.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from fusion_pipeline.logs.errors import LogError
from fusion_pipeline.ops.graph import GraphSpec
from fusion_pipeline.ops.supervisor import Supervisor
from fusion_pipeline.sync.reorder import end_endpoint

__all__ = ["REPLAY_GRAPH", "SupervisorThread"]

#: After the last node's first heartbeat: time for its ZeroMQ connections to complete (ipc: ~ms).
SETTLE_S = 0.5

REPLAY_GRAPH = GraphSpec(
    drivers=False,
    node_args=("--replay",),
    log_time=True,
    sockets=(("pipeline.run_dir (the end-of-replay socket)", end_endpoint),),
    kind="replay",
)


class SupervisorThread:
    """`supervisor.run()` in a daemon thread from construction until `finish()`."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.summary: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, name="replay-graph", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.summary = self.supervisor.run()

    def ready(self, timeout_s: float = 60.0) -> None:
        """Wait for every node's first heartbeat; LogError naming the silent ones on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            silent = [n.spec.name for n in self.supervisor.nodes if n.last_beat is None]
            if not silent:
                time.sleep(SETTLE_S)
                return
            time.sleep(0.05)
        raise LogError(f"replay graph not ready after {timeout_s:.0f} s: no heartbeat from {silent}")

    def finish(self) -> dict[str, Any]:
        """Stop the graph and return the supervisor's summary."""
        self.supervisor.stop()
        self._thread.join()
        return self.summary
