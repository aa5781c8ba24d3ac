"""The shipped model with its contract JSON edited, and optionally its graph's declarations: a model that
does not fit the config, or one whose graph does not fit its own contract; and a model built from
nodes, whose results depend on where its input lies in memory."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from fusion_pipeline.config import load_config
from fusion_pipeline.contract import CONTRACT_KEY, default_contract
from fusion_pipeline.inference import model_path


def model_with_contract(
    folder: Path, edit: Callable[[dict], None], edit_graph: Callable[[onnx.ModelProto], None] | None = None
) -> Path:
    """The shipped model, its contract JSON passed through `edit` and the model through `edit_graph`,
    saved as FOLDER/edited.onnx."""
    model = onnx.load(str(model_path(load_config())))
    for prop in model.metadata_props:
        if prop.key == CONTRACT_KEY:
            raw = json.loads(prop.value)
            edit(raw)
            prop.value = json.dumps(raw)
    if edit_graph is not None:
        edit_graph(model)
    path = folder / "edited.onnx"
    onnx.save(model, str(path))
    return path


def camera_64(raw: dict) -> None:
    """The contract edit of a model trained on 64x64 camera frames (its graph: `camera_64_graph`)."""
    next(s for s in raw["inputs"] if s["name"] == "camera")["shape"] = [3, 64, 64]


def camera_64_graph(model: onnx.ModelProto) -> None:
    """The graph's camera input declared 3x64x64 after the batch, as `camera_64` says."""
    shape = next(i for i in model.graph.input if i.name == "camera").type.tensor_type.shape
    for dim, size in zip(shape.dim[1:], [3, 64, 64], strict=True):
        dim.dim_value = size


def camera_sum_model(folder: Path) -> Path:
    """A model of the default contract whose every output is the sum of its camera input (FOLDER/sum.onnx):
    onnxruntime's CPU ReduceSum adds in another order where the array starts elsewhere in a cache line."""
    contract = default_contract()
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", *s])
        for n, s in contract.tensors.items()
    ]
    nodes = [
        helper.make_node("ReduceSum", ["camera", "axes"], ["total"], keepdims=0),
        helper.make_node("Unsqueeze", ["total", "one"], ["column"]),
    ]
    initializers = [
        helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
    ]
    outputs = []
    for output in contract.outputs:
        (size,) = output.shape
        initializers.append(helper.make_tensor(f"{output.name}_shape", TensorProto.INT64, [2], [1, size]))
        nodes.append(helper.make_node("Expand", ["column", f"{output.name}_shape"], [output.name]))
        outputs.append(helper.make_tensor_value_info(output.name, TensorProto.FLOAT, ["batch", size]))
    graph = helper.make_graph(nodes, "camera_sum", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    entry = model.metadata_props.add()
    entry.key, entry.value = CONTRACT_KEY, contract.to_json()
    path = folder / "sum.onnx"
    onnx.save(model, str(path))
    return path


def four_classes(raw: dict) -> None:
    """The contract edit of a class output of 4 classes (the graph's gives 5, or `classes_by_data`)."""
    spec = next(s for s in raw["outputs"] if s["name"] == "class_logits")
    spec["shape"], spec["classes"] = [4], spec["classes"][:4]


def classes_by_data(base: int) -> Callable[[onnx.ModelProto], None]:
    """An edit that replaces the graph's class output by one whose size only a run tells: `base` + the
    number of sensors present values (so `base` when none is, as at the warm-up)."""
    return lambda model: _class_output_of_size(model, base)


def _class_output_of_size(model: onnx.ModelProto, base: int) -> None:
    helper, graph = onnx.helper, model.graph
    for node in graph.node:  # the trained head's output goes nowhere now
        node.output[:] = ["unused_logits" if name == "class_logits" else name for name in node.output]
    graph.initializer.extend(
        [
            onnx.numpy_helper.from_array(np.array(float(base), np.float32), "base"),
            onnx.numpy_helper.from_array(np.array(0, np.int64), "zero"),
            onnx.numpy_helper.from_array(np.array(1, np.int64), "one"),
            onnx.numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("ReduceSum", ["presence"], ["present"], keepdims=0),
            helper.make_node("Add", ["present", "base"], ["count_f"]),
            helper.make_node("Cast", ["count_f"], ["count"], to=onnx.TensorProto.INT64),
            helper.make_node("Range", ["zero", "count", "one"], ["indices"]),
            helper.make_node("Cast", ["indices"], ["values"], to=onnx.TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["values", "axis0"], ["class_logits"]),
        ]
    )
    output = next(o for o in graph.output if o.name == "class_logits")
    output.type.tensor_type.shape.dim[1].dim_param = "n"
