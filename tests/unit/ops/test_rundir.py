"""The run's socket files go at its end, except an external driver's, which the run never bound."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fusion_pipeline.config import load_config, parse_config
from fusion_pipeline.errors import ConfigError
from fusion_pipeline.ops.rundir import RunDir


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
            RunDir.open(config, Path("b.toml"), ())
        RunDir(config, ipc_dir / "run", own=False, lock=None).close()
        assert shared.is_socket()  # served: the other's
    RunDir(config, ipc_dir / "run", own=False, lock=None).close()
    assert not shared.exists()  # nobody serves it any more: a file this run left
