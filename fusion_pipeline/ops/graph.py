"""What a supervisor runs: the node processes of a config, and the graph spec that varies them.

A `GraphSpec` is everything that differs between `fusion-pipeline run` (`LIVE_GRAPH`) and the graph of
a replay (ops.replay_graph.REPLAY_GRAPH): which nodes start, what every node's command line adds, whether
result stamps are wall-clock capture times or a log's, and which sockets of its own the graph binds in the
run dir. The supervisor takes one and has no other variant. Pure: no processes, no sockets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fusion_pipeline.config import Config, EndpointUse, GraphKind
from fusion_pipeline.node import node_command, node_name

__all__ = ["LIVE_GRAPH", "GraphSpec", "NodeSpec", "RunSocket", "node_specs", "plain_tcp_endpoints"]

#: A socket in the run dir besides the config's: (what it is, for errors; its url in a given run dir).
RunSocket = tuple[str, Callable[[Path], str]]


@dataclass(frozen=True)
class NodeSpec:
    """One node process: `kind` is the module under nodes/, `stream` set for per-stream nodes. `parts`
    are the nodes it runs inside itself (composed): its heartbeats carry their counters under their
    names, so status, metrics and the summary read them as they read the separate nodes'."""

    kind: str
    stream: str | None = None
    parts: tuple[NodeSpec, ...] = ()

    @property
    def name(self) -> str:
        """The name the node uses in its heartbeats."""
        return node_name(self.kind, self.stream)

    def runs(self, kind: str) -> bool:
        """Whether this process does the work of a `kind` node, itself or as one of its parts."""
        return kind in (self.kind, *(part.kind for part in self.parts))

    def runs_part(self, name: str) -> bool:
        """Whether this process is the node `name` (``ingest:camera/front``) or runs it as a part."""
        return name in (self.name, *(part.name for part in self.parts))


def node_specs(config: Config, graph: GraphKind = "live", drivers: bool = True) -> list[NodeSpec]:
    """Every process of the config's `graph` ("live" or "replay"), upstream first; without `drivers`,
    no simulated driver (a replayer takes their place on their endpoints). The data path is an ingest
    node per stream, the synchronizer and inference, or live with ``pipeline.composition = "composed"``
    one node running them all; only a live graph has the recorder and the viewer the config enables."""
    specs = [NodeSpec("sensor_sim", s.name) for s in config.streams if drivers and s.driver == "sim"]
    data_path = [NodeSpec("ingest", s.name) for s in config.streams]
    data_path += [NodeSpec("synchronizer"), NodeSpec("inference")]
    live = graph == "live"
    if live and config.pipeline.composition == "composed":
        data_path = [NodeSpec("composed", parts=tuple(data_path))]
    specs += data_path
    if live:
        specs += [NodeSpec("recorder")] if config.record.enabled else []
        specs += [NodeSpec("viewer")] if config.view.enabled else []
    return specs


def plain_tcp_endpoints(config: Config, run_dir: Path, graph: GraphKind) -> list[EndpointUse]:
    """The `graph`'s tcp endpoints that run without CURVE (``security.insecure`` and no certificate)."""
    uses = config.endpoint_uses(run_dir, graph)
    return [u for u in uses if u.url.startswith("tcp://") and not config.curve_for(u.url)]


@dataclass(frozen=True)
class GraphSpec:
    """The graph a Supervisor runs. The defaults are the live pipeline's."""

    drivers: bool = True  # start a simulated driver for each ``driver = "sim"`` stream
    node_args: tuple[str, ...] = ()  # appended to every node's command line
    log_time: bool = False  # result stamps are a log's, not today's (ops.metrics.ResultStats.log_time)
    sockets: tuple[RunSocket, ...] = ()  # checked with the config's before any node starts (node.check_host)
    # A replay's graph runs the separate nodes whatever pipeline.composition says, and neither a
    # recorder (it would copy the log it reads) nor a viewer (its lossless sockets would wait for it).
    kind: GraphKind = "live"

    def nodes(self, config: Config) -> list[NodeSpec]:
        return node_specs(config, self.kind, drivers=self.drivers)

    def argv(self, node: NodeSpec, config_path: Path | None, run_dir: Path) -> list[str]:
        """``python -m fusion_pipeline.nodes.KIND [--config PATH] --run-dir DIR [--stream NAME]`` and the
        graph's own."""
        argv = node_command(node.kind)
        if config_path is not None:
            argv += ["--config", str(config_path)]
        argv += ["--run-dir", str(run_dir)]
        if node.stream:
            argv += ["--stream", node.stream]
        return [*argv, *self.node_args]


LIVE_GRAPH = GraphSpec()
