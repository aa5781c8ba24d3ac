"""`status` and `run` refuse, at once, what they could only ignore or get wrong later."""

from __future__ import annotations

import logging
import signal
import socket
from pathlib import Path

import onnx
import pytest
from edited_model import classes_by_data, four_classes, model_with_contract

from fusion_pipeline.cli.commands import main
from fusion_pipeline.cli.run import preflight
from fusion_pipeline.config import parse_config
from fusion_pipeline.errors import ConfigError


@pytest.mark.parametrize("timeout", ["-1", "0", "nan"])
def test_status_timeout_must_be_a_positive_number(timeout: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):  # a usage error (it waited forever at -1, and a traceback at nan)
        main(["status", "--timeout", timeout])
    assert "--timeout" in capsys.readouterr().err


def test_status_takes_config_or_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "-c", str(tmp_path / "none.toml"), "--run-dir", str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err


def test_run_never_writes_over_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text("keep")
    assert main(["run", "--duration", "1", "--summary-json", str(summary)]) == 2
    assert "exists already, not overwriting it" in capsys.readouterr().err
    assert summary.read_text() == "keep"


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("[metrics]", "[view]\nenabled = true\nsave = '{missing}/live.rrd'\n[metrics]", "view.save"),
        ('path = "demo.mcap"', "path = '{missing}/rec.mcap'", "record.path"),
    ],
)
def test_run_refuses_an_output_in_a_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, key: str
) -> None:
    demo = (Path(__file__).parents[3] / "configs" / "demo.toml").read_text()
    text = demo.replace("enabled = false ", "enabled = true ", 1) if key == "record.path" else demo
    config = tmp_path / "c.toml"
    config.write_text(text.replace(old, new.format(missing=tmp_path / "missing"), 1))
    assert main(["run", "-c", str(config), "--duration", "1"]) == 2  # before: it started, the node failed
    assert f"{key} {tmp_path / 'missing'}" in capsys.readouterr().err


def test_the_offline_graph_is_not_refused_for_live_outputs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """replay --offline and batch start no recorder: a record.path they never write does not stop them,
    and they say which live-only settings they run without."""
    demo = (Path(__file__).parents[3] / "configs" / "demo.toml").read_text()
    text = demo.replace("enabled = false ", "enabled = true ", 1)
    config = parse_config(text.replace('path = "demo.mcap"', f"path = '{tmp_path}/missing/rec.mcap'", 1))
    with pytest.raises(ConfigError, match="record.path"):
        preflight(config, None)
    caplog.set_level(logging.INFO)
    preflight(config, None, graph="offline")
    assert "record.enabled = true: live only, not in the offline graph" in caplog.text


def _camera_600x800(raw: dict) -> None:
    camera = next(s for s in raw["inputs"] if s["name"] == "camera")
    camera["shape"], camera["preprocess"]["size_hw"] = [3, 600, 800], [600, 800]


def _camera_600x800_graph(model: onnx.ModelProto) -> None:
    shape = next(i for i in model.graph.input if i.name == "camera").type.tensor_type.shape
    for dim, size in zip(shape.dim[1:], [3, 600, 800], strict=True):
        dim.dim_value = size


def test_a_model_input_larger_than_the_simulated_camera_is_refused_for_a_live_run(tmp_path: Path) -> None:
    """`config check` said ok, then ingest dropped every simulated 480x640 frame as too small for a
    600x800 input: the camera silent, every set partial. A log (real frames) may hold larger ones."""
    path = model_with_contract(tmp_path, _camera_600x800, _camera_600x800_graph)
    demo = (Path(__file__).parents[3] / "configs" / "demo.toml").read_text()
    config = parse_config(demo.replace('path = ""', f"path = '{path}'", 1))
    assert config.model.path == str(path)
    with pytest.raises(ConfigError) as refused:
        preflight(config, None)
    assert (
        "streams[0] (camera/front): the simulated camera renders 480x640, smaller than model input "
        "'camera' (600x800): ingest would drop every frame" in str(refused.value)
    )
    preflight(config, None, graph="offline")


def test_config_check_runs_the_model_s_warm_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An output size the graph leaves open is known only when the model runs: `config check` said ok,
    then the inference node failed its warm-up at every restart."""
    path = model_with_contract(tmp_path, four_classes, classes_by_data(5))
    demo = (Path(__file__).parents[3] / "configs" / "demo.toml").read_text()
    config = tmp_path / "five.toml"
    config.write_text(demo.replace('path = ""', f"path = '{path}'", 1))
    assert main(["config", "check", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: the model fails its warm-up run (no input present)" in err
    assert "model output 'class_logits' came out [1, 5], its contract says [1, 4]" in err
    # The same model, its graph giving 4: ok.
    config.write_text(
        demo.replace(
            'path = ""', f"path = '{model_with_contract(tmp_path, four_classes, classes_by_data(4))}'", 1
        )
    )
    assert main(["config", "check", "-c", str(config)]) == 0


def test_a_model_the_cpu_cannot_load_leaves_its_warm_up_to_the_inference_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A model with a GPU-only op runs under CUDA: `config check` on the CPU must not refuse it."""
    from fusion_pipeline.errors import ContractError
    from fusion_pipeline.inference import ModelRuntime

    def no_cpu_kernel(*_: object, **__: object) -> None:
        raise ContractError("m.onnx: onnxruntime cannot create a session: no CPU kernel for MyOp")

    monkeypatch.setattr(ModelRuntime, "__init__", no_cpu_kernel)
    config = tmp_path / "demo.toml"
    config.write_text((Path(__file__).parents[3] / "configs" / "demo.toml").read_text())
    assert main(["config", "check", "-c", str(config)]) == 0
    assert "the model's warm-up is left to the inference node: not on the CPU here: m.onnx" in caplog.text


def test_run_refuses_a_viewer_port_another_program_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The viewer node failed on it at every restart, each leaving an .rrd behind; run ended 0. The
    port is the host's state, not the config's: `config check` (run while the service holds its ports)
    accepts it."""
    demo = (Path(__file__).parents[3] / "configs" / "demo.toml").read_text()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        view = f"[view]\nenabled = true\nfoxglove = true\nfoxglove_port = {port}\n[metrics]"
        path = tmp_path / "viewer.toml"
        path.write_text(demo.replace("[metrics]", view, 1))
        assert main(["run", "-c", str(path), "--duration", "1"]) == 2
        assert f"view.foxglove_port {port}: cannot be served on 127.0.0.1" in capsys.readouterr().err
        assert main(["config", "check", "-c", str(path)]) == 0
        assert capsys.readouterr().out.startswith(f"{path}: ok: pipeline 'demo', 4 streams")


def test_a_command_gives_the_callers_signal_handlers_back(tmp_path: Path) -> None:
    """batch, the exports and view take SIGTERM as Ctrl-C for their run. Called in-process (the tests),
    that stayed: pool workers forked later took SIGTERM as Ctrl-C and hung the pool's shutdown."""

    def mine(signum: int, frame: object) -> None: ...

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        assert main(["batch", str(tmp_path / "none.mcap"), "--out", str(tmp_path / "out")]) == 2
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
