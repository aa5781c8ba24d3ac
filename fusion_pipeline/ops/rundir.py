"""The run directory: where a pipeline's ipc sockets live, held by one supervisor from start to stop.

A fixed one (``pipeline.run_dir``) is created 0700 and locked (`lock_run_dir`, RUN_LOCK holding the
supervisor's pid) for the supervisor's life. An empty ``pipeline.run_dir`` is a private temp dir
``fusion-NAME-*``, recorded in the run file for `fusion-pipeline status` (ops.status.run_file) and
removed at the end (or, when its supervisor was killed, by the next run that takes over the run file).
Either way every socket path is checked (node.check_host) before anything starts, an endpoint another
process serves is refused, and every ipc file of the run that nobody serves is removed at the end: a
killed node cannot remove its own, and one still served belongs to another process.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from fusion_pipeline.config import Config, GraphKind, config_source
from fusion_pipeline.errors import ConfigError, EndpointError
from fusion_pipeline.node import CONTROL_SOCKET, check_host, check_own_clients
from fusion_pipeline.ops.errors import StatusError
from fusion_pipeline.ops.graph import RunSocket
from fusion_pipeline.ops.status import forget_run_dir, record_run_dir, recorded_run_dir
from fusion_pipeline.protocol import Endpoint
from fusion_pipeline.transport.sockets import ipc_served, prepare_bind, remove_ipc_file

__all__ = ["RUN_LOCK", "RunDir", "check_run_host", "lock_run_dir"]

RUN_LOCK = "supervisor.lock"  # in a fixed run dir: held by the supervisor running there, holds its pid


def check_run_host(
    config: Config,
    config_path: Path | None,
    path: Path,
    sockets: Sequence[RunSocket],
    create: bool,
    own_drivers: bool = True,
    graph: GraphKind = "live",
) -> None:
    """What a run of `config` in the run dir `path` refuses before it starts anything (`sockets`: the
    run's own besides the config's): a socket path too long or on another host (node.check_host), this
    graph's ingest and drivers on different hosts (unless not `own_drivers`: a host of the drivers
    alone), and an ipc directory it binds in that other users can enter. `create` makes a fixed run dir
    as the run does (0700); without it (`config check`), a directory not there yet is left for the run
    to make."""
    source = config_source(config_path)
    check_host(config, path, source, [(what, url(path)) for what, url in sockets])
    if own_drivers:
        check_own_clients(config, path, source, graph)  # this graph's own tcp servers and their clients
    binds = [("pipeline.run_dir", f"ipc://{path}/{CONTROL_SOCKET}")] if config.pipeline.run_dir else []
    binds += [(use.key, use.url) for use in config.endpoint_uses(path, graph) if use.binds]
    for key, url in binds:
        try:
            # The run dir first, made when `create` (its endpoints then find it private).
            prepare_bind(Endpoint(url), create=create and key == "pipeline.run_dir")
        except EndpointError as exc:
            raise ConfigError(f"{source}: {key}: {exc}") from exc


def lock_run_dir(run_dir: Path) -> int:
    """Take the run dir's lock (an open fd) or refuse: a second supervisor there would bind over the
    first one's sockets and take its sensors' data."""
    try:
        fd = os.open(run_dir / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:  # another user's run dir, a read-only file system
        raise ConfigError(
            f"pipeline.run_dir: {run_dir}: cannot take its lock {RUN_LOCK} ({exc.strerror})"
        ) from None
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


class RunDir:
    """A run's directory from `open` to `close`: `path`, and `own` when it is a private temp dir."""

    def __init__(self, config: Config, path: Path, *, own: bool, lock: int | None) -> None:
        self.config = config
        self.path = path
        self.own = own
        self._lock = lock
        self._run_file: Path | None = None
        self._deferred = False  # another run of the pipeline kept the run file (`record`)

    @classmethod
    def open(
        cls, config: Config, config_path: Path | None, sockets: Sequence[RunSocket], graph: GraphKind
    ) -> RunDir:
        """The config's run dir, checked, created and locked, or a fresh private one, checked, for a run
        of `graph`; `sockets` are the run's own besides the config's. A ConfigError leaves nothing
        behind."""
        source = config_source(config_path)

        def check_served(path: Path) -> None:
            # An absolute ipc path another process serves (another pipeline's results): its node would
            # only crash-loop, and this run would count the other's messages as its own.
            taken = [
                f"{u.key} {u.url}"
                for u in config.endpoint_uses(path, graph)
                if u.binds and ipc_served(Endpoint(u.url))
            ]
            if taken:
                raise ConfigError(
                    f"{source}: {', '.join(taken)}: another process is bound there and serving (stop it, "
                    "or give this run other endpoints)"
                )

        if config.pipeline.run_dir:
            path = Path(config.pipeline.run_dir).expanduser().resolve()
            check_run_host(config, config_path, path, sockets, create=True, graph=graph)
            # The lock first: a supervisor running there serves every endpoint, and is what to name.
            lock = lock_run_dir(path)
            try:
                check_served(path)
            except ConfigError:
                os.close(lock)
                raise
            return cls(config, path, own=False, lock=lock)
        # A fresh directory of our own: nobody else can be in it, so no lock.
        path = Path(tempfile.mkdtemp(prefix=f"fusion-{config.pipeline.name}-"))
        try:
            check_run_host(config, config_path, path, sockets, create=True, graph=graph)
            check_served(path)
        except ConfigError:
            path.rmdir()  # made a moment ago, still empty
            raise
        return cls(config, path, own=True, lock=None)

    def record(self, log: Callable[[str], None]) -> None:
        """Make a private temp run dir discoverable by `fusion-pipeline status` (ops.status.run_file), and
        remove the one it replaces there when that run's supervisor was killed (`_abandoned`). Another
        run of the same pipeline that still runs keeps the run file: what finds the pipeline by its
        config (status, record, view) goes on finding that one, and this run says how to name its own,
        then takes the file over once that run has ended (`take_over`)."""
        if not self.own:
            return
        name = self.config.pipeline.name
        try:
            previous = recorded_run_dir(name)
        except (OSError, StatusError):
            previous = None
        if previous is not None and ipc_served(Endpoint(f"ipc://{previous}/{CONTROL_SOCKET}")):
            if not self._deferred:
                log(
                    f"WARNING: another run of {name!r} is running in {previous}: commands that find the "
                    f"pipeline by its config (status, record, view) find that one; name this one with "
                    f"--run-dir {self.path}"
                )
            self._deferred = True
            return
        self._deferred = False
        try:
            self._run_file = record_run_dir(name, self.path)
        except (OSError, StatusError) as exc:
            log(f"WARNING: cannot record the run dir for `fusion-pipeline status`: {exc}")
            return
        log(f"run dir recorded in {self._run_file}")
        if previous is not None and previous != self.path and _abandoned(previous, name):
            shutil.rmtree(previous, ignore_errors=True)
            log(f"removed {previous}: the run dir of an earlier run of {name!r} whose supervisor was killed")

    def take_over(self, log: Callable[[str], None]) -> None:
        """Record this run dir once the other run of the pipeline that kept the run file has ended."""
        if self._deferred:
            self.record(log)

    def close(self) -> None:
        """Remove every ipc socket file of the run that nobody serves (a private dir with all in it) and the
        run file; release the lock."""
        config = self.config
        # An external driver's socket is its own, bound by a process this run did not start.
        urls = [config.endpoint(s.endpoint, self.path) for s in config.streams if s.driver == "sim"]
        urls += [config.ingest_endpoint(s.name, self.path) for s in config.streams]
        urls += [config.endpoint(u, self.path) for u in (config.sync.endpoint, config.output.endpoint)]
        urls.append(config.local_results_endpoint(self.path))
        urls.append(f"ipc://{self.path}/{CONTROL_SOCKET}")
        for url in urls:
            if not ipc_served(Endpoint(url)):  # this run's nodes have exited: one served is another's
                remove_ipc_file(Endpoint(url))
        if self.own:
            shutil.rmtree(self.path, ignore_errors=True)
        if self._run_file is not None:
            forget_run_dir(self._run_file, self.path)
            self._run_file = None
        if self._lock is not None:
            os.close(self._lock)  # the lock goes with it; the file stays (removing it would race)
            self._lock = None


def _abandoned(path: Path, pipeline: str) -> bool:
    """Whether `path`, the run dir a run file named, is a private one that a killed supervisor left: a
    `fusion-PIPELINE-*` dir of this user in the temp dir, as `RunDir.open` makes them, holding only
    socket files that nobody serves (a supervisor that runs serves its control socket)."""
    try:
        info = path.lstat()
        entries = list(path.iterdir())
        if not (
            stat.S_ISDIR(info.st_mode)
            and info.st_uid == os.getuid()
            and path.parent == Path(tempfile.gettempdir())
            and path.name.startswith(f"fusion-{pipeline}-")
        ):
            return False
        return all(
            stat.S_ISSOCK(entry.lstat().st_mode) and not ipc_served(Endpoint(f"ipc://{entry}"))
            for entry in entries
        )
    except OSError:
        return False
