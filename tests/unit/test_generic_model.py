"""A generic stream fed to a model (issue 16, item 3): a tiny ONNX model built with the onnx helper API
takes a lidar grid and an IMU window (100 x 6 and its mask); the config binds both, the sync stage builds
the set from real samples and ONNX Runtime runs it. The model's output is the masked sum of the IMU rows,
so the result says exactly which samples the set took."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from config_text import stream_table
from onnx import TensorProto, helper

from fusion_pipeline.config import parse_config
from fusion_pipeline.contract import CONTRACT_KEY, InputSpec, ModelContract, OutputSpec, default_contract
from fusion_pipeline.inference import InferenceStage, ModelRuntime
from fusion_pipeline.ingest import Ingest
from fusion_pipeline.preprocess import GenericParams
from fusion_pipeline.sync import SyncStage
from fusion_pipeline.transport import Sample, decode, encode

MS = 1_000_000
T0 = 10**15
ROWS = 8


def _tiny_model(path: Path) -> None:
    """imu_sum = sum over rows of imu * imu_mask (B, 6); lidar_sum = the grid's sum (B, 1)."""
    imu = GenericParams(sample_shape=(6,), mode="window", samples=ROWS)
    lidar = default_contract().input("lidar")
    contract = ModelContract(
        inputs=(lidar, InputSpec("imu", "generic", imu.shape, imu.to_dict(), mask="imu_mask")),
        outputs=(
            OutputSpec("imu_sum", (6,), "regression", units="m/s^2, rad/s"),
            OutputSpec("lidar_sum", (1,), "opaque"),
        ),
        presence_order=("lidar", "imu"),
        fusion="masked sum",
    )
    graph = helper.make_graph(
        [
            helper.make_node("Unsqueeze", ["imu_mask", "axis2"], ["mask3"]),
            helper.make_node("Mul", ["imu", "mask3"], ["masked"]),
            helper.make_node("ReduceSum", ["masked", "axis1"], ["imu_sum"], keepdims=0),
            helper.make_node("ReduceSum", ["lidar", "axes123"], ["lidar_total"], keepdims=0),
            helper.make_node("Unsqueeze", ["lidar_total", "axis1"], ["lidar_sum"]),
        ],
        "tiny",
        [
            helper.make_tensor_value_info("lidar", TensorProto.FLOAT, ["batch", *lidar.shape]),
            helper.make_tensor_value_info("imu", TensorProto.FLOAT, ["batch", ROWS, 6]),
            helper.make_tensor_value_info("imu_mask", TensorProto.FLOAT, ["batch", ROWS]),
            helper.make_tensor_value_info("presence", TensorProto.FLOAT, ["batch", 2]),  # read by none
        ],
        [
            helper.make_tensor_value_info("imu_sum", TensorProto.FLOAT, ["batch", 6]),
            helper.make_tensor_value_info("lidar_sum", TensorProto.FLOAT, ["batch", 1]),
        ],
        initializer=[
            helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
            helper.make_tensor("axis2", TensorProto.INT64, [1], [2]),
            helper.make_tensor("axes123", TensorProto.INT64, [3], [1, 2, 3]),
        ],
    )
    # IR version 8 (opset 17 needs at least 8): every onnxruntime this project supports (>= 1.17) loads it.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, {CONTRACT_KEY: contract.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _config(model: Path) -> str:
    imu = f'generic = {{ dtype = "<f4", shape = [6], mode = "window", window_samples = {ROWS} }}'
    return (
        stream_table("lidar/top", "lidar")
        + stream_table("imu", "generic", f'input = "imu"\n{imu}').replace("rate_hz = 10", "rate_hz = 1000")
        + f'[sync]\nreference = "lidar/top"\n[model]\npath = "{model}"\nproviders = ["cpu"]\n'
    )


def _wire(sample: Sample) -> Sample:
    return decode(encode(sample))


def test_a_bound_imu_window_reaches_the_model_with_its_mask(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    _tiny_model(path)
    config = parse_config(_config(path))
    runtime = ModelRuntime(config, warm_up=0)
    ingest = {s.name: Ingest(runtime.bindings.for_ingest(s.name)) for s in config.streams}
    stage = SyncStage(config, runtime.bindings)
    inference = InferenceStage(runtime)
    points = np.array([[5.0, 0.0, 0.0, 1.0]], np.float32)
    sets = []
    for ms in range(3, 12):  # 3 ms .. 11 ms; a scan at 7 ms takes the rows in (-1, 7] ms: 3 .. 7
        stamp = T0 + ms * MS
        imu = Sample("imu", "generic", ms, stamp, {"values": np.full(6, ms, np.float32)}, "", {})
        sets += stage.add(ingest["imu"].process(_wire(imu), stamp), stamp)
        if ms == 7:
            lidar = Sample("lidar/top", "lidar", 0, stamp, {"points": points}, "", {})
            sets += stage.add(ingest["lidar/top"].process(_wire(lidar), stamp), stamp)
    (fused,) = sets
    assert fused.meta["presence"] == [1, 1] and fused.meta["streams"] == ["lidar/top", "imu"]
    assert fused.arrays["imu_mask"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    result = inference.run(fused)
    assert result is not None
    np.testing.assert_allclose(result.arrays["imu_sum"], np.full(6, 3 + 4 + 5 + 6 + 7, np.float32))
    assert result.arrays["lidar_sum"][0] > 0  # the grid of the one point
