"""The .rrd of the views: private from its creation, and nothing left of a start that failed."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

rr = pytest.importorskip("rerun")
pytest.importorskip("foxglove")

from fusion_pipeline.config import load_config  # noqa: E402
from fusion_pipeline.view import sinks  # noqa: E402
from fusion_pipeline.view.errors import ViewError  # noqa: E402
from fusion_pipeline.view.live import Views  # noqa: E402
from fusion_pipeline.view.scene import blueprint  # noqa: E402
from fusion_pipeline.view.sinks import PARTIAL_SUFFIX, RerunOutput, ViewSettings  # noqa: E402


@pytest.fixture(autouse=True)
def no_rerun_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The analytics switch is the process tests' (it runs the rerun CLI in the user's config)."""
    monkeypatch.setattr(sinks, "disable_analytics", lambda: tmp_path / "analytics.json")


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask, under which a file created with the default mode is world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_partial_is_private_while_the_views_are_written(tmp_path: Path, open_umask: None) -> None:
    """A viewer killed part way leaves its partial: it holds camera frames, so no other user may read it
    (rerun's FileSink created it 0644, and it was made 0600 only at close)."""
    out = tmp_path / "view.rrd"
    rerun = RerunOutput(ViewSettings(save=out), blueprint(load_config(None)))
    try:
        rerun.recording.log("points", rr.Points3D([[1.0, 2.0, 3.0]]))
        rerun.recording.flush()
        (partial,) = tmp_path.glob(f"*{PARTIAL_SUFFIX}")
        assert partial.stat().st_mode & 0o777 == 0o600 and partial.stat().st_size > 0
    finally:
        saved = rerun.close()
    assert saved == out and out.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob(f"*{PARTIAL_SUFFIX}"))


def test_a_viewer_that_does_not_start_leaves_no_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_viewer(self: RerunOutput, settings: ViewSettings) -> str:
        raise ViewError("rerun's web viewer exited 1 before listening")

    monkeypatch.setattr(RerunOutput, "_start_viewer", no_viewer)
    with pytest.raises(ViewError, match="before listening"):
        RerunOutput(ViewSettings(save=tmp_path / "view.rrd", web=True), blueprint(load_config(None)))
    assert not list(tmp_path.glob("view.rrd*"))


def test_views_that_fail_to_start_write_no_rrd(tmp_path: Path) -> None:
    """The Foxglove port in use: the .rrd opened before it is discarded, not linked into place (under
    the supervisor, each restart of such a viewer left another nearly empty NAME-N.rrd)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings = ViewSettings(
            save=tmp_path / "view.rrd", foxglove=True, foxglove_port=busy.getsockname()[1]
        )
        with pytest.raises(ViewError, match="Foxglove WebSocket port"):
            Views(load_config(None), settings)
    assert not list(tmp_path.glob("view.rrd*"))


@pytest.mark.parametrize(
    "failure", [RuntimeError("File-writer thread shut down prematurely"), KeyboardInterrupt()]
)
def test_a_close_that_fails_leaves_neither_the_partial_nor_the_viewer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    """QA: a full disk made rerun's writer stop, and close raised its RuntimeError as a traceback, the
    partial left filling the disk; a second Ctrl-C in close left the rerun server process running."""
    out = tmp_path / "view.rrd"
    rerun = RerunOutput(ViewSettings(save=out), blueprint(load_config(None)))
    stopped: list[bool] = []
    monkeypatch.setattr(rerun, "_stop_viewer", lambda: stopped.append(True))

    def fails() -> None:
        raise failure

    monkeypatch.setattr(rerun.recording, "flush", fails)
    expected = ViewError if isinstance(failure, RuntimeError) else KeyboardInterrupt
    with pytest.raises(expected) as raised:
        rerun.close()
    if expected is ViewError:
        assert f"{out}: rerun could not write the recording (File-writer thread" in str(raised.value)
    assert stopped == [True] and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    rerun.recording.disconnect()


_KILLED_VIEWER = """
import sys, time
from pathlib import Path
from fusion_pipeline.config import load_config
from fusion_pipeline.view import sinks
from fusion_pipeline.view.scene import blueprint
sinks.disable_analytics = lambda: Path(sys.argv[1])
output = sinks.RerunOutput(sinks.ViewSettings(web=True), blueprint(load_config(None)))
print(output._viewer.pid, output._viewer.pid == __import__("os").getsid(output._viewer.pid), flush=True)
time.sleep(60)
"""


def _running(pid: str) -> bool:
    """Whether process `pid` runs: a zombie (dead, not yet reaped by whoever adopted it) does not."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_the_viewer_process_dies_with_its_parent_in_a_session_of_its_own(tmp_path: Path) -> None:
    """A viewer node killed with SIGKILL (the supervisor restarts it) left its rerun server serving its
    ports, one more per kill."""
    import signal
    import subprocess
    import sys
    import time

    node = subprocess.Popen(
        [sys.executable, "-c", _KILLED_VIEWER, str(tmp_path / "analytics.json")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert node.stdout is not None
        pid, own_session = node.stdout.readline().split()
        assert own_session == "True"  # a Ctrl-C to the node's group reaches it only through close()
        node.send_signal(signal.SIGKILL)
        node.wait(10)
        deadline = time.monotonic() + 10
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(pid), "the rerun server outlived its killed parent"
    finally:
        node.kill()
        node.wait()
