"""Where the views go: an .rrd file, Rerun's web viewer on 127.0.0.1, the native viewer, a Foxglove
WebSocket; rerun's analytics are switched off before any of them starts (`analytics.disable_analytics`).

- ``save``: the recording is written to ``NAME.rrd.PID.partial`` (mode 0600 from its creation) and linked
  to its name only when closed whole, so a crash leaves no half file under the name, and a file already
  there is never written over; a start that fails leaves no partial.
- ``web``: a ``rerun --serve-web --bind 127.0.0.1`` process (the rerun CLI of the wheel) hosts the web
  viewer and the gRPC server it reads from; the recording streams to that server. rerun-sdk's in-process
  web server would listen on every address, which a vehicle must not. The page reaches the browser through
  `webserver.LoopbackWebViewer`, whose Content-Security-Policy keeps it from calling any other host.
- neither (and no Foxglove): the native viewer, ``rerun`` on a free local port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fusion_pipeline.config import ViewConfig
from fusion_pipeline.lifetime import die_with_parent
from fusion_pipeline.logs.writer import LOG_MODE
from fusion_pipeline.view.analytics import EXTRA_HINT, disable_analytics, rerun_cli
from fusion_pipeline.view.errors import ViewError
from fusion_pipeline.view.webserver import LoopbackWebViewer

__all__ = ["LOOPBACK", "PARTIAL_SUFFIX", "RerunOutput", "ViewSettings", "free_port"]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
PARTIAL_SUFFIX = ".partial"
_START_TIMEOUT_S = 30.0
_STOP_GRACE_S = 3.0


@dataclass(frozen=True)
class ViewSettings:
    """What the viewer shows its views in (``[view]``, or `fusion-pipeline view`'s options)."""

    save: Path | None = None
    web: bool = False
    web_port: int = 9090  # 0: any free port
    grpc_port: int = 0  # any free: rerun's gRPC server answers any Host, so a well-known port is a target
    foxglove: bool = False
    foxglove_port: int = 8765
    max_hz: float = 0.0  # live: the most frames per second shown of each discrete stream (drain.DrainTally)

    @classmethod
    def from_config(cls, view: ViewConfig) -> ViewSettings:
        return cls(
            save=Path(view.save) if view.save else None,
            web=view.web,
            web_port=view.web_port,
            grpc_port=view.grpc_port,
            foxglove=view.foxglove,
            foxglove_port=view.foxglove_port,
            max_hz=view.max_hz,
        )

    @property
    def native(self) -> bool:
        """Nothing else asked for: open the native viewer."""
        return not (self.save or self.web or self.foxglove)


def free_port() -> int:
    """A TCP port free on the loopback address now (the OS's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise ViewError(f"{what} exited {process.returncode} before listening: {stderr.strip()[-500:]}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe, contextlib.suppress(OSError):
            probe.connect((LOOPBACK, port))
            return
        time.sleep(0.1)
    raise ViewError(f"{what} did not listen on {LOOPBACK}:{port} within {_START_TIMEOUT_S:g} s")


def _create_private(path: Path) -> None:
    """`path` created empty, mode LOG_MODE (a recording holds camera frames and is the user's), for
    rerun's FileSink to write into: it keeps the file and its mode, where a file of its own would be
    world-readable until closed, and left so by a viewer killed before then."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, LOG_MODE))
    except FileExistsError:
        raise ViewError(f"{path}: exists already, not overwriting it") from None
    except OSError as exc:
        raise ViewError(f"{path}: cannot create the recording: {exc.strerror}") from exc


class RerunOutput:
    """The recording the views are logged to, and the sinks it streams into; `close` finishes them."""

    def __init__(
        self, settings: ViewSettings, blueprint: object, application: str = "fusion-pipeline"
    ) -> None:
        try:
            import rerun as rr
        except ImportError as exc:
            raise ViewError(EXTRA_HINT) from exc
        self.settings = settings
        self.web_url = ""
        self.save = settings.save
        self._partial: Path | None = None
        self._viewer: subprocess.Popen[bytes] | None = None
        self._web: LoopbackWebViewer | None = None
        if self.save is not None and self.save.exists():
            raise ViewError(f"{self.save}: exists already, not overwriting it")
        config_file = disable_analytics()
        log.info("rerun analytics off (%s)", config_file)
        self.recording = rr.RecordingStream(application, recording_id=str(uuid.uuid4()))
        sinks: list[object] = []
        try:
            if self.save is not None:
                partial = self.save.with_name(f"{self.save.name}.{os.getpid()}{PARTIAL_SUFFIX}")
                _create_private(partial)
                self._partial = partial  # ours from here on: one already there is not removed below
                sinks.append(rr.FileSink(str(partial)))
            if settings.web or settings.native:
                sinks.append(rr.GrpcSink(self._start_viewer(settings)))
            if sinks:
                self.recording.set_sinks(*sinks, default_blueprint=blueprint)
        except BaseException:
            # Nothing was shown: no partial left behind, and nothing linked under the name.
            self._stop_viewer()
            if self._partial is not None:
                self._partial.unlink(missing_ok=True)
            raise

    def _start_viewer(self, settings: ViewSettings) -> str:
        """Start rerun's web viewer (or the native one) bound to the loopback; the gRPC url to log to."""
        grpc_port = settings.grpc_port or free_port()
        command = [str(rerun_cli()), "--bind", LOOPBACK, "--port", str(grpc_port), "--hide-welcome-screen"]
        if settings.web:
            upstream_port = free_port()  # rerun's own web server, reached only through LoopbackWebViewer
            command += [
                "--serve-web",
                "--web-viewer-port",
                str(upstream_port),
                "--server-memory-limit",
                "25%",
            ]
        what = "rerun's web viewer" if settings.web else "rerun's native viewer"
        parent = os.getpid()
        # Its own session: a Ctrl-C or a supervisor's stop of this process's group reaches it only
        # through `close`, once the recording is flushed to it; and it dies with this process, even
        # one killed with SIGKILL (a viewer node the supervisor restarts), not left serving its ports.
        self._viewer = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=lambda: die_with_parent(parent),
        )
        grpc_url = f"rerun+http://{LOOPBACK}:{grpc_port}/proxy"
        try:
            _wait_for_port(grpc_port, self._viewer, what)
            if settings.web:
                _wait_for_port(upstream_port, self._viewer, what)
                self._web = LoopbackWebViewer(settings.web_port, upstream_port, grpc_port)
                # no welcome screen: it offers examples fetched from the internet
                query = f"url={quote(grpc_url, safe='')}&hide_welcome_screen"
                self.web_url = f"http://{LOOPBACK}:{self._web.port}/?{query}"
        except ViewError:
            self._stop_viewer()
            raise
        return grpc_url

    def _stop_viewer(self) -> None:
        if self._web is not None:
            self._web.close()
            self._web = None
        if self._viewer is None or self._viewer.poll() is not None:
            return
        self._viewer.terminate()
        try:
            self._viewer.wait(_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self._viewer.kill()
            self._viewer.wait()

    def close(self, discard: bool = False) -> Path | None:
        """Flush the recording, put the .rrd in place and stop the viewer; the .rrd's path, if any.
        `discard`: the views failed or were stopped part way, so the partial .rrd is removed instead.
        A recording rerun could not write (a full disk) is a ViewError; that or a second Ctrl-C here
        leaves neither the viewer process nor the partial .rrd behind."""
        try:
            self.recording.flush()
            self.recording.disconnect()
        except BaseException as exc:
            if self._partial is not None:
                self._partial.unlink(missing_ok=True)
            if isinstance(exc, RuntimeError):  # rerun's file writer stopped: its ERROR line says why
                raise ViewError(
                    f"{self.save}: rerun could not write the recording ({exc}); nothing written"
                ) from exc
            raise
        finally:
            self._stop_viewer()
        if self._partial is None or self.save is None:
            return None
        if discard:
            self._partial.unlink(missing_ok=True)
            return None
        try:
            os.link(self._partial, self.save)
        except FileExistsError:
            raise ViewError(
                f"{self.save}: appeared while viewing, not overwriting it (kept {self._partial})"
            ) from None
        self._partial.unlink()
        return self.save
