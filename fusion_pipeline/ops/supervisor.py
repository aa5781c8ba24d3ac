"""The supervisor behind `fusion-pipeline run`: start every node of a graph, watch, restart, summarise.

Each node is its own process, ``python -m fusion_pipeline.nodes.KIND [--config PATH] --run-dir DIR
[--stream NAME]``:
a simulated driver per stream with ``driver = "sim"``, an ingest node per stream, the synchronizer,
the inference node (or, with ``pipeline.composition = "composed"``, one node doing their work, whose
heartbeats report it under their names: ops.graph.NodeSpec.parts) and, with ``record.enabled`` and
``view.enabled``, the recorder and the viewer (not in a replay). A replay runs the same supervisor with
another ops.graph.GraphSpec (ops.replay_graph). In its
run dir (ops.rundir) the supervisor

- forwards every line a node prints, prefixed with the node's name;
- binds the PULL end of ``ipc://RUN_DIR/control.sock`` and reads the nodes' heartbeats (fusion_pipeline.node);
- restarts a node that exits or stops heartbeating, after an exponential backoff, and counts restarts;
  a restarted node that ingests streams gets ``--resume-seq`` from its predecessor's last heartbeat, so
  what was sent while it was down counts as lost;
- watches each stream for silence once its own nodes are up, or once their start timeout has passed;
- subscribes to the results endpoint and collects each result's stage stamps (fusion_pipeline.ops.metrics);
- answers `fusion-pipeline status` on ``ipc://RUN_DIR/status.sock`` from its loop, and serves Prometheus
  metrics over HTTP from a thread, both from a health.PipelineSnapshot of its state (ops.status,
  ops.exporter); a private temp run dir is recorded in status.run_file for the status command;
- prints a status line about once a second (ops.statusline) and a summary at the end;
- on stop (SIGINT, SIGTERM, SIGHUP or the end of ``--duration``) sends SIGTERM to every node, SIGKILLs what is
  left after STOP_GRACE_S, and closes the run dir.

Children are also asked to receive SIGTERM from the kernel if the supervisor itself dies (Linux
PR_SET_PDEATHSIG), so even a `kill -9` of the supervisor leaves no orphan sensors behind.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import msgpack
import zmq

import fusion_pipeline
from fusion_pipeline.config import Config, absolute_config
from fusion_pipeline.inference import wants_tensorrt
from fusion_pipeline.lifetime import die_with_parent
from fusion_pipeline.node import CONTROL_SOCKET, resume_seq_argument
from fusion_pipeline.ops.exporter import MetricsServer, PipelineCollector
from fusion_pipeline.ops.graph import LIVE_GRAPH, GraphSpec, NodeSpec, RunSocket, plain_tcp_endpoints
from fusion_pipeline.ops.health import (
    CounterWindow,
    LatencyHistogram,
    NodeSnapshot,
    Notice,
    PipelineSnapshot,
    SilenceWatch,
    StreamSnapshot,
    Throughput,
    arrived,
    behind,
    clock_off,
    flow_counts,
    ingest_drops,
    silence,
    silent_after_s,
    silent_streams,
    stale_after_s,
    status_report,
)
from fusion_pipeline.ops.metrics import CounterTotals, ResultRatio, ResultStats, is_count, prefixed
from fusion_pipeline.ops.rundir import RunDir
from fusion_pipeline.ops.status import STATUS_SOCKET, StatusServer
from fusion_pipeline.ops.statusline import StatusLine
from fusion_pipeline.protocol import RESULT_STREAM, SeqMark
from fusion_pipeline.transport.shm import remove_orphans
from fusion_pipeline.transport.sockets import Role, Subscriber

__all__ = ["RestartPolicy", "Supervisor", "run_sockets"]

STOP_GRACE_S = 3.0  # SIGTERM, then SIGKILL after this long
RATIO_MARGIN_S = 1.0  # the result ratio ignores the last second before the stop
LOOP_MS = 100
MAX_HEARTBEAT_BYTES = 64 * 1024  # a heartbeat is a small map of counters; larger is refused by libzmq
SNAPSHOT_S = 0.5  # how often the loop refreshes the snapshot behind /metrics (a status request: always)
#: The nodes a reference message goes through to its result.
DATA_PATH_KINDS = ("ingest", "synchronizer", "inference", "composed")
#: Reference messages the rate window must hold to judge whether results keep up with them: at 5 s, a
#: reference under 2 Hz is not judged (one late result would move its rate by half).
JUDGED_MESSAGES = 10
_NEVER = 2**63 - 1
#: The supervisor's own socket in the run dir (ops.status), checked with the graph's.
_STATUS: RunSocket = (
    "pipeline.run_dir (the status socket)",
    lambda run_dir: f"ipc://{run_dir}/{STATUS_SOCKET}",
)


def run_sockets(graph: GraphSpec) -> list[RunSocket]:
    """The sockets a run of `graph` makes in its run dir besides the config's."""
    return [_STATUS, *graph.sockets]


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff before restart k of a node that keeps failing: initial_s * 2**(k-1), at most max_s. A node
    that ran stable_s without failing starts again from initial_s. A node is declared hung when it sent
    no heartbeat for heartbeat_timeout_s (or start_timeout_s after its start, which covers imports and
    model warm-up)."""

    initial_s: float = 0.25
    max_s: float = 8.0
    stable_s: float = 10.0
    heartbeat_timeout_s: float = 5.0
    start_timeout_s: float = 30.0
    tensorrt_start_timeout_s: float = 900.0  # a first TensorRT engine build takes minutes

    def delay(self, failures: int) -> float:
        return min(self.max_s, self.initial_s * 2 ** max(0, failures - 1))


@dataclass
class _Node:
    spec: NodeSpec
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0  # monotonic
    last_beat: float | None = None
    # Since when the current process has beaten without a stall: its first heartbeat (its imports and model
    # loaded), or its first one after it was hung.
    up_since: float | None = None
    hung_since: float | None = None  # its last heartbeat, while it is hung (said once each way)
    stalled: bool = False  # its last heartbeat said its model's run has been going for longer (stalled_s)
    restarts: int = 0
    failures: int = 0  # consecutive
    restart_at: float | None = None
    reader: threading.Thread | None = None
    exits: list[int] = field(default_factory=list)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Signal a node and what it started (the viewer's rerun server): each node leads its own process
    group (_node_preexec), so a child it leaves behind cannot keep a port or a file past it."""
    with contextlib.suppress(ProcessLookupError):  # the group is gone: the node exited, leaving nothing
        os.killpg(process.pid, signum)


def _node_preexec() -> Callable[[], None]:
    """A preexec_fn putting the child in a process group of its own and, on Linux, asking the kernel to
    SIGTERM it when the supervisor dies.

    A process group of its own, so a terminal's Ctrl-C reaches the supervisor only (which stops the
    nodes); not a session of its own, which would also give the node an autogroup of its own, where the
    viewer's SCHED_IDLE would no longer rank it below the data path (docs/ARCHITECTURE.md).
    (`Popen(process_group=0)` does the first part from Python 3.11 on.)"""

    def preexec() -> None:
        os.setpgid(0, 0)
        die_with_parent()

    return preexec


class Supervisor:
    """Runs one pipeline `graph` until `stop()` or the duration ends; `run()` returns the summary dict.
    The run dir is checked and taken here, before anything starts (a ConfigError), and let go by `run()`."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None,
        *,
        graph: GraphSpec = LIVE_GRAPH,
        policy: RestartPolicy | None = None,
        warmup_s: float = 0.0,
        out: TextIO | None = None,
    ) -> None:
        self.config = config
        self.config_path = absolute_config(config_path) if config_path is not None else None
        self.graph = graph
        self.policy = policy or RestartPolicy()
        self.warmup_s = warmup_s
        self.line = StatusLine(out or sys.stderr)  # sys.stderr as it is now (a test may have replaced it)
        self._stop = threading.Event()
        self._dir = RunDir.open(config, config_path, run_sockets(graph), graph.kind)
        self.run_dir = self._dir.path
        self.nodes = [_Node(spec) for spec in graph.nodes(config)]
        # pid -> time.time() each node process was seen exited: the shared-memory sweep's owners.
        self._exited: dict[int, float] = {}
        self.counters = CounterTotals()
        # The streams results can lack: those the model takes (an unbound generic stream never reaches it).
        fed = [s.name for s in config.streams if s.name not in config.model.unbound_streams]
        self.stats = ResultStats(fed, log_time=graph.log_time)
        self._preexec = _node_preexec()
        self.ratio = ResultRatio()
        self._stopped_ns = _NEVER
        # Health and metrics: flow counters over a recent window, latency histograms fed one result at a
        # time, and the newest snapshot, which the metrics thread reads.
        self._window = CounterWindow()
        self._latency = {stage: LatencyHistogram() for stage in ("model", "end_to_end")}
        self._started = time.monotonic()
        # monotonic: when the warm-up began (every node's first heartbeat, or the start timeout)
        self._all_up: float | None = None
        self._stale_s = stale_after_s(config.pipeline.heartbeat_ms, self.policy.heartbeat_timeout_s)
        self._silence = SilenceWatch()
        self._watched: dict[str, float] = {}  # stream -> since when its silence is watched
        self._behind = False  # results behind the reference, as last said
        self._clock_off: set[str] = set()  # streams whose clock runs ahead or behind, as last said
        self._notices: list[Notice] = []
        self._metrics = "off (metrics.enabled = false)"
        self.latest: PipelineSnapshot | None = None

    # -- public -----------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run()` to shut down; safe from a signal handler."""
        self._stop.set()

    def run(self, duration_s: float | None = None) -> dict[str, Any]:
        context = zmq.Context()
        control = context.socket(zmq.PULL)
        control.linger = 0
        control.maxmsgsize = MAX_HEARTBEAT_BYTES
        control.bind(f"ipc://{self.run_dir}/{CONTROL_SOCKET}")
        results_url = self.config.endpoint(self.config.output.endpoint, self.run_dir)
        local_url = self.config.local_results_endpoint(self.run_dir)
        results = Subscriber(local_url, topics=[RESULT_STREAM], role=Role.RESULT, hwm=1000)
        poller = zmq.Poller()
        poller.register(control, zmq.POLLIN)
        poller.register(results.socket, zmq.POLLIN)
        status = StatusServer(context, self.run_dir)
        poller.register(status.socket, zmq.POLLIN)
        started = self._started = time.monotonic()
        self.stats.since_ns = _NEVER  # set once every node is up (_begin_warmup)
        self.line.log(
            f"run dir {self.run_dir}; {len(self.nodes)} nodes; config {self.config_path or '<embedded demo>'}"
        )
        if ignored := self.config.live_only(self.graph.kind):
            self.line.log(f"{', '.join(ignored)}: live only, not in this graph (a {self.graph.kind}'s)")
        beside = f" (on this host also {local_url})" if local_url != results_url else ""
        self.line.log(f"results on {results_url}{beside}: fusion-pipeline echo {shlex.quote(local_url)}")
        for use in plain_tcp_endpoints(self.config, self.run_dir, self.graph.kind):
            self._warn(
                Notice(
                    "insecure tcp",
                    f"{use.key} {use.url} is plain tcp: no encryption, no authentication "
                    "(security.insecure = true)",
                )
            )
        metrics = self._open_metrics()
        self._dir.record(self.line.log)
        try:
            for node in self.nodes:
                self._start(node)
            next_snapshot = 0.0
            self.line.start(time.monotonic(), self._produced())
            while not self._stop.is_set():
                now = time.monotonic()
                if duration_s is not None and now - started >= duration_s:
                    break
                results.check_connections()  # this loop polls the sockets itself
                for socket, _ in poller.poll(LOOP_MS):
                    if socket is control:
                        self._drain_heartbeats(control)
                    elif socket is status.socket:
                        status.answer(lambda: status_report(self.snapshot(time.monotonic())))
                    else:
                        self._drain_results(results)
                self._stop_waiting_for_start(time.monotonic())
                self._restart_failed_nodes(time.monotonic())
                if time.monotonic() >= next_snapshot:
                    self._dir.take_over(self.line.log)
                    self._log_flow(self.snapshot(time.monotonic()))
                    next_snapshot = time.monotonic() + SNAPSHOT_S
                now = time.monotonic()
                if self.line.due(now):
                    restarts = sum(n.restarts for n in self.nodes)
                    self.line.update(now, self._produced(), self.stats, restarts, self.latest)
        finally:
            elapsed = time.monotonic() - started
            self._stopped_ns = time.time_ns()
            self._shutdown()
            self._drain_heartbeats(control)
            self._drain_results(results)
            if metrics is not None:
                metrics.close()
            status.close()
            results.close()
            control.close()
            context.term()
            self._dir.close()
        summary = self.summary(elapsed)
        self.line.clear()
        return summary

    def snapshot(self, now: float) -> PipelineSnapshot:
        """The pipeline's state now (monotonic `now`), kept as `latest` for the metrics thread."""
        heartbeat_ms = self.config.pipeline.heartbeat_ms
        # A composed node's parts count as the nodes they stand for: per-stream ingest figures included.
        specs = [spec for n in self.nodes for spec in (n.spec, *n.spec.parts)]
        totals = {spec.name: self.counters.totals(spec.name) for spec in specs}
        flows = {spec.name: flow_counts(spec.kind, totals[spec.name]) for spec in specs}
        counts = {f"{name}.{k}": v for name, flow in flows.items() for k, v in flow.items()}
        # Silence is measured on what ingest publishes; what arrives and why it was dropped tell a
        # driver that sends nothing from data that ingest refuses.
        drops: dict[str, dict[str, int]] = {}
        for s in self.config.streams:
            ingest = totals.get(f"ingest:{s.name}", {})
            drops[s.name] = ingest_drops(ingest)
            counts[f"ingest:{s.name}.arrived"] = arrived(ingest)
            counts.update({f"ingest:{s.name}.drop.{r}": n for r, n in drops[s.name].items()})
        if isinstance(refused := totals.get("inference", {}).get("bad_sets"), int):
            counts["inference.refused"] = refused
        self._window.add(now, counts)
        nodes = []
        for node in self.nodes:
            name, process = node.spec.name, node.process
            alive = process is not None and process.poll() is None
            # A node not up (starting, restarting) has no rates of its own: its counters are its
            # predecessor's, carried over, and the window's rates would be theirs.
            rates = {k: self._window.rate(f"{name}.{k}") for k in flows[name]} if node.up_since else {}
            nodes.append(
                NodeSnapshot(
                    name=name,
                    kind=node.spec.kind,
                    stream=node.spec.stream,
                    pid=process.pid if alive else None,  # an exited pid may be reused
                    alive=alive,
                    restart_pending=node.restart_at is not None,
                    uptime_s=now - node.started if alive else None,
                    heartbeat_age_s=now - node.last_beat if node.last_beat is not None else None,
                    restarts=node.restarts,
                    counters=totals[name],
                    rates={k: v for k, v in rates.items() if v is not None},
                    parts={part.name: totals[part.name] for part in node.spec.parts},
                )
            )
        streams = []
        for s in self.config.streams:
            node, out = f"ingest:{s.name}", f"ingest:{s.name}.out"
            watched = self._watched_since(s.name, now)
            heard = self._last_heard(node, now)
            streams.append(
                StreamSnapshot(
                    name=s.name,
                    modality=s.modality,
                    required=s.required,
                    rate_hz=s.rate_hz,
                    messages_per_s=self._window.rate(f"{node}.in"),
                    idle_s=0.0
                    if watched is None
                    else min(now - watched, self._window.idle_s(out, heard), self._up_for(node, now)),
                    silent_s=silent_after_s(s.rate_hz, heartbeat_ms),
                    driver=s.driver,
                    endpoint=self.config.endpoint(s.endpoint, self.run_dir),
                    to_model=s.name not in self.config.model.unbound_streams,
                    arrived=self._window.grown(f"{node}.arrived", since=out),
                    arrived_idle_s=self._window.idle_s(f"{node}.arrived", now),
                    dropped={r: self._window.grown(f"{node}.drop.{r}", since=out) for r in drops[s.name]},
                    handshake_failing=str(totals.get(node, {}).get("handshake_failing", "")),
                )
            )
        self.latest = PipelineSnapshot(
            pipeline=self.config.pipeline.name,
            run_dir=str(self.run_dir),
            uptime_s=now - self._started,
            stale_s=self._stale_s,
            nodes=nodes,
            streams=streams,
            results=self.stats.results,
            sets_full=self.stats.full,
            sets_partial=self.stats.partial,
            missing=dict(self.stats.missing),
            provider=self.stats.provider,
            latency={stage: h.cumulative() for stage, h in self._latency.items()},
            notices=tuple(self._notices),
            throughput=self._throughput(now),
            metrics=self._metrics,
            results_endpoint=self.config.endpoint(self.config.output.endpoint, self.run_dir),
            max_wait_ms=math.inf if self.graph.log_time else self.config.sync.max_wait_ms,
        )
        return self.latest

    def _watched_since(self, stream: str, now: float) -> float | None:
        """Since when `stream` can be silent: from the moment its own nodes (its simulated driver, the
        node running its ingest) are up or past their start timeout. A driver still importing is not
        silent; nor does a model still loading elsewhere (a TensorRT engine build takes minutes) hide a
        dead sensor until it is done. None: not yet."""
        if stream not in self._watched:
            own = self._own_nodes(stream)
            if any(n.last_beat is None and now - self._started < self._start_timeout(n.spec) for n in own):
                return None
            self._watched[stream] = now
        return self._watched[stream]

    def _own_nodes(self, stream: str) -> list[_Node]:
        """The nodes a stream's flow needs: its simulated driver, the node running its ingest."""
        driver, ingest = f"sensor_sim:{stream}", f"ingest:{stream}"
        return [n for n in self.nodes if n.spec.name == driver or n.spec.runs_part(ingest)]

    def _last_heard(self, part: str, now: float) -> float:
        """Until when the counters of the node running `part` tell its stream's flow: now, or the last
        heartbeat of a hung one (a composed node in a long model run, a wedged ingest): its state says so,
        and its streams are not called silent for what it cannot report."""
        for n in self.nodes:
            if n.spec.runs_part(part) and n.hung_since is not None:
                return n.hung_since
        return now

    def _up_for(self, part: str, now: float) -> float:
        """How long the node running `part` has been up since it last came (back) up: a restarted node's
        streams are judged from its return, as at the start, not called silent for its restart's gap
        (its state says it). Unbounded for a node never up: the start timeout judges that one."""
        for n in self.nodes:
            if n.spec.runs_part(part):
                if n.up_since is not None:
                    return now - n.up_since
                return 0.0 if n.spec.name in self.counters.nodes() else math.inf
        return math.inf

    def _throughput(self, now: float) -> Throughput | None:
        """The reference's messages per second over the rate window, stage by stage (health.behind): live,
        in reference mode, once every data-path node has beaten a whole window long without a stall (a
        restart's gap, a hang or a model still loading is said as such, not as results missing) and the
        window holds enough reference messages to judge (a reference slower than that is not judged)."""
        reference, window_s = self.config.sync.reference, self._window.window_s
        if self.graph.log_time or self.config.sync.mode != "reference" or reference is None:
            return None
        data_path = [n for n in self.nodes if n.spec.kind in DATA_PATH_KINDS]
        steady = [n.up_since is not None and now - n.up_since >= window_s for n in data_path]
        if not all(steady) or any(n.hung_since is not None for n in data_path):
            return None  # a window that spans a start, a restart or a stall: its rates say nothing
        arrived = self._window.rate(f"ingest:{reference}.arrived")
        if arrived is None or arrived * window_s < JUDGED_MESSAGES:
            return None
        rates = [self._window.rate(key) or 0.0 for key in (f"ingest:{reference}.out", "synchronizer.out")]
        results, refused = (self._window.rate(f"inference.{k}") or 0.0 for k in ("out", "refused"))
        return Throughput(reference, arrived, *rates, results, refused)

    def _open_metrics(self) -> MetricsServer | None:
        """Serve /metrics when enabled; an address it cannot serve on (a port taken) is a notice and the
        pipeline runs without metrics."""
        settings = self.config.metrics
        if not settings.enabled:
            self.line.log("metrics off (metrics.enabled = false)")
            return None
        try:
            server = MetricsServer(PipelineCollector(lambda: self.latest), settings.host, settings.port)
        except OSError as exc:
            why = "port taken" if exc.errno == errno.EADDRINUSE else "cannot serve"
            self._metrics = f"off ({why})"
            self._warn(
                Notice(
                    f"metrics off ({why})",
                    f"metrics off ({why}): cannot serve on {settings.address}: "
                    f"{exc.strerror or exc} (metrics.address)",
                )
            )
            return None
        self._metrics = server.url
        self.line.log(f"metrics at {server.url}")
        return server

    def _warn(self, notice: Notice) -> None:
        """Log a standing condition once and keep it for `status` and the status line."""
        self._notices.append(notice)
        self.line.log(f"WARNING: {notice.text}")

    def _log_flow(self, snapshot: PipelineSnapshot) -> None:
        """Say once when a stream goes silent and when it comes back, and when the results fall behind
        the reference and when they keep up again. Not in a replay: there the log, not a driver, decides
        what arrives."""
        if self.graph.log_time:
            return
        went, back = self._silence.changes(snapshot)
        for stream in went:
            self.line.log(f"WARNING: {silence(stream)}")
        for stream in back:
            self.line.log(f"stream {stream.name} flowing again")
        off = clock_off(snapshot)
        for name in off.keys() - self._clock_off:
            self.line.log(f"WARNING: {off[name]}")
        for name in sorted(self._clock_off - off.keys()):
            self.line.log(f"stream {name}: its stamps agree with its arrival again")
        self._clock_off = set(off)
        lagging, t = behind(snapshot), snapshot.throughput
        if lagging is None or t is None:  # cannot be judged now: as it was last said
            return
        if lagging and not self._behind:
            self.line.log(f"WARNING: {lagging}")
        elif self._behind and not lagging:
            self.line.log(
                f"results keeping up again: {t.results:.1f}/s for {t.arrived:.1f}/s of {t.reference}"
            )
        self._behind = bool(lagging)

    def _ratio_until_ns(self) -> int:
        """The end of the result ratio's window: the last reference-ingest heartbeat at least
        RATIO_MARGIN_S before the stop (later messages may still be in flight when the nodes stop)."""
        return self._stopped_ns - round(RATIO_MARGIN_S * 1e9)

    def _result_ratio(self) -> tuple[int, int]:
        """(results, reference messages) from the first reference-ingest heartbeat after the warm-up to
        the end of the window: the share of reference stamps that yielded a result."""
        return self.ratio.counts(self._ratio_until_ns())

    def summary(self, elapsed_s: float) -> dict[str, Any]:
        reference = self.config.sync.reference
        ingest = {s.name: self.counters.totals(f"ingest:{s.name}") for s in self.config.streams}
        reference_ingest = ingest[reference] if reference else {}
        window_results, window_messages = self._result_ratio()
        inference = self.counters.totals("inference")
        sync = self.counters.totals("synchronizer")
        heard = set(self.counters.nodes())  # the nodes that sent a heartbeat: up at some point
        return {
            "pipeline": self.config.pipeline.name,
            "config": str(self.config_path) if self.config_path else "<embedded demo>",
            "duration_s": round(elapsed_s, 3),
            "warmup_s": self.warmup_s,
            **self.stats.summary(),
            # the inference node's own count: the first results can come before this supervisor listens
            "results_published": inference.get("results", 0),
            "reference_stream": reference,
            "reference_messages": reference_ingest.get("produced", 0),
            # of the reference's messages, those ingest passed over for newer ones and those that never came
            "reference_skipped": reference_ingest.get("skipped", 0),
            "reference_lost": reference_ingest.get("seq_lost", 0),
            # of the reference's messages ingest published, those the synchronizer never took in: sent
            # before it was connected (at the start, or while it restarted)
            "reference_unsynchronized": max(
                0, reference_ingest.get("produced", 0) - sync.get(f"received.{reference}", 0)
            )
            if reference
            else 0,
            # live, configured streams of which not one message reached their ingest although their own
            # nodes were up (a dead or absent sensor); a replay's report says what its log holds
            "nothing_received": [
                s.name
                for s in self.config.streams
                if not self.graph.log_time
                and not arrived(ingest[s.name])
                and all(n.spec.name in heard for n in self._own_nodes(s.name))
            ],
            # live, streams silent when the run stopped (idle s), those of which nothing arrived aside: a
            # sensor that stopped partway, which the result ratio (of what arrived) does not show
            "silent_at_stop": {
                s.name: {"silent_s": round(s.idle_s, 1), "required": s.required}
                for s in (silent_streams(self.latest) if self.latest is not None else [])
                if not self.graph.log_time and arrived(ingest[s.name])
            },
            # streams whose ingest's handshake with the driver still failed at the stop, and how
            "handshake_failing": {
                name: failing
                for name, counters in ingest.items()
                if (failing := counters.get("handshake_failing"))
            },
            # nodes that never sent a heartbeat: a run stopped before they were up, or a start that fails
            "not_up": [n.spec.name for n in self.nodes if n.spec.name not in heard],
            "result_ratio": round(window_results / window_messages, 4) if window_messages else None,
            "log_time": self.graph.log_time,
            "result_ratio_counts": [window_results, window_messages],
            # of those messages, counted from their results: no heartbeat reported them (a killed node)
            "result_ratio_unreported": self.ratio.unreported(self._ratio_until_ns()),
            "sync_sets_full": sync.get("sets_full", 0),
            "sync_sets_partial": sync.get("sets_partial", 0),
            "sync_sets_missing_required": sync.get("sets_missing_required", 0),
            "sync_sets_published": sync.get("sets_published", 0),
            # Sets that held each generic stream no model input takes (model.unbound_streams).
            "unbound_held": prefixed(sync, "unbound_held."),
            "inference_skipped": inference.get("skipped", 0),
            "restarts": {n.spec.name: n.restarts for n in self.nodes},
            "restarts_total": sum(n.restarts for n in self.nodes),
            "exit_codes": {n.spec.name: n.exits for n in self.nodes if n.exits},
            "drops": self.counters.drops(),
            "counters": {name: self.counters.totals(name) for name in self.counters.nodes()},
        }

    # -- processes --------------------------------------------------------------------------------------

    def _start(self, node: _Node) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # One BLAS thread per node: the pipeline's parallelism is its processes, and OpenBLAS's idle
        # workers spin, which under pipeline.realtime_priority (SCHED_FIFO) would hold a core.
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        # The nodes import this very fusion_pipeline (a source tree on PYTHONPATH, or installed).
        root = str(Path(fusion_pipeline.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        node.process = subprocess.Popen(
            self.graph.argv(node.spec, self.config_path, self.run_dir) + self._resume_arguments(node.spec),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=self._preexec,  # only setpgid(2) and prctl(2) run between fork and exec
        )
        node.started = time.monotonic()
        node.last_beat = node.up_since = node.hung_since = None
        node.stalled = False
        node.restart_at = None
        node.reader = threading.Thread(target=self._forward, args=(node.spec.name, node.process), daemon=True)
        node.reader.start()

    def _forward(self, name: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self.line.node_output(name, raw)
        process.stdout.close()

    def _begin_warmup(self, now: float) -> None:
        """Start the warm-up: imports and model loading are behind us.
        A replay's stamps are log times: there every result counts."""
        self.stats.since_ns = 0 if self.graph.log_time else time.time_ns() + round(self.warmup_s * 1e9)
        self._all_up = now

    def _stop_waiting_for_start(self, now: float) -> None:
        """A node still not up when the longest start timeout has passed is failing, not starting: it
        must not hold back the warm-up."""
        if self._all_up is not None or now - self._started < max(
            self._start_timeout(n.spec) for n in self.nodes
        ):
            return
        down = [n.spec.name for n in self.nodes if n.last_beat is None]
        self.line.log(f"not up after their start timeout: {', '.join(down)}; the warm-up begins without them")
        self._begin_warmup(now)

    def _restart_failed_nodes(self, now: float) -> None:
        """Restart nodes that exited or went silent, once their backoff has passed."""
        for node in self.nodes:
            process = node.process
            if node.restart_at is not None:
                if now >= node.restart_at:
                    node.restarts += 1
                    self.line.log(f"restarting {node.spec.name} (restart {node.restarts})")
                    self._start(node)
                continue
            assert process is not None
            code = process.poll()
            if code is None:
                silent = now - (node.last_beat if node.last_beat is not None else node.started)
                beating = node.last_beat is not None
                limit = self.policy.heartbeat_timeout_s if beating else self._start_timeout(node.spec)
                what = "its model's run unfinished" if node.stalled else "no heartbeat"
                if beating and node.hung_since is None and silent > self._stale_s:
                    node.hung_since = node.last_beat
                    self.line.log(
                        f"WARNING: {node.spec.name} (pid {process.pid}) hung: {what} for {silent:.1f} s "
                        f"(killed and restarted at {limit:g} s)"
                    )
                if silent < limit:
                    continue
                what = "its model's run unfinished" if node.stalled else "sent no heartbeat"
                self.line.log(f"{node.spec.name} (pid {process.pid}) {what} for {silent:.1f} s: killing it")
                _signal_group(process, signal.SIGKILL)
                code = process.wait()
            self._schedule_restart(node, code, now)

    def _resume_arguments(self, spec: NodeSpec) -> list[str]:
        """For a restarted node: where its ingest of each stream left off (the predecessor's last
        heartbeat), so the messages sent while it was down count as `seq_lost`, not as nothing."""
        arguments = []
        for part in (spec, *spec.parts):
            last = self.counters.totals(part.name).get("last_seq") if part.kind == "ingest" else None
            if part.stream and isinstance(last, list) and len(last) == 2 and all(is_count(v) for v in last):
                arguments += resume_seq_argument(part.stream, SeqMark(*last))
        return arguments

    def _start_timeout(self, spec: NodeSpec) -> float:
        if spec.runs("inference") and wants_tensorrt(self.config.model):
            return self.policy.tensorrt_start_timeout_s
        return self.policy.start_timeout_s

    def _schedule_restart(self, node: _Node, code: int, now: float) -> None:
        assert node.process is not None
        # Exited or killed: restarting, neither hung nor up, so its streams are not judged silent for its
        # hang or its restart's gap (its state says it) until it is back up.
        node.hung_since = node.up_since = None
        self._exited[node.process.pid] = time.time()
        node.exits.append(code)
        node.failures = 1 if now - node.started >= self.policy.stable_s else node.failures + 1
        delay = self.policy.delay(node.failures)
        how = f"signal {-code}" if code < 0 else f"code {code}"
        self.line.log(f"{node.spec.name} exited ({how}); restart in {delay:.2f} s")
        node.restart_at = now + delay

    def _shutdown(self) -> None:
        running = {
            n.spec.name: n.process for n in self.nodes if n.process is not None and n.process.poll() is None
        }
        for process in running.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for name, process in running.items():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.line.log(f"{name} (pid {process.pid}) ignored SIGTERM for {STOP_GRACE_S} s: killing it")
                _signal_group(process, signal.SIGKILL)
                process.wait()
        for node in self.nodes:
            if node.reader is not None:
                node.reader.join(timeout=1.0)
        if self.config.pipeline.shm:
            # A node killed (SIGKILL, a hang) leaves its rings in /dev/shm; the next ring made on the host
            # only takes older ones. Every node has exited now: whatever ring they hold is an orphan.
            now = time.time()
            for process in running.values():  # ended just now; their pids may have served earlier nodes
                self._exited[process.pid] = now
            for node in self.nodes:  # ended before, unnoticed: its exit time is no later than now
                if node.process is not None:
                    self._exited.setdefault(node.process.pid, now)
            for path in remove_orphans(exited=self._exited):
                self.line.log(f"removed {path}: the shared-memory ring of a node that was killed")

    # -- messages ---------------------------------------------------------------------------------------

    def _drain_heartbeats(self, control: zmq.Socket) -> None:
        now = time.monotonic()
        by_name = {n.spec.name: n for n in self.nodes}
        while True:
            try:
                raw = control.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                beat = msgpack.unpackb(raw)
                name, pid, counters = beat["node"], int(beat["pid"]), beat["counters"]
            except (ValueError, KeyError, TypeError, msgpack.UnpackException):
                continue  # a heartbeat is advisory; a garbled one is ignored
            if not (
                isinstance(name, str) and isinstance(counters, dict) and isinstance(beat.get("t_ns", 0), int)
            ):
                continue
            node = by_name.get(name)
            if node is None or node.process is None or node.process.pid != pid:
                continue  # a stale beat of a process already replaced
            if self._all_up is None and all(n.last_beat is not None or n is node for n in self.nodes):
                self._begin_warmup(now)  # every node is up
            # Work off a node's loop stuck this long (a composed node's model run): it is as alive as then.
            stalled_s = beat.get("stalled_s", 0.0)
            if not isinstance(stalled_s, int | float) or not 0 <= stalled_s < now:
                stalled_s = 0.0
            if node.hung_since is not None and not stalled_s:
                self.line.log(f"{name} running again after {now - node.hung_since:.1f} s hung")
                node.hung_since, node.up_since = None, now  # its counters' window spans the stall
            node.up_since = node.up_since or now
            node.last_beat, node.stalled = now - stalled_s, bool(stalled_s)
            self.counters.update(name, pid, counters)
            parts = beat.get("parts")
            for part in node.spec.parts:
                if isinstance(parts, dict) and isinstance(parts.get(part.name), dict):
                    self.counters.update(part.name, pid, parts[part.name])
            reference = f"ingest:{self.config.sync.reference}"
            beats_reference = reference in (name, *(part.name for part in node.spec.parts))
            if beats_reference and not self.graph.log_time and beat.get("t_ns", 0) >= self.stats.since_ns:
                self.ratio.mark(int(beat["t_ns"]), self.counters.totals(reference).get("produced", 0))

    def _drain_results(self, results: Subscriber) -> None:
        while (result := results.recv(timeout_ms=0)) is not None:
            durations = self.stats.add(result, time.time_ns())
            self.ratio.result(result.stamp_ns)
            for stage, histogram in self._latency.items():
                if stage in durations:
                    histogram.observe(durations[stage])

    # -- output -----------------------------------------------------------------------------------------

    def _produced(self) -> dict[str, int]:
        """Messages each stream's ingest node has published: the status line's rates."""
        return {
            s.name: self.counters.totals(f"ingest:{s.name}").get("produced", 0) for s in self.config.streams
        }
