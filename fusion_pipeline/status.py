"""`fusion-pipeline status`: ask a running supervisor how its nodes are, over ``ipc://RUN_DIR/status.sock``.

The supervisor binds a REP socket there (`StatusServer`, served from its main loop) and answers a msgpack
request ``{"request": "status"}`` with the msgpack map of health.status_report: per node state, pid,
uptime, restarts, heartbeat age and rates; per stream rate, idle time and silence; ``degraded`` and the
reasons; the warnings (health.Notice), the results endpoint and the metrics URL. The command prints it
as a table (or JSON) and exits 0 when healthy, 1 when degraded, 2 when no supervisor answers.

Where the run directory is: ``--run-dir``, else the config's ``pipeline.run_dir``, else (empty: the
supervisor made a private temp dir) the run file the supervisor records, ``run_file(pipeline name)``:
``$XDG_RUNTIME_DIR/fusion-pipeline/NAME.run``, or ``TMPDIR/fusion-pipeline-UID/NAME.run`` without
XDG_RUNTIME_DIR, in a 0700 directory of the user; removed when the supervisor exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import zmq

from fusion_pipeline.cli import config_argument
from fusion_pipeline.errors import FusionError

__all__ = [
    "STATUS_SOCKET",
    "StatusError",
    "StatusServer",
    "forget_run_dir",
    "format_status",
    "query",
    "record_run_dir",
    "recorded_run_dir",
    "register",
    "run_file",
]

STATUS_SOCKET = "status.sock"
REQUEST = {"request": "status"}
MAX_REQUEST_BYTES = 4096  # a request is a tiny map; anything larger is refused by libzmq unread

EXIT_HEALTHY, EXIT_DEGRADED, EXIT_UNREACHABLE = 0, 1, 2


class StatusError(FusionError):
    """No supervisor to ask (exit 2); the message says where the command looked."""


class StatusServer:
    """The supervisor's end: a REP socket in the run directory, answered without blocking."""

    def __init__(self, context: zmq.Context, run_dir: Path) -> None:
        self.url = f"ipc://{run_dir}/{STATUS_SOCKET}"
        self.socket = context.socket(zmq.REP)
        self.socket.linger = 0
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        self.socket.bind(self.url)

    def answer(self, report: Callable[[], dict[str, Any]]) -> None:
        """Answer every queued request: a status request with `report()`, anything else with an error."""
        while True:
            try:
                raw = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                request = msgpack.unpackb(raw)
            except (ValueError, msgpack.UnpackException):
                request = None
            reply = report() if request == REQUEST else {"error": f"unknown request; send {REQUEST}"}
            # A client that gave up is gone: its reply is dropped, the loop must not wait for it.
            with contextlib.suppress(zmq.Again):
                self.socket.send(msgpack.packb(reply), zmq.NOBLOCK)

    def close(self) -> None:
        self.socket.close()
        with contextlib.suppress(FileNotFoundError):
            Path(self.url.removeprefix("ipc://")).unlink()


def query(run_dir: Path, timeout_s: float, looked: str = "") -> dict[str, Any]:
    """Ask the supervisor of `run_dir` for its status report; StatusError when none answers."""
    path = run_dir / STATUS_SOCKET
    where = f"{path}{f' ({looked})' if looked else ''}"
    if not path.exists():
        raise StatusError(f"no supervisor running: {where} does not exist")
    context = zmq.Context()
    socket = context.socket(zmq.REQ)
    socket.linger = 0
    try:
        socket.connect(f"ipc://{path}")
        socket.send(msgpack.packb(REQUEST))
        if not socket.poll(round(timeout_s * 1000)):
            raise StatusError(f"no supervisor answered on {where} within {timeout_s:g} s")
        reply = msgpack.unpackb(socket.recv())
    finally:
        socket.close()
        context.term()
    if not isinstance(reply, dict) or "nodes" not in reply:
        raise StatusError(f"{where}: unexpected reply {reply!r}")
    return reply


# -- the run file: where a supervisor with a private temp run directory can be found -------------------


def run_file(pipeline: str) -> Path:
    """Where the supervisor of pipeline `pipeline` records a private run directory."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "fusion-pipeline" if runtime else Path(tempfile.gettempdir())
    if not runtime:
        base /= f"fusion-pipeline-{os.getuid()}"
    return base / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', pipeline)}.run"


def _check_private(directory: Path) -> None:
    """The run file's directory must be a real directory of this user that nobody else can write: a run
    directory read from anywhere else could point this command at someone else's socket."""
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise StatusError(f"{directory} is not a private (0700) directory of uid {os.getuid()}")


def record_run_dir(pipeline: str, run_dir: Path) -> Path:
    """Write `run_dir` into the run file of `pipeline` (replacing another run's); StatusError when its
    directory is not private."""
    path = run_file(pipeline)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private(path.parent)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(f"{run_dir}\n")
    partial.replace(path)  # atomic: a reader never sees half a path
    return path


def forget_run_dir(path: Path, run_dir: Path) -> None:
    """Remove the run file, unless a later run of the same pipeline has taken it over."""
    with contextlib.suppress(OSError):
        if path.read_text().strip() == str(run_dir):
            path.unlink()


def recorded_run_dir(pipeline: str) -> Path:
    """The run directory recorded for `pipeline`; StatusError naming the file when there is none."""
    path = run_file(pipeline)
    try:
        _check_private(path.parent)
        return Path(path.read_text().strip())
    except FileNotFoundError:
        raise StatusError(
            f"pipeline {pipeline!r} has no run_dir in its config and no supervisor recorded one in {path}; "
            "is it running (as this user)? Pass --run-dir otherwise"
        ) from None


# -- the command ----------------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help="health of a running pipeline: per node state, pid, uptime, restarts, heartbeat, rates",
        description="Ask a running supervisor for the state of its nodes. Exit status: 0 healthy, "
        "1 degraded (a node not running, or a stream silent), 2 no supervisor answered. Warnings (plain "
        "tcp, metrics off) are listed without making it degraded.",
    )
    config_argument(p)
    p.add_argument("--run-dir", type=Path, default=None, help="the run directory (default: from the config)")
    p.add_argument("--json", action="store_true", help="print the supervisor's reply as JSON")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer (%(default)s)")
    p.set_defaults(func=_status)


def _status(args: argparse.Namespace) -> int:
    run_dir, looked = _resolve_run_dir(args.config, args.run_dir)
    report = query(run_dir, args.timeout, looked)
    print(json.dumps(report, indent=2) if args.json else format_status(report))
    return EXIT_DEGRADED if report["degraded"] else EXIT_HEALTHY


def _resolve_run_dir(config_path: Path | None, run_dir: Path | None) -> tuple[Path, str]:
    """The run directory and how it was found (for the error message)."""
    if run_dir is not None:
        return run_dir, "from --run-dir"
    from fusion_pipeline.config import load_config

    config = load_config(config_path)
    source = str(config_path) if config_path else "the embedded demo config"
    if config.pipeline.run_dir:
        return Path(config.pipeline.run_dir).expanduser(), f"pipeline.run_dir of {source}"
    pipeline = config.pipeline.name
    return recorded_run_dir(pipeline), f"recorded in {run_file(pipeline)}"


def format_status(report: dict[str, Any]) -> str:
    """The human-readable table."""
    health = "DEGRADED: " + "; ".join(report["reasons"]) if report["degraded"] else "healthy"
    lines = [
        f"{report['pipeline']}: {health}",
        f"run dir {report['run_dir']}, up {_duration(report['uptime_s'])}, "
        f"provider {report['provider'] or '-'}, results {report['results']}",
        f"results {report['results_endpoint']}, metrics {report['metrics']}",
        *(f"WARNING: {warning}" for warning in report["warnings"]),
        "",
        f"{'node':<26} {'state':<10} {'pid':>7} {'uptime':>8} {'restarts':>8} {'heartbeat':>9} "
        f"{'in/s':>7} {'out/s':>7}",
    ]
    for node in report["nodes"]:
        beat = "-" if node["heartbeat_age_s"] is None else f"{node['heartbeat_age_s']:.1f}s ago"
        uptime = "-" if node["uptime_s"] is None else _duration(node["uptime_s"])
        lines.append(
            f"{node['name']:<26} {node['state']:<10} {node['pid'] or '-':>7} {uptime:>8} "
            f"{node['restarts']:>8} {beat:>9} {_rate(node['rates'].get('in')):>7} "
            f"{_rate(node['rates'].get('out')):>7}"
        )
    lines += ["", f"{'stream':<26} {'msg/s':>7} {'config':>7} {'idle':>7}  required"]
    for stream in report["streams"]:
        lines.append(
            f"{stream['name']:<26} {_rate(stream['messages_per_s']):>7} {stream['rate_hz']:>7g} "
            f"{stream['idle_s']:>6.1f}s  {'yes' if stream['required'] else 'no':<8}"
            f"{'  SILENT' if stream['silent'] else ''}".rstrip()
        )
    return "\n".join(lines)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"
