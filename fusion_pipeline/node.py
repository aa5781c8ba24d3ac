"""The node framework: what every node process shares, so that a node script is only its loop.

A node is started as ``python -m fusion_pipeline.nodes.NAME --config PATH --run-dir DIR [--stream NAME]
[--replay]`` (`node_command`);
with no ``--config`` it uses the embedded demo config. The supervisor adds ``--resume-seq STREAM=SEQ@NS``
when it restarts a node that ingests STREAM: where its predecessor's sequence left off. Its script
builds a `Node` (command line, logging, stop signals, SCHED_FIFO for the data path), opens its sockets
through it (CURVE and shared memory applied here) and runs its loop in `Node.loop`, which beats and ends
on SIGTERM/SIGINT; leaving the `with` block sends the last counters and closes everything. `run_node`
runs the script's main as the process.

Heartbeats are msgpack maps pushed (PUSH/PULL) to ``ipc://RUN_DIR/control.sock``:
``{"node", "pid", "t_ns", "counters"}``, and ``"parts"`` (name -> counters) from a node that runs other
nodes' work inside itself (nodes/composed.py), and ``"stalled_s"`` while work off its loop (that node's
model run) has lasted longer than a beat: its counters still come, its liveness is judged from when
that work began. A heartbeat is sent at most every ``pipeline.heartbeat_ms``
and never blocks the node: if the supervisor is gone, it is dropped. Besides the node's own counters,
every heartbeat carries its process's garbage collections (``gc_collections``, ``gc_pause_ms_max``), its
preemptions (``preempted``: involuntary context switches) and ``cpu_s``: where latency tails come from.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import math
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import msgpack
import zmq

from fusion_pipeline.allocator import tune_allocator
from fusion_pipeline.config import (
    CONTINUOUS_MODALITIES,
    Config,
    GraphKind,
    StreamConfig,
    check_run_dir,
    config_source,
    load_config,
)
from fusion_pipeline.errors import ConfigError, FusionError
from fusion_pipeline.protocol import RESULT_MODALITY, RESULT_STREAM, SeqMark
from fusion_pipeline.transport.errors import KeysError
from fusion_pipeline.transport.keys import load_allow_list, load_certificate
from fusion_pipeline.transport.sockets import DEFAULT_HWM, Publisher, Role, Subscriber

__all__ = [
    "CONTROL_SOCKET",
    "POLL_MS",
    "Node",
    "Parts",
    "check_host",
    "enter_realtime",
    "NODES_PACKAGE",
    "node_command",
    "node_kind",
    "node_name",
    "resume_seq_argument",
    "run_node",
    "stream_hwm",
]

CONTROL_SOCKET = "control.sock"
#: The package of the node programs: a node process is ``python -m fusion_pipeline.nodes.KIND``.
NODES_PACKAGE = "fusion_pipeline.nodes"
POLL_MS = 50  # the longest a node loop waits for input before it checks for a stop request and beats

log = logging.getLogger(__name__)

#: How long a continuous stream's socket queues last at its rate: a consumer that stalls this long
#: catches up instead of losing samples (sockets count messages, and a 1 kHz IMU's are small).
CONTINUOUS_QUEUE_S = 1.0

#: A composed node's heartbeat counters of the nodes it runs inside itself, by their node names.
Parts = dict[str, dict[str, Any]]

_stop = False


def stream_hwm(stream: StreamConfig) -> int | None:
    """The high-water mark (messages) of a continuous stream's sockets (audio, generic), from its driver
    to the synchronizer: CONTINUOUS_QUEUE_S of its messages, at least a sensor socket's default. None for
    a discrete stream: the socket role's small default, as its data is perishable."""
    if stream.modality not in CONTINUOUS_MODALITIES:
        return None
    return max(DEFAULT_HWM[Role.SENSOR], math.ceil(stream.rate_hz * CONTINUOUS_QUEUE_S))


def _request_stop(signum: int, frame: Any) -> None:
    global _stop
    _stop = True


def _stop_requested() -> bool:
    """True once SIGTERM or SIGINT arrived; node loops poll it so they exit cleanly."""
    return _stop


@dataclass
class _NodeContext:
    """Parsed command line of a node: its config, run directory and (for per-stream nodes) stream."""

    config: Config
    run_dir: Path
    stream: str | None
    name: str
    replay: bool = False  # fed by `fusion-pipeline replay`: lossless, in log order, event time
    # stream -> where its ingest's predecessor left off: a restarted node goes on from there
    resume_seq: dict[str, SeqMark] = field(default_factory=dict)

    def endpoint(self, template: str) -> str:
        return self.config.endpoint(template, self.run_dir)


def node_command(kind: str) -> list[str]:
    """The command line that starts a node of `kind` with this interpreter, before its options."""
    return [sys.executable, "-m", f"{NODES_PACKAGE}.{kind}"]


def node_kind(argv: Sequence[str]) -> str | None:
    """The kind of node a process runs, from its command line; None for any other process."""
    prefix = f"{NODES_PACKAGE}."
    return next((arg.removeprefix(prefix) for arg in argv if arg.startswith(prefix)), None)


def resume_seq_argument(stream: str, mark: SeqMark) -> list[str]:
    """The command-line option that hands a restarted node where its predecessor's ingest of `stream`
    left off (from its heartbeats' `last_seq`)."""
    return ["--resume-seq", f"{stream}={mark.seq}@{mark.time_ns}"]


def _resume_seq(text: str) -> tuple[str, SeqMark]:
    stream, _, last = text.rpartition("=")
    seq, _, at_ns = last.partition("@")
    if stream:
        with contextlib.suppress(ValueError):
            return stream, SeqMark(int(seq), int(at_ns))
    raise argparse.ArgumentTypeError(f"{text!r} is not STREAM=SEQ@TIME_NS")


def node_name(kind: str, stream: str | None) -> str:
    """The name a node logs and beats under: its kind, and its stream for a per-stream node."""
    return f"{kind}:{stream}" if stream else kind


def _node_arguments(
    kind: str, argv: list[str] | None, per_stream: bool = False, realtime: bool = False
) -> _NodeContext:
    """Parse a node's command line, set up its logging and install the stop-signal handlers.

    `realtime`: a data-path node (ingest, synchronizer, inference) enters SCHED_FIFO at the config's
    ``pipeline.realtime_priority`` (`enter_realtime`) before it opens any socket.
    """
    parser = argparse.ArgumentParser(prog=f"python -m {NODES_PACKAGE}.{kind}")
    parser.add_argument("--config", default=None, help="TOML config (default: the embedded demo)")
    parser.add_argument("--run-dir", required=True, type=Path, help="directory of the run's ipc sockets")
    if per_stream:
        parser.add_argument("--stream", required=True, help="the stream this process serves")
    parser.add_argument(
        "--replay",
        action="store_true",
        help="part of a replay graph: take every message (no skipping to the newest), block instead of "
        "dropping, and match in event time",
    )
    parser.add_argument(
        "--resume-seq",
        type=_resume_seq,
        action="append",
        default=[],
        metavar="STREAM=SEQ@TIME_NS",
        help="(given by the supervisor to a restarted node) the last seq of STREAM its predecessor's ingest "
        "accepted and when, on the stream's clock: what the stream sent meanwhile counts as lost",
    )
    args = parser.parse_args(argv)
    tune_allocator()  # sensor frames are megabytes: keep their pages mapped (fusion_pipeline.allocator)
    config = load_config(args.config)
    check_host(config, args.run_dir, config_source(args.config))
    stream = getattr(args, "stream", None)
    resume_seq = dict(args.resume_seq)
    for name in (stream, *resume_seq):
        if name is not None:
            config.stream(name)  # an unknown name fails now (ConfigError, exit 2), not later
    if len(resume_seq) != len(args.resume_seq):
        parser.error("--resume-seq: a stream given twice")
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    name = node_name(kind, stream)
    logging.basicConfig(level=config.pipeline.log_level.upper(), format=f"{name}: %(message)s")
    if realtime and config.pipeline.realtime_priority:
        enter_realtime(config.pipeline.realtime_priority)
    return _NodeContext(
        config=config,
        run_dir=args.run_dir,
        stream=stream,
        name=name,
        replay=args.replay,
        resume_seq=resume_seq,
    )


def check_host(config: Config, run_dir: Path, source: str, sockets: Sequence[tuple[str, str]] = ()) -> None:
    """Refuse, before anything starts, what this host would fail on later, one socket at a time: the
    ipc paths in `run_dir` (`check_run_dir`; `sockets` adds the caller's own) and the [security] files,
    missing, malformed, a secret other users can read, or an allow-list naming no client where this
    host binds tcp. A ConfigError that starts with `source`, the config's name."""
    control = ("pipeline.run_dir (the control socket)", f"ipc://{run_dir}/{CONTROL_SOCKET}")
    check_run_dir(config, run_dir, source, [control, *sockets])
    security = config.security
    serves_tcp = any(use.binds and use.url.startswith("tcp://") for use in config.endpoint_uses(run_dir))
    checks: list[tuple[str, str, Callable[[Path], object]]] = [
        ("certificate", security.certificate, lambda path: load_certificate(path, need_secret=True)),
        ("server_key", security.server_key, lambda path: load_certificate(path, need_secret=False)),
        ("authorized_keys", security.authorized_keys, lambda path: load_allow_list(path, serves_tcp)),
    ]
    for key, value, check in checks:
        try:
            if value:
                check(Path(value))
        except KeysError as exc:
            raise ConfigError(f"{source}: security.{key}: {exc}") from exc


def check_own_clients(config: Config, run_dir: Path, source: str, graph: GraphKind = "live") -> None:
    """Refuse a graph whose own tcp clients could never connect. Each tcp socket this host connects
    expects the server to hold `server_key` (by default the NAME.key beside `certificate`), which must
    then be a certificate. Where the `graph` dials a tcp endpoint it binds itself (its simulated drivers',
    its ingest's unless live composed, its synchronizer's; its results' readers use ipc) it is its own CURVE
    client: its allow-list must hold its own public key, and `server_key` be that key. A host that runs
    only drivers, its ingest elsewhere, connects to none of them: `run` checks this, not every node."""
    security, curve = config.security, config.security.curve()
    if curve is None:
        return
    output = config.endpoint(config.output.endpoint, run_dir)
    uses = config.endpoint_uses(run_dir, graph)  # live composed: no ingest endpoint is dialled
    dialled = [use for use in uses if use.url.startswith("tcp://") and use.url != output]
    if not dialled:
        return
    default = "" if security.server_key else " (not set: the .key beside the certificate)"
    key = f"security.server_key{default}"
    try:
        server = load_certificate(curve.server_key, need_secret=False)[0]
        public = load_certificate(curve.certificate, need_secret=True)[0]
        allowed = load_allow_list(curve.authorized_keys, need_keys=False) if curve.authorized_keys else None
    except KeysError as exc:  # check_host says what is wrong with the files given; this, with the default
        raise ConfigError(f"{source}: {key}: {exc}") from exc
    own_tcp = [use.key for use in dialled if use.binds]
    if not own_tcp:
        return
    if allowed is not None and public not in allowed:
        raise ConfigError(
            f"{source}: security.authorized_keys {security.authorized_keys} does not hold this host's own "
            f"public key (of {security.certificate}), which it presents to its own tcp servers "
            f"({', '.join(own_tcp)}): copy its .key file into it (a host that runs only the drivers, the "
            "rest of the graph elsewhere: `config check --drivers-only`)"
        )
    if server != public:
        raise ConfigError(
            f"{source}: {key} {curve.server_key} is not this host's own key (of {security.certificate}), "
            f"which its own tcp servers ({', '.join(own_tcp)}) hold: every tcp socket this host connects "
            "expects the one server_key, so these would refuse it; put the endpoints within this host on "
            "ipc, or leave server_key empty"
        )


def enter_realtime(priority: int) -> bool:
    """Run this process under SCHED_FIFO at `priority`: its threads so far (numpy's BLAS pool, started
    at import) and, by inheritance, the ones it starts later (zmq's I/O threads, onnxruntime's pool).

    A data-path node then preempts the simulated drivers, the recorder and everything else on the
    host at once instead of waiting out their scheduler slice: its p99 latency is its own work, not
    the neighbours'. The kernel's RT throttling (sched_rt_runtime_us) still leaves the rest of the
    system a share if a node ever spins. Without CAP_SYS_NICE or an rtprio limit the node keeps the
    normal scheduler and says so.
    """
    try:
        for thread in sorted(int(tid) for tid in os.listdir("/proc/self/task")):
            os.sched_setscheduler(thread, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        log.warning(  # a standing condition, said as the inference node's fallback is: WARNING first
            "WARNING: pipeline.realtime_priority = %d: SCHED_FIFO refused (%s); running under the normal "
            "scheduler (grant CAP_SYS_NICE or an rtprio limit, docs/OPERATIONS.md)",
            priority,
            exc.strerror or exc,
        )
        return False
    log.info("SCHED_FIFO priority %d", priority)
    return True


class _ProcessFigures:
    """What a node's latency tails come from, counted in the process: its garbage collections (each
    pause timed by gc.callbacks) and the times the kernel took the CPU from it while it could run
    (involuntary context switches: preemption by other work). Every heartbeat carries them."""

    def __init__(self) -> None:
        self.collections = 0
        self.pause_ns_max = 0
        self._started_ns = 0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started_ns = time.perf_counter_ns()
        else:
            self.collections += 1
            self.pause_ns_max = max(self.pause_ns_max, time.perf_counter_ns() - self._started_ns)

    def counters(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "gc_collections": self.collections,
            "gc_pause_ms_max": self.pause_ns_max / 1e6,
            "preempted": usage.ru_nivcsw,
            "cpu_s": usage.ru_utime + usage.ru_stime,
        }

    def close(self) -> None:
        gc.callbacks.remove(self._on_gc)


class _Heartbeat:
    """Periodic liveness and counters, pushed to the supervisor without ever blocking the node."""

    def __init__(self, context: _NodeContext) -> None:
        self.node = context.name
        self.interval_ns = context.config.pipeline.heartbeat_ms * 1_000_000
        self._zmq = zmq.Context()
        self._socket = self._zmq.socket(zmq.PUSH)
        self._socket.linger = 0
        self._socket.sndhwm = 4
        self._socket.connect(f"ipc://{context.run_dir}/{CONTROL_SOCKET}")
        self._last_ns = 0
        self._process = _ProcessFigures()

    def due(self) -> bool:
        return time.time_ns() - self._last_ns >= self.interval_ns

    def beat(
        self,
        counters: dict[str, Any],
        parts: Parts | None = None,
        stalled_s: float = 0.0,
        force: bool = False,
    ) -> None:
        if not force and not self.due():
            return
        self._last_ns = now = time.time_ns()
        counters = {**counters, **self._process.counters()}
        message = {"node": self.node, "pid": os.getpid(), "t_ns": now, "counters": counters}
        if parts is not None:
            message["parts"] = parts
        if stalled_s > 0:
            message["stalled_s"] = stalled_s
        # Supervisor busy or gone: liveness is best effort, the data path must not wait for it.
        with contextlib.suppress(zmq.Again):
            self._socket.send(msgpack.packb(message), zmq.NOBLOCK)

    def close(self, final_counters: dict[str, Any] | None = None, final_parts: Parts | None = None) -> None:
        """Close, after a last beat with `final_counters` when given (what the node did up to its exit)."""
        if final_counters is not None:
            self.beat(final_counters, final_parts, force=True)
        self._process.close()
        self._socket.close()
        self._zmq.term()


class Node(contextlib.AbstractContextManager["Node", None]):
    """One node process, on the model of dora's ``for event in node``::

        with Node("ingest", argv, per_stream=True, realtime=True) as node:
            source = node.subscriber(node.endpoint(node.stream.endpoint), topics=[node.stream.name])
            for _ in node.loop(counters):
                ...

    Building it parses the command line (`_node_arguments`: logging, stop signals, SCHED_FIFO before any
    socket). Its sockets are opened here so that CURVE, shared memory and a replay's lossless publishing
    are applied in one place. Leaving the `with` block, normally or on an error, sends the last counters
    (once a loop has named them) and closes the heartbeat, then the sockets, newest first.
    """

    def __init__(
        self, kind: str, argv: list[str] | None, *, per_stream: bool = False, realtime: bool = False
    ) -> None:
        context = _node_arguments(kind, argv, per_stream, realtime)
        self.config = context.config
        self.run_dir = context.run_dir
        self.name = context.name
        self.replay = context.replay  # fed by `fusion-pipeline replay`: lossless, in log order, event time
        self.resume_seq = context.resume_seq  # stream -> where its ingest's predecessor left off
        self._stream = None if context.stream is None else self.config.stream(context.stream)
        self.counters: Callable[[], dict[str, Any]] | None = None  # what the heartbeats carry
        self.parts: Callable[[], Parts] | None = None  # and, from a composed node, its parts' counters
        self.stalled_s: Callable[[], float] | None = None  # and how long its work off the loop is stuck
        self._sockets: list[Publisher | Subscriber] = []
        self._heartbeat = _Heartbeat(context)

    @property
    def stream(self) -> StreamConfig:
        """The stream this node serves (``--stream``; per-stream nodes only)."""
        if self._stream is None:
            raise TypeError(f"{self.name} is not a per-stream node")
        return self._stream

    @property
    def running(self) -> bool:
        """False once SIGTERM or SIGINT arrived."""
        return not _stop_requested()

    def endpoint(self, template: str) -> str:
        return self.config.endpoint(template, self.run_dir)

    def subscriber(self, urls: str | list[str], topics: list[str], **options: Any) -> Subscriber:
        """A Subscriber on `urls` (`options`: the transport's limits, role, hwm), closed at shutdown."""
        socket = Subscriber(urls, topics=topics, curve=self.config.curve_for(urls), **options)
        self._sockets.append(socket)
        return socket

    def publisher(
        self, url: str, stream: str, modality: str, *, shm: bool = True, **options: Any
    ) -> Publisher:
        """A Publisher of `stream` on `url` (`options`: the transport's frame_id, role, hwm), closed at
        shutdown. In a replay graph it blocks rather than drops. `shm=False` keeps large arrays in the
        frames even where ``pipeline.shm`` is on (a socket outside programs read)."""
        socket = Publisher(
            url,
            stream=stream,
            modality=modality,
            lossless=self.replay,
            curve=self.config.curve_for(url),
            shm=shm and self.config.pipeline.shm,
            **options,
        )
        self._sockets.append(socket)
        return socket

    def results_publisher(self) -> Publisher:
        """The results' Publisher on output.endpoint, and on the local ipc endpoint beside a tcp one
        (Config.local_results_endpoint). Results go to programs outside the pipeline: their arrays stay
        in the frames, never in shared memory."""
        url = self.endpoint(self.config.output.endpoint)
        sink = self.publisher(
            url, RESULT_STREAM, RESULT_MODALITY, role=Role.RESULT, hwm=self.config.output.hwm, shm=False
        )
        if (local := self.config.local_results_endpoint(self.run_dir)) != url:
            sink.bind_also(local)
        return sink

    def loop(
        self,
        counters: Callable[[], dict[str, Any]],
        parts: Callable[[], Parts] | None = None,
        stalled_s: Callable[[], float] | None = None,
    ) -> Iterator[None]:
        """One iteration per pass of the node's loop until a stop request; after each, a heartbeat with
        `counters()` (and `parts()`, the counters of the nodes it runs inside itself) when one is due,
        and `stalled_s()`, when given: how long work off the loop (a thread's) has been stuck, so that
        the supervisor judges the node hung by it while its counters keep coming. Keep each pass under
        about `POLL_MS` so a stop is seen promptly."""
        self.counters = counters
        self.parts = parts
        self.stalled_s = stalled_s
        # Everything allocated so far (modules, config, sockets, the model) lives as long as the process;
        # freezing it keeps a full garbage collection from scanning it in the data path (tens of ms).
        gc.freeze()
        while self.running:
            yield
            self.beat()

    def beat(self, counters: dict[str, Any] | None = None) -> None:
        """A heartbeat, when one is due, with `counters` or else `self.counters()` (built only then)."""
        if counters is None:
            if self.counters is None or not self._heartbeat.due():
                return
            counters = self.counters()
        parts = None if self.parts is None else self.parts()
        self._heartbeat.beat(counters, parts, 0.0 if self.stalled_s is None else self.stalled_s())

    def sleep_until(self, t_ns: int) -> bool:
        """Sleep until wall-clock `t_ns`, beating; False when a stop request cut it short."""
        while self.running and (wait_s := (t_ns - time.time_ns()) / 1e9) > 0:
            self.beat()
            time.sleep(min(wait_s, POLL_MS / 1000))
        return self.running

    def close(self) -> None:
        final_parts = None if self.parts is None else self.parts()
        self._heartbeat.close(None if self.counters is None else self.counters(), final_parts)
        for socket in reversed(self._sockets):
            socket.close()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def run_node(main: Callable[[], int]) -> NoReturn:
    """Run a node's main as its process: a FusionError or ZMQError that escapes it (a config the node
    refuses, an endpoint that cannot be bound or resolved) ends the process with one log line and exit
    code 2 instead of a traceback; the supervisor logs the exit and restarts the node with backoff."""
    try:
        code = main()
    except (FusionError, zmq.ZMQError) as exc:
        logging.getLogger("fusion_pipeline.nodes").error("stopped: %s: %s", type(exc).__name__, exc)
        code = 2
    sys.exit(code)
