"""The status socket: a running supervisor answers how its nodes are, over ``ipc://RUN_DIR/status.sock``.

The supervisor binds a REP socket there (`StatusServer`, served from its main loop) and answers a msgpack
request ``{"request": "status"}`` with the msgpack map of health.status_report: per node state, pid,
uptime, restarts, heartbeat age and rates; per stream rate, idle time and silence; ``degraded`` and the
reasons; the warnings (health.Notice), the results endpoint and the metrics URL. The `status` command
(fusion_pipeline.cli.status) prints it as a table (or JSON) and exits 0 when healthy, 1 when degraded,
2 when no supervisor answers.

Where the run directory is: ``--run-dir``, else the config's ``pipeline.run_dir``, else (empty: the
supervisor made a private temp dir) the run file the supervisor records, ``run_file(pipeline name)``:
``$XDG_RUNTIME_DIR/fusion-pipeline/NAME.run``, or ``TMPDIR/fusion-pipeline-UID/NAME.run`` without
XDG_RUNTIME_DIR, in a 0700 directory of the user; removed when the supervisor exits.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import zmq

from fusion_pipeline.ops.errors import StatusError

__all__ = [
    "EXIT_DEGRADED",
    "EXIT_HEALTHY",
    "EXIT_UNREACHABLE",
    "STATUS_SOCKET",
    "StatusServer",
    "forget_run_dir",
    "query",
    "record_run_dir",
    "recorded_run_dir",
    "resolve_run_dir",
    "run_file",
]

STATUS_SOCKET = "status.sock"
REQUEST = {"request": "status"}
MAX_REQUEST_BYTES = 4096  # a request is a tiny map; anything larger is refused by libzmq unread

EXIT_HEALTHY, EXIT_DEGRADED, EXIT_UNREACHABLE = 0, 1, 2


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
    return base / f"{pipeline}.run"  # a plain file name (config: pipeline.name)


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


def resolve_run_dir(config_path: Path | None, run_dir: Path | None) -> tuple[Path, str]:
    """The run directory of a pipeline and how it was found (for an error message): `run_dir`, else the
    config's pipeline.run_dir, else the run file its supervisor recorded."""
    if run_dir is not None:  # absolute: the endpoints under it are ipc paths, which must be
        return run_dir.expanduser().absolute(), "from --run-dir"
    from fusion_pipeline.config import load_config

    config = load_config(config_path)
    source = str(config_path) if config_path else "the embedded demo config"
    if config.pipeline.run_dir:
        return Path(config.pipeline.run_dir).expanduser(), f"pipeline.run_dir of {source}"
    pipeline = config.pipeline.name
    return recorded_run_dir(pipeline), f"recorded in {run_file(pipeline)}"
