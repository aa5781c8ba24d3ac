"""A config's suite: the contract `model train --config` trains for, the arrays the world renders for it, and
the commands end to end on a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fusion_pipeline.binding import bind
from fusion_pipeline.cli import main
from fusion_pipeline.config import parse_config
from fusion_pipeline.contract import default_contract
from fusion_pipeline.inference import load_contract
from fusion_pipeline.model import contract_for_config
from fusion_pipeline.model.evaluate import criteria_for, markers, patterns_for
from fusion_pipeline.model.train import input_tensors
from fusion_pipeline.sim.dataset import generate, sensors_for
from fusion_pipeline.sim.errors import DatasetError

CONFIG = """
[pipeline]
name = "pair"

[[streams]]
name = "camera/front"
modality = "camera"
endpoint = "ipc://{run_dir}/camera_front.sock"
rate_hz = 12

[[streams]]
name = "camera/rear"
modality = "camera"
input = "cam_back"
endpoint = "ipc://{run_dir}/camera_rear.sock"
rate_hz = 12
sim = { yaw_deg = 180 }

[[streams]]
name = "lidar/top"
modality = "lidar"
endpoint = "ipc://{run_dir}/lidar_top.sock"
rate_hz = 10
required = true

[[streams]]
name = "radar/front"
modality = "radar"
endpoint = "ipc://{run_dir}/radar_front.sock"
rate_hz = 13

[sync]
reference = "lidar/top"
"""


def test_one_input_per_stream_named_as_it_binds() -> None:
    config = parse_config(CONFIG, "pair.toml")
    contract = contract_for_config(config, "joint")
    default = {s.modality: s for s in default_contract().inputs}
    assert [(s.name, s.modality) for s in contract.inputs] == [
        ("camera_front", "camera"),  # the slug
        ("cam_back", "camera"),  # streams[].input
        ("lidar_top", "lidar"),
        ("radar_front", "radar"),
    ]
    for spec in contract.inputs:  # each modality's default front end and shape
        assert (spec.shape, spec.preprocess) == (
            default[spec.modality].shape,
            default[spec.modality].preprocess,
        )
    assert contract.input("radar_front").mask == "radar_front_mask"
    assert "radar_front_mask: 1 for a real detection" in contract.input("radar_front").meaning
    assert contract.presence_order == ("camera_front", "cam_back", "lidar_top", "radar_front")
    assert contract.outputs == default_contract().outputs
    assert contract.fusion == "joint"
    # The config runs such a model: every stream bound to its input, the bits in stream order.
    bindings = bind(config, contract)
    assert [(b.input.name, b.bit) for b in bindings.by_stream.values()] == [
        (name, bit) for bit, name in enumerate(contract.presence_order)
    ]


IMU = """
[[streams]]
name = "imu"
modality = "generic"
endpoint = "ipc://{run_dir}/imu.sock"
rate_hz = 100
generic = { dtype = "<f4", shape = [6], mode = "nearest" }
"""


def test_a_generic_stream_is_trained_without_when_unbound_and_refused_when_bound() -> None:
    """`model train -c configs/imu.toml` crashed with an IndexError: no model input of a generic kind."""
    unbound = parse_config(
        CONFIG.replace("[sync]", IMU + '[model]\nunbound_streams = ["imu"]\n\n[sync]'), "imu.toml"
    )
    contract = contract_for_config(unbound)
    assert contract.presence_order == ("camera_front", "cam_back", "lidar_top", "radar_front")
    assert [s.input for s in sensors_for(unbound)] == list(contract.presence_order)
    bind(unbound, contract)  # the config runs the model trained for it
    bound = parse_config(CONFIG.replace("[sync]", IMU + "[sync]"), "imu.toml")
    with pytest.raises(DatasetError, match=r"streams \['imu'\]: a model trained here takes camera, lidar"):
        contract_for_config(bound)


def test_the_world_renders_the_arrays_of_a_configs_contract(tmp_path: Path) -> None:
    config = parse_config(CONFIG, "pair.toml")
    contract = contract_for_config(config)
    data = generate(5, 2, sensors=sensors_for(config), cache=False, folder=tmp_path, workers=1)
    for name in input_tensors(contract):
        assert data[name].shape == (2, *contract.tensors[name]), name


def test_patterns_and_criteria_of_a_suite_with_several_cameras() -> None:
    contract = contract_for_config(parse_config(CONFIG, "pair.toml"))
    patterns = patterns_for(contract)  # bits: camera_front, cam_back, lidar_top, radar_front
    assert patterns["all"] == (1, 1, 1, 1)
    assert patterns["camera only"] == (1, 1, 0, 0)
    assert patterns["no camera"] == (0, 0, 1, 1)
    assert patterns["no lidar"] == (1, 1, 0, 1)
    assert patterns["no cam_back"] == (1, 0, 1, 1)
    assert patterns["no camera_front"] == (0, 1, 1, 1)
    assert "no radar_front" not in patterns  # the only radar: "no radar" says it
    criteria = criteria_for(contract)
    assert criteria.one_missing == ("no camera_front", "no cam_back")
    assert criteria.max_drop == 0.03
    default = criteria_for(default_contract())
    assert default.one_missing == ("no camera", "no lidar", "no radar", "no audio")
    assert default.max_drop == 0.08


def test_train_eval_export_for_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One tiny training step per model, then eval renders the same sensors from the config saved in the
    checkpoints, and export writes that contract."""
    pytest.importorskip("matplotlib")
    config_path = tmp_path / "pair.toml"
    config_path.write_text(CONFIG)
    run, cache = tmp_path / "run", tmp_path / "cache"
    common = ["--run-dir", str(run), "--cache-dir", str(cache)]
    train = ["model", "train", "-c", str(config_path), "--samples", "71", "--epochs", "1", *common]
    assert main([*train, "--models", "concat,camera-only"]) == 0
    assert main([*train, "--models", "audio-only"]) == 2
    assert f"model 'audio-only': {config_path} has no audio stream" in capsys.readouterr().err

    assert main(["model", "eval", *common, "--test-samples", "8"]) == 0
    report = (run / "MODEL.md").read_text()
    begin, end = markers("model-eval:pair")
    assert begin in report and end in report
    assert "| concat | no cam_back |" in report and "| camera-only | camera (trained alone) |" in report
    # Two cameras: a drop with one sensor of several missing; and the run's best, which nothing shipped
    # (it claimed the file the config names was it).
    assert "worst drop, one sensor of several missing" in report
    assert "Best strategy: **" in report and "Shipped as" not in report
    assert json.loads((run / "eval.json").read_text())["setup"]["config"] == str(config_path)

    out = tmp_path / "pair.onnx"
    assert main(["model", "export", "--run-dir", str(run), "--model", "camera-only", "--out", str(out)]) == 0
    config = parse_config(CONFIG)
    assert load_contract(out) == contract_for_config(config, "concat")  # a baseline is a concat network
    bind(config, load_contract(out))
    # The fused model with its fallback: the baselines of the modalities the suite has, not of all four
    # (it asked for an audio-only model, which `model train` then refused: the suite has no audio).
    assert main([*train, "--models", "lidar-only,radar-only"]) == 0
    fused = tmp_path / "fused.onnx"
    assert main(["model", "export", "--run-dir", str(run), "--model", "concat", "--out", str(fused)]) == 0
    assert "with the single-sensor fallback (camera, lidar, radar)" in capsys.readouterr().out
