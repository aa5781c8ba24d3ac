"""The supervisor behind `fusion-pipeline run`: start every node of a config, watch, restart, summarise.

Each node is its own process, ``python -m nodes.KIND [--config PATH] --run-dir DIR [--stream NAME]``:
a simulated driver per stream with ``driver = "sim"``, an ingest node per stream, the synchronizer,
the inference node and, with ``record.enabled``, the recorder. The supervisor

- forwards every line a node prints, prefixed with the node's name;
- binds the PULL end of ``ipc://RUN_DIR/control.sock`` and reads the nodes' heartbeats (fusion_pipeline.node);
- restarts a node that exits or stops heartbeating, after an exponential backoff, and counts restarts;
- subscribes to the results endpoint and collects each result's stage stamps (fusion_pipeline.ops.metrics);
- answers `fusion-pipeline status` on ``ipc://RUN_DIR/status.sock`` from its loop, and serves Prometheus
  metrics over HTTP from a thread, both from a health.PipelineSnapshot of its state (ops.status,
  ops.exporter); a private temp run dir is recorded in status.run_file for the status command;
- prints a status line about once a second (refreshed in place on a terminal, every STATUS_PLAIN_S
  otherwise) and a summary at the end;
- on stop (SIGINT/SIGTERM or the end of ``--duration``) sends SIGTERM to every node, SIGKILLs what is
  left after STOP_GRACE_S, removes the run's ipc files and, when it created the run directory, the
  directory itself.

Children are also asked to receive SIGTERM from the kernel if the supervisor itself dies (Linux
PR_SET_PDEATHSIG), so even a `kill -9` of the supervisor leaves no orphan sensors behind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import msgpack
import zmq

import fusion_pipeline
from fusion_pipeline.config import Config, ConfigError, EndpointUse, config_source
from fusion_pipeline.inference import RESULT_STREAM, wants_tensorrt
from fusion_pipeline.node import CONTROL_SOCKET, check_host
from fusion_pipeline.ops.exporter import MetricsServer, PipelineCollector
from fusion_pipeline.ops.health import (
    CounterWindow,
    LatencyHistogram,
    NodeSnapshot,
    Notice,
    PipelineSnapshot,
    SilenceWatch,
    StreamSnapshot,
    arrived,
    flow_counts,
    ingest_drops,
    silence,
    silent_after_s,
    stale_after_s,
    status_report,
    status_tags,
)
from fusion_pipeline.ops.metrics import CounterTotals, ResultRatio, ResultStats
from fusion_pipeline.ops.status import (
    STATUS_SOCKET,
    StatusError,
    StatusServer,
    forget_run_dir,
    record_run_dir,
)
from fusion_pipeline.protocol import Endpoint
from fusion_pipeline.transport.sockets import Role, Subscriber, prepare_bind, remove_ipc_file

__all__ = ["NodeSpec", "RestartPolicy", "Supervisor", "lock_run_dir", "node_specs", "plain_tcp_endpoints"]

STOP_GRACE_S = 3.0  # SIGTERM, then SIGKILL after this long
STATUS_PLAIN_S = 10.0  # status line period when stderr is not a terminal
RATIO_MARGIN_S = 1.0  # the result ratio ignores the last second before the stop
LOOP_MS = 100
_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
RUN_LOCK = "supervisor.lock"  # in a fixed run dir: held by the supervisor running there, holds its pid
MAX_HEARTBEAT_BYTES = 64 * 1024  # a heartbeat is a small map of counters; larger is refused by libzmq
SNAPSHOT_S = 0.5  # how often the loop refreshes the snapshot behind /metrics (a status request: always)
_NEVER = 2**63 - 1


@dataclass(frozen=True)
class NodeSpec:
    """One node process: `kind` is the module under nodes/, `stream` set for per-stream nodes."""

    kind: str
    stream: str | None = None

    @property
    def name(self) -> str:
        """The name the node uses in its heartbeats (fusion_pipeline.node.NodeContext.name)."""
        return f"{self.kind}:{self.stream}" if self.stream else self.kind


def node_specs(config: Config) -> list[NodeSpec]:
    """Every process of the config's graph, upstream first."""
    specs = [NodeSpec("sensor_sim", s.name) for s in config.streams if s.driver == "sim"]
    specs += [NodeSpec("ingest", s.name) for s in config.streams]
    specs += [NodeSpec("synchronizer"), NodeSpec("inference")]
    return specs + [NodeSpec("recorder")] if config.record.enabled else specs


def plain_tcp_endpoints(config: Config, run_dir: Path) -> list[EndpointUse]:
    """The graph's tcp endpoints that run without CURVE (``security.insecure`` and no certificate)."""
    return [
        u for u in config.endpoint_uses(run_dir) if u.url.startswith("tcp://") and not config.curve_for(u.url)
    ]


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
    restarts: int = 0
    failures: int = 0  # consecutive
    restart_at: float | None = None
    reader: threading.Thread | None = None
    exits: list[int] = field(default_factory=list)


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when the supervisor dies; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    return lambda: libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def lock_run_dir(run_dir: Path) -> int:
    """Take the run dir's lock (an open fd) or refuse: a second supervisor there would bind over the
    first one's sockets and take its sensors' data."""
    fd = os.open(run_dir / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(
            f"pipeline.run_dir: {run_dir} is in use by another `fusion-pipeline run` (pid {owner}); "
            "stop that one, or give this pipeline its own run_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class Supervisor:
    """Runs one pipeline until `stop()` or the duration ends; `run()` returns the summary dict."""

    #: Result stamps are wall-clock capture times; a replay graph's are a log's (see ResultStats.log_time).
    LOG_TIME = False

    def __init__(
        self,
        config: Config,
        config_path: Path | None,
        *,
        policy: RestartPolicy | None = None,
        warmup_s: float = 0.0,
        out: TextIO = sys.stderr,
    ) -> None:
        self.config = config
        self.config_path = config_path.resolve() if config_path is not None else None
        self.policy = policy or RestartPolicy()
        self.warmup_s = warmup_s
        self.out = out
        self.tty = out.isatty()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._status_shown = False
        source = config_source(config_path)
        if config.pipeline.run_dir:
            self.run_dir = Path(config.pipeline.run_dir).expanduser().resolve()
            check_host(config, self.run_dir, source, self._own_sockets(self.run_dir))  # before it is made
            # Created 0700, or refused now when others can enter it (the nodes would refuse it anyway).
            prepare_bind(Endpoint(f"ipc://{self.run_dir}/{CONTROL_SOCKET}"))
            self._run_lock: int | None = lock_run_dir(self.run_dir)
            self._own_run_dir = False
        else:
            self.run_dir = Path(tempfile.mkdtemp(prefix=f"fusion-{config.pipeline.name}-"))
            self._run_lock = None  # a fresh directory of our own: nobody else can be in it
            self._own_run_dir = True
            try:
                check_host(config, self.run_dir, source, self._own_sockets(self.run_dir))
            except ConfigError:
                self.run_dir.rmdir()  # made a moment ago, still empty
                raise
        self.nodes = [_Node(spec) for spec in node_specs(config)]
        self.counters = CounterTotals()
        self.stats = ResultStats({s.modality for s in config.streams}, log_time=self.LOG_TIME)
        self._preexec = _parent_death_signal()
        self.ratio = ResultRatio()
        self._stopped_ns = _NEVER
        # Health and metrics: flow counters over a recent window, latency histograms fed one result at a
        # time, and the newest snapshot, which the metrics thread reads.
        self._window = CounterWindow()
        self._latency = {stage: LatencyHistogram() for stage in ("model", "end_to_end")}
        self._started = time.monotonic()
        self._all_up: float | None = None  # monotonic: when every node had sent its first heartbeat
        self._silence = SilenceWatch()
        self._notices: list[Notice] = []
        self._metrics = "off (metrics.enabled = false)"
        self.latest: PipelineSnapshot | None = None

    def _own_sockets(self, run_dir: Path) -> list[tuple[str, str]]:
        """The run's sockets in the run dir besides the config's and the nodes' control socket
        (node.check_host), as (what, url): checked with them in __init__, before anything starts.
        Called before the subclass's __init__ body: it may read only the class and `self.config`."""
        return [("pipeline.run_dir (the status socket)", f"ipc://{run_dir}/{STATUS_SOCKET}")]

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
        results = Subscriber(
            results_url,
            topics=[RESULT_STREAM],
            role=Role.RESULT,
            hwm=1000,
            curve=self.config.curve_for(results_url),
        )
        poller = zmq.Poller()
        poller.register(control, zmq.POLLIN)
        poller.register(results.socket, zmq.POLLIN)
        status = StatusServer(context, self.run_dir)
        poller.register(status.socket, zmq.POLLIN)
        started = self._started = time.monotonic()
        self.stats.since_ns = _NEVER  # set once every node is up (see _drain_heartbeats)
        self._log(
            f"run dir {self.run_dir}; {len(self.nodes)} nodes; config {self.config_path or '<embedded demo>'}"
        )
        config_option = f" -c {self.config_path}" if self.config.curve_for(results_url) else ""
        self._log(f"results on {results_url}: fusion-pipeline echo {results_url}{config_option}")
        for use in plain_tcp_endpoints(self.config, self.run_dir):
            self._warn(
                Notice(
                    "insecure tcp",
                    f"{use.key} {use.url} is plain tcp: no encryption, no authentication "
                    "(security.insecure = true)",
                )
            )
        metrics, run_file = self._open_metrics(), self._record_run_dir()
        try:
            for node in self.nodes:
                self._start(node)
            next_status = time.monotonic() + 1.0
            next_snapshot = 0.0
            last_status = (time.monotonic(), self._rates_base())
            while not self._stop.is_set():
                now = time.monotonic()
                if duration_s is not None and now - started >= duration_s:
                    break
                for socket, _ in poller.poll(LOOP_MS):
                    if socket is control:
                        self._drain_heartbeats(control)
                    elif socket is status.socket:
                        status.answer(lambda: status_report(self.snapshot(time.monotonic())))
                    else:
                        self._drain_results(results)
                self._watch(time.monotonic())
                if time.monotonic() >= next_snapshot:
                    self._log_silence(self.snapshot(time.monotonic()))
                    next_snapshot = time.monotonic() + SNAPSHOT_S
                if time.monotonic() >= next_status:
                    # A log (not a terminal) gets no line of zeros while the nodes start: its first line
                    # counts rates from the first result on.
                    waiting = not self.tty and not self.stats.results
                    last_status = (
                        (time.monotonic(), self._rates_base()) if waiting else self._status(last_status)
                    )
                    next_status = time.monotonic() + (1.0 if self.tty or waiting else STATUS_PLAIN_S)
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
            self._clean_run_dir()
            if run_file is not None:
                forget_run_dir(run_file, self.run_dir)
            if self._run_lock is not None:
                os.close(self._run_lock)  # the lock goes with it; the file stays (removing it would race)
                self._run_lock = None
        summary = self.summary(elapsed)
        self._clear_status()
        return summary

    def snapshot(self, now: float) -> PipelineSnapshot:
        """The pipeline's state now (monotonic `now`), kept as `latest` for the metrics thread."""
        heartbeat_ms = self.config.pipeline.heartbeat_ms
        totals = {n.spec.name: self.counters.totals(n.spec.name) for n in self.nodes}
        flows = {n.spec.name: flow_counts(n.spec.kind, totals[n.spec.name]) for n in self.nodes}
        counts = {f"{name}.{k}": v for name, flow in flows.items() for k, v in flow.items()}
        # Silence is measured on what ingest publishes; what arrives and why it was dropped tell a
        # driver that sends nothing from data that ingest refuses.
        drops: dict[str, dict[str, int]] = {}
        for s in self.config.streams:
            ingest = totals.get(f"ingest:{s.name}", {})
            drops[s.name] = ingest_drops(ingest)
            counts[f"ingest:{s.name}.arrived"] = arrived(ingest)
            counts.update({f"ingest:{s.name}.drop.{r}": n for r, n in drops[s.name].items()})
        self._window.add(now, counts)
        nodes = []
        for node in self.nodes:
            name, process = node.spec.name, node.process
            alive = process is not None and process.poll() is None
            rates = {k: self._window.rate(f"{name}.{k}") for k in flows[name]}
            nodes.append(
                NodeSnapshot(
                    name=name,
                    kind=node.spec.kind,
                    stream=node.spec.stream,
                    pid=process.pid if process is not None else None,
                    alive=alive,
                    restart_pending=node.restart_at is not None,
                    uptime_s=now - node.started if alive else None,
                    heartbeat_age_s=now - node.last_beat if node.last_beat is not None else None,
                    restarts=node.restarts,
                    counters=totals[name],
                    rates={k: v for k, v in rates.items() if v is not None},
                )
            )
        # Silence counts from the moment every node was up: a driver still importing is not silent.
        up_s = 0.0 if self._all_up is None else now - self._all_up
        streams = []
        for s in self.config.streams:
            node, out = f"ingest:{s.name}", f"ingest:{s.name}.out"
            streams.append(
                StreamSnapshot(
                    name=s.name,
                    modality=s.modality,
                    required=s.required,
                    rate_hz=s.rate_hz,
                    messages_per_s=self._window.rate(f"{node}.in"),
                    idle_s=min(up_s, self._window.idle_s(out, now)),
                    silent_s=silent_after_s(s.rate_hz, heartbeat_ms),
                    driver=s.driver,
                    endpoint=self.config.endpoint(s.endpoint, self.run_dir),
                    arrived=self._window.grown(f"{node}.arrived", since=out),
                    arrived_idle_s=self._window.idle_s(f"{node}.arrived", now),
                    dropped={r: self._window.grown(f"{node}.drop.{r}", since=out) for r in drops[s.name]},
                )
            )
        self.latest = PipelineSnapshot(
            pipeline=self.config.pipeline.name,
            run_dir=str(self.run_dir),
            uptime_s=now - self._started,
            stale_s=stale_after_s(heartbeat_ms, self.policy.heartbeat_timeout_s),
            nodes=nodes,
            streams=streams,
            results=self.stats.results,
            sets_full=self.stats.full,
            sets_partial=self.stats.partial,
            missing=dict(self.stats.missing),
            provider=self.stats.provider,
            latency={stage: h.cumulative() for stage, h in self._latency.items()},
            notices=tuple(self._notices),
            metrics=self._metrics,
            results_endpoint=self.config.endpoint(self.config.output.endpoint, self.run_dir),
        )
        return self.latest

    def _open_metrics(self) -> MetricsServer | None:
        """Serve /metrics when enabled; an address it cannot serve on (a port taken) is a notice and the
        pipeline runs without metrics."""
        settings = self.config.metrics
        if not settings.enabled:
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
        self._log(f"metrics at {server.url}")
        return server

    def _warn(self, notice: Notice) -> None:
        """Log a standing condition once and keep it for `status` and the status line."""
        self._notices.append(notice)
        self._log(f"WARNING: {notice.text}")

    def _log_silence(self, snapshot: PipelineSnapshot) -> None:
        """Say once when a stream goes silent and when it comes back. Not in a replay: there the log, not
        a driver, decides what arrives."""
        if self.LOG_TIME:
            return
        went, back = self._silence.changes(snapshot)
        for stream in went:
            self._log(f"WARNING: {silence(stream)}")
        for stream in back:
            self._log(f"stream {stream.name} flowing again")

    def _record_run_dir(self) -> Path | None:
        """Make a private temp run dir discoverable by `fusion-pipeline status` (ops.status.run_file)."""
        if not self._own_run_dir:
            return None
        try:
            path = record_run_dir(self.config.pipeline.name, self.run_dir)
        except (OSError, StatusError) as exc:
            self._log(f"WARNING: cannot record the run dir for `fusion-pipeline status`: {exc}")
            return None
        self._log(f"run dir recorded in {path}")
        return path

    def _result_ratio(self) -> tuple[int, int]:
        """(results, reference messages) from the first reference-ingest heartbeat after the warm-up to
        the last one at least RATIO_MARGIN_S before the stop (later messages may still be in flight
        when the nodes are stopped): the share of reference stamps that yielded a result."""
        return self.ratio.counts(self._stopped_ns - round(RATIO_MARGIN_S * 1e9))

    def summary(self, elapsed_s: float) -> dict[str, Any]:
        reference = self.config.sync.reference
        reference_messages = (
            self.counters.totals(f"ingest:{reference}").get("produced", 0) if reference else 0
        )
        window_results, window_messages = self._result_ratio()
        inference = self.counters.totals("inference")
        sync = self.counters.totals("synchronizer")
        return {
            "pipeline": self.config.pipeline.name,
            "config": str(self.config_path) if self.config_path else "<embedded demo>",
            "duration_s": round(elapsed_s, 3),
            "warmup_s": self.warmup_s,
            **self.stats.summary(),
            "reference_stream": reference,
            "reference_messages": reference_messages,
            "result_ratio": round(window_results / window_messages, 4) if window_messages else None,
            "log_time": self.LOG_TIME,
            "result_ratio_counts": [window_results, window_messages],
            "sync_sets_full": sync.get("sets_full", 0),
            "sync_sets_partial": sync.get("sets_partial", 0),
            "inference_skipped": inference.get("skipped", 0),
            "restarts": {n.spec.name: n.restarts for n in self.nodes},
            "restarts_total": sum(n.restarts for n in self.nodes),
            "exit_codes": {n.spec.name: n.exits for n in self.nodes if n.exits},
            "drops": self.counters.drops(),
            "counters": {name: self.counters.totals(name) for name in self.counters.nodes()},
        }

    # -- processes --------------------------------------------------------------------------------------

    def _argv(self, spec: NodeSpec) -> list[str]:
        argv = [sys.executable, "-m", f"nodes.{spec.kind}"]
        if self.config_path is not None:
            argv += ["--config", str(self.config_path)]
        argv += ["--run-dir", str(self.run_dir)]
        return argv + (["--stream", spec.stream] if spec.stream else [])

    def _start(self, node: _Node) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # One BLAS thread per node: the pipeline's parallelism is its processes, and OpenBLAS's idle
        # workers spin, which under pipeline.realtime_priority (SCHED_FIFO) would hold a core.
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        # The nodes package sits next to fusion_pipeline; make it importable from any working directory.
        root = str(Path(fusion_pipeline.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        node.process = subprocess.Popen(
            self._argv(node.spec),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor only; it stops the nodes
            preexec_fn=self._preexec,  # only prctl(2) runs between fork and exec
        )
        node.started = time.monotonic()
        node.last_beat = None
        node.restart_at = None
        node.reader = threading.Thread(target=self._forward, args=(node.spec.name, node.process), daemon=True)
        node.reader.start()

    def _forward(self, name: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            # A node's own log lines start with its name too (for running it alone): say it once.
            line = raw.decode(errors="replace").rstrip("\n").removeprefix(f"{name}: ")
            if not self.tty:  # onnxruntime colours its log even into a pipe; journald shows the codes raw
                line = _ANSI_COLOUR.sub("", line)
            self._log(line, prefix=name)
        process.stdout.close()

    def _watch(self, now: float) -> None:
        """Restart nodes that exited or went silent, once their backoff has passed."""
        for node in self.nodes:
            process = node.process
            if node.restart_at is not None:
                if now >= node.restart_at:
                    node.restarts += 1
                    self._log(f"restarting {node.spec.name} (restart {node.restarts})")
                    self._start(node)
                continue
            assert process is not None
            code = process.poll()
            if code is None:
                silent = now - (node.last_beat if node.last_beat is not None else node.started)
                beating = node.last_beat is not None
                limit = self.policy.heartbeat_timeout_s if beating else self._start_timeout(node.spec)
                if silent < limit:
                    continue
                self._log(
                    f"{node.spec.name} (pid {process.pid}) sent no heartbeat for {silent:.1f} s: killing it"
                )
                process.kill()
                code = process.wait()
            self._schedule_restart(node, code, now)

    def _start_timeout(self, spec: NodeSpec) -> float:
        if spec.kind == "inference" and wants_tensorrt(self.config.model):
            return self.policy.tensorrt_start_timeout_s
        return self.policy.start_timeout_s

    def _schedule_restart(self, node: _Node, code: int, now: float) -> None:
        node.exits.append(code)
        node.failures = 1 if now - node.started >= self.policy.stable_s else node.failures + 1
        delay = self.policy.delay(node.failures)
        how = f"signal {-code}" if code < 0 else f"code {code}"
        self._log(f"{node.spec.name} exited ({how}); restart in {delay:.2f} s")
        node.restart_at = now + delay

    def _shutdown(self) -> None:
        running = [n.process for n in self.nodes if n.process is not None and n.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._log(f"pid {process.pid} ignored SIGTERM for {STOP_GRACE_S} s: killing it")
                process.kill()
                process.wait()
        for node in self.nodes:
            if node.reader is not None:
                node.reader.join(timeout=1.0)

    def _clean_run_dir(self) -> None:
        """Remove every ipc socket file of the run (a killed node cannot remove its own)."""
        config = self.config
        urls = [config.endpoint(s.endpoint, self.run_dir) for s in config.streams]
        urls += [config.ingest_endpoint(s.name, self.run_dir) for s in config.streams]
        urls += [config.endpoint(u, self.run_dir) for u in (config.sync.endpoint, config.output.endpoint)]
        urls.append(f"ipc://{self.run_dir}/{CONTROL_SOCKET}")
        for url in urls:
            remove_ipc_file(Endpoint(url))
        if self._own_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

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
            node = by_name.get(name)
            if node is None or node.process is None or node.process.pid != pid:
                continue  # a stale beat of a process already replaced
            if self.stats.since_ns == _NEVER and all(
                n.last_beat is not None or n is node for n in self.nodes
            ):
                # Every node is up: the warm-up starts now (imports and model loading are behind us). A
                # replay's stamps are log times: there every result counts.
                self.stats.since_ns = 0 if self.LOG_TIME else time.time_ns() + round(self.warmup_s * 1e9)
                self._all_up = now
            node.last_beat = now
            self.counters.update(name, pid, counters)
            reference = name == f"ingest:{self.config.sync.reference}"
            if reference and not self.LOG_TIME and beat.get("t_ns", 0) >= self.stats.since_ns:
                self.ratio.mark(int(beat["t_ns"]), self.counters.totals(name).get("produced", 0))

    def _drain_results(self, results: Subscriber) -> None:
        while (result := results.recv(timeout_ms=0)) is not None:
            durations = self.stats.add(result, time.time_ns())
            self.ratio.result(result.stamp_ns)
            for stage, histogram in self._latency.items():
                if stage in durations:
                    histogram.observe(durations[stage])

    # -- output -----------------------------------------------------------------------------------------

    def _log(self, line: str, prefix: str = "supervisor") -> None:
        with self._lock:
            if self._status_shown:
                self.out.write("\r\x1b[K")
                self._status_shown = False
            self.out.write(f"[{prefix}] {line}\n")
            self.out.flush()

    def _rates_base(self) -> dict[str, int]:
        return {
            s.name: self.counters.totals(f"ingest:{s.name}").get("produced", 0) for s in self.config.streams
        }

    def _status(self, last: tuple[float, dict[str, int]]) -> tuple[float, dict[str, int]]:
        now, counts = time.monotonic(), self._rates_base()
        dt = max(1e-3, now - last[0])
        rates = " ".join(
            f"{name.split('/')[0]} {(counts[name] - last[1].get(name, 0)) / dt:4.1f}Hz" for name in counts
        )
        model, e2e = self.stats.recent_ms()
        if model is None:
            latency = "no results yet"
        else:
            latency = f"model {model:.1f}ms" + ("" if e2e is None else f" e2e {e2e:.1f}ms")
        restarts = sum(n.restarts for n in self.nodes)
        tags = status_tags(self.latest) if self.latest is not None else []
        line = " | ".join(
            [
                rates,
                f"sets full {self.stats.full} partial {self.stats.partial}",
                latency,
                self.stats.provider or "-",
                f"restarts {restarts}",
                *tags,
            ]
        )
        with self._lock:
            if self.tty:
                self.out.write(f"\r\x1b[K{line}")
                self._status_shown = True
            else:
                self.out.write(f"[status] {line}\n")
            self.out.flush()
        return now, counts

    def _clear_status(self) -> None:
        with self._lock:
            if self._status_shown:
                self.out.write("\r\x1b[K")
                self.out.flush()
                self._status_shown = False
