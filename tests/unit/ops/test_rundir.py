"""The run's socket files go at its end, except an external driver's, which the run never bound."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

from fusion_pipeline.config import load_config, parse_config
from fusion_pipeline.errors import ConfigError
from fusion_pipeline.ops.rundir import RunDir
from fusion_pipeline.ops.status import record_run_dir, recorded_run_dir, run_file


def test_close_keeps_an_external_drivers_socket(tmp_path: Path) -> None:
    demo = (Path(__file__).parents[3] / "configs" / "demo.toml").read_text()
    assert load_config(None).streams[0].name == "camera/front"
    config = parse_config(
        demo.replace('name = "camera/front"', 'name = "camera/front"\ndriver = "external"', 1)
    )
    files = {
        s.name: Path(config.endpoint(s.endpoint, tmp_path).removeprefix("ipc://")) for s in config.streams
    }
    for path in files.values():
        path.touch()
    assert config.streams[0].driver == "external"
    RunDir(config, tmp_path, own=False, lock=None).close()
    assert [name for name, path in files.items() if path.exists()] == ["camera/front"]


def _serving(path: Path) -> socket.socket:
    """A process's socket serving on `path`, as another pipeline's results publisher."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    return listener


def test_an_endpoint_another_process_serves_is_refused_at_start_and_kept_at_the_end(ipc_dir: Path) -> None:
    """Two pipelines given one absolute results path: the second's inference node crash-looped, its
    supervisor counted the first's results as its own, and its end removed the first's socket file."""
    demo = (Path(__file__).parents[3] / "configs" / "demo.toml").read_text()
    shared = ipc_dir / "shared.sock"
    text = demo.replace('endpoint = "ipc://{run_dir}/results.sock"', f'endpoint = "ipc://{shared}"', 1)
    config = parse_config(text, "b.toml")
    with _serving(shared):
        with pytest.raises(
            ConfigError, match=rf"b.toml: output.endpoint ipc://{shared}: another process is bound"
        ):
            RunDir.open(config, Path("b.toml"), (), "live")
        RunDir(config, ipc_dir / "run", own=False, lock=None).close()
        assert shared.is_socket()  # served: the other's
    RunDir(config, ipc_dir / "run", own=False, lock=None).close()
    assert not shared.exists()  # nobody serves it any more: a file this run left


def test_a_run_removes_the_private_run_dir_a_killed_supervisor_left(
    ipc_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A supervisor killed by SIGKILL left its fusion-NAME-* dir (control.sock, status.sock) for good: the
    next run of the pipeline replaced the run file naming it but never removed it. One that still runs
    (its control socket served), or a dir holding anything but sockets, is kept."""
    monkeypatch.setattr(tempfile, "tempdir", str(ipc_dir))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(ipc_dir))
    config = load_config(None)
    name = config.pipeline.name

    def left_dir(served: bool = False, other_file: bool = False) -> tuple[Path, socket.socket]:
        path = Path(tempfile.mkdtemp(prefix=f"fusion-{name}-"))
        control = _serving(path / "control.sock")
        if not served:
            control.close()  # its process is gone: the socket file stays, nobody serves it
        if other_file:
            (path / "notes.txt").write_text("not ours to remove\n")
        return path, control

    lines: list[str] = []
    runs = []
    cases = [left_dir(), left_dir(served=True), left_dir(other_file=True)]
    for (previous, control), kept in zip(cases, (False, True, True), strict=True):
        record_run_dir(name, previous)
        run = RunDir.open(config, None, (), "live")
        run.record(lines.append)
        runs.append(run)
        assert previous.exists() == kept, lines
        control.close()
    removed = [line for line in lines if line.startswith("removed ")]
    assert removed == [
        f"removed {cases[0][0]}: the run dir of an earlier run of 'demo' whose supervisor was killed"
    ]
    for run in runs:
        run.close()


def test_a_second_run_of_a_pipeline_that_runs_leaves_it_the_run_file(
    ipc_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `run`s of one config at once: the second took over the run file and removed it at its end,
    so status, record and view found neither while the first still ran. It now keeps to its own dir and
    says how to name it."""
    monkeypatch.setattr(tempfile, "tempdir", str(ipc_dir))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(ipc_dir))
    config = load_config(None)
    first = RunDir.open(config, None, (), "live")
    first.record(print)
    control = _serving(first.path / "control.sock")  # its supervisor runs
    lines: list[str] = []
    second = RunDir.open(config, None, (), "live")
    second.record(lines.append)
    assert recorded_run_dir(config.pipeline.name) == first.path
    assert lines == [
        f"WARNING: another run of 'demo' is running in {first.path}: commands that find the pipeline by "
        f"its config (status, record, view) find that one; name this one with --run-dir {second.path}"
    ]
    second.take_over(lines.append)
    assert recorded_run_dir(config.pipeline.name) == first.path  # still found, said once
    assert len(lines) == 1
    control.close()
    first.close()  # the first run ends: the second takes the run file over
    second.take_over(lines.append)
    assert recorded_run_dir(config.pipeline.name) == second.path
    assert lines[1] == f"run dir recorded in {run_file(config.pipeline.name)}"
    second.close()
