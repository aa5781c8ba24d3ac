"""The run's socket files go at its end, except an external driver's, which the run never bound."""

from __future__ import annotations

from pathlib import Path

from fusion_pipeline.config import load_config, parse_config
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
