"""The model contract (docs/MODEL.md): version 2 through its JSON, version 1 converted, what is refused and
the exact message."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from fusion_pipeline.contract import InputSpec, ModelContract, OutputSpec, default_contract
from fusion_pipeline.errors import ContractError
from fusion_pipeline.preprocess import PARAMS, CameraParams, LidarParams

# The contract JSON of the model shipped before contract v2, exactly as version 1 wrote it: read from
# the ONNX metadata ("fusion.contract") of `git show 5467763:fusion_pipeline/models/default.onnx`.
V1_SHIPPED = (
    '{"classes": ["none", "car", "pedestrian", "cyclist", "emergency"], "fusion": "attention", "inputs": '
    '[{"dtype": "float32", "meaning": "normalised RGB, CHW", "modality": "camera", "name": "camera", '
    '"preprocess": {"input": "rgb8 HxWx3 uint8", "layout": "CHW", "mean": [0.485, 0.456, 0.406], '
    '"resize": "area", "scale": 0.00392156862745098, "size_hw": [96, 128], "std": [0.229, 0.224, 0.225]}, '
    '"shape": [3, 96, 128]}, {"dtype": "float32", "meaning": "BEV: occupancy, max height, intensity", '
    '"modality": "lidar", "name": "lidar", "preprocess": {"cell_m": 1.0, "channels": ["occupancy", '
    '"max_height", "mean_intensity"], "input": "points Nx4 float32 x,y,z,intensity, sensor frame, m", '
    '"occupancy_saturation": 16, "x_range_m": [0.0, 64.0], "y_range_m": [-32.0, 32.0], "z_range_m": '
    '[-2.5, 1.5]}, "shape": [3, 64, 64]}, {"dtype": "float32", "meaning": "detections x,y,z,v_r,rcs; zero '
    'padded", "modality": "radar", "name": "radar", "preprocess": {"input": "detections Mx5 float32 x,y,z '
    '(m), radial velocity (m/s), rcs (dBsm), sensor frame", "order": "range ascending, stable; nearest '
    'kept when M > slots", "scale": [50.0, 50.0, 5.0, 20.0, 20.0], "slots": 64}, "shape": [64, 5]}, '
    '{"dtype": "float32", "meaning": "1 for a real detection, 0 for padding", "modality": "radar", "name": '
    '"radar_mask", "preprocess": {"input": "detections Mx5 float32 x,y,z (m), radial velocity (m/s), rcs '
    '(dBsm), sensor frame", "order": "range ascending, stable; nearest kept when M > slots", "scale": '
    '[50.0, 50.0, 5.0, 20.0, 20.0], "slots": 64}, "shape": [64]}, {"dtype": "float32", "meaning": '
    '"log-mel", "modality": "audio", "name": "audio", "preprocess": {"center": false, "f_max_hz": 8000.0, '
    '"f_min_hz": 0.0, "hop": 160, "input": "samples int16 or float32, frames or frames x channels '
    '(channels averaged)", "int16_scale": 3.0517578125e-05, "log": "ln(mel + 1e-6)", "mel_scale": "htk", '
    '"n_fft": 400, "n_mels": 40, "power": 2.0, "sample_rate": 16000, "window": "hann, periodic", '
    '"window_s": 0.5}, "shape": [1, 40, 48]}, {"dtype": "float32", "meaning": "1 = modality present, '
    'order camera,lidar,radar,audio", "modality": null, "name": "presence", "preprocess": {}, "shape": '
    '[4]}], "modalities": ["camera", "lidar", "radar", "audio"], "outputs": [{"dtype": "float32", '
    '"meaning": "logits over classes", "modality": null, "name": "class_logits", "preprocess": {}, '
    '"shape": [5]}, {"dtype": "float32", "meaning": "primary actor x, y in the ego frame, m", "modality": '
    'null, "name": "position", "preprocess": {}, "shape": [2]}, {"dtype": "float32", "meaning": "primary '
    'actor radial velocity, m/s", "modality": null, "name": "velocity", "preprocess": {}, "shape": [1]}, '
    '{"dtype": "float32", "meaning": "logit that a siren is present", "modality": null, "name": '
    '"siren_logit", "preprocess": {}, "shape": [1]}], "presence_input": "presence", "version": 1}'
)


def _two_cameras() -> ModelContract:
    """A user's model: two 224x224 cameras, a lidar of another grid, outputs of every kind."""
    camera, lidar = CameraParams(size_hw=(224, 224)), LidarParams(x_range_m=(0.0, 32.0), cell_m=0.5)
    return ModelContract(
        inputs=(
            InputSpec("camera_left", "camera", camera.shape, camera.to_dict(), meaning="left"),
            InputSpec("camera_right", "camera", camera.shape, camera.to_dict()),
            InputSpec("bev", "lidar", lidar.shape, lidar.to_dict()),
        ),
        outputs=(
            OutputSpec("intent_logits", (3,), "class_logits", classes=("stop", "go", "turn")),
            OutputSpec("distance", (1,), "regression", units="m"),
            OutputSpec("blocked_logit", (1,), "logit"),
            OutputSpec("embedding", (16,), "opaque"),
        ),
        presence="present",
        presence_order=("bev", "camera_right", "camera_left"),
        fusion="byo",
    )


@pytest.mark.parametrize("contract", [default_contract("attention"), _two_cameras()])
def test_a_v2_contract_survives_its_json(contract: ModelContract) -> None:
    text = contract.to_json()
    assert json.loads(text)["version"] == 2
    assert ModelContract.from_json(text) == contract


def test_graph_tensors_include_the_radar_mask_and_the_presence_vector() -> None:
    assert default_contract().tensors == {
        "camera": (3, 96, 128),
        "lidar": (3, 64, 64),
        "radar": (64, 5),
        "radar_mask": (64,),
        "audio": (1, 40, 48),
        "presence": (4,),
    }
    assert _two_cameras().tensors["present"] == (3,)


def test_the_v1_contract_of_the_shipped_model_converts_to_the_default_contract() -> None:
    converted, default = ModelContract.from_json(V1_SHIPPED), default_contract("attention")
    assert converted.version == 2 and converted.fusion == "attention"
    assert (converted.presence, converted.presence_order) == (default.presence, default.presence_order)
    assert converted.tensors == default.tensors

    def tensors(spec: InputSpec) -> tuple:
        return spec.name, spec.modality, spec.shape, spec.dtype, spec.mask

    assert [tensors(s) for s in converted.inputs] == [tensors(s) for s in default.inputs]
    for old, new in zip(converted.inputs, default.inputs, strict=True):
        assert PARAMS[old.modality].from_dict(old.preprocess) == PARAMS[new.modality].from_dict(
            new.preprocess
        )

    def reading(spec: OutputSpec) -> tuple:
        return spec.name, spec.shape, spec.kind, spec.classes, spec.units

    assert [reading(s) for s in converted.outputs] == [reading(s) for s in default.outputs]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            json.dumps({**json.loads(default_contract().to_json()), "version": 3}),
            "model contract version 3 is newer than this pipeline's (2); upgrade fusion-pipeline",
        ),
        (
            json.dumps({**json.loads(default_contract().to_json()), "version": 0}),
            "model contract version 0: there is no such version (1 or 2)",
        ),
        (
            "{not json",
            "model contract JSON ('fusion.contract') is malformed: JSONDecodeError('Expecting property name "
            "enclosed in double quotes: line 1 column 2 (char 1)')",
        ),
        ('{"version": 2}', "model contract JSON ('fusion.contract') has no key 'inputs'"),
        ("[]", "model contract JSON ('fusion.contract') must be an object, not list"),
    ],
)
def test_a_later_version_or_malformed_json_is_refused(text: str, message: str) -> None:
    with pytest.raises(ContractError, match=f"^{re.escape(message)}$"):
        ModelContract.from_json(text)


def _invalid(*problems: str) -> str:
    return "model contract is invalid:\n" + "\n".join(f"  {p}" for p in problems)


DEFAULT = default_contract()
CLASS_LOGITS = DEFAULT.outputs[0]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"presence": "audio"}, _invalid("tensor name 'audio' is used twice")),
        (
            {"inputs": (*DEFAULT.inputs[:2], replace(DEFAULT.inputs[2], mask="lidar"), DEFAULT.inputs[3])},
            _invalid("tensor name 'lidar' is used twice"),
        ),
        (
            {"outputs": (replace(CLASS_LOGITS, classes=CLASS_LOGITS.classes[:4]), *DEFAULT.outputs[1:])},
            _invalid(
                "outputs.class_logits: class_logits of shape (5,) needs one class name per logit "
                "(classes: ['none', 'car', 'pedestrian', 'cyclist'])"
            ),
        ),
        (
            {"presence_order": ("camera", "lidar", "radar")},
            _invalid(
                "presence_order ['camera', 'lidar', 'radar']: must name each sensor input once "
                "(['camera', 'lidar', 'radar', 'audio'])"
            ),
        ),
        (
            {"presence_order": ("camera", "camera", "lidar", "radar")},
            _invalid(
                "presence_order ['camera', 'camera', 'lidar', 'radar']: must name each sensor input once "
                "(['camera', 'lidar', 'radar', 'audio'])"
            ),
        ),
        (
            {"inputs": (replace(DEFAULT.inputs[0], modality="sonar", dtype="float16"), *DEFAULT.inputs[1:])},
            _invalid(
                "inputs.camera.modality 'sonar': not one of ('camera', 'lidar', 'radar', 'audio', 'generic')",
                "inputs.camera.dtype 'float16': the pipeline feeds float32",
            ),
        ),
        (
            {"inputs": (*DEFAULT.inputs[:2], replace(DEFAULT.inputs[2], mask=""), DEFAULT.inputs[3])},
            _invalid(
                "inputs.radar.mask: a radar input and a generic input in window mode have a mask, no other "
                "input has one"
            ),
        ),
        (
            {"outputs": (*DEFAULT.outputs[:3], replace(DEFAULT.outputs[3], kind="softmax"))},
            _invalid(
                "outputs.siren_logit.kind 'softmax': not one of "
                "('class_logits', 'regression', 'logit', 'opaque')"
            ),
        ),
        (  # two classes of one name: the batch summary merged their counts, compare matched them as one
            {
                "outputs": (
                    replace(CLASS_LOGITS, classes=("none", "car", "car", "cyclist", "none")),
                    *DEFAULT.outputs[1:],
                )
            },
            _invalid(
                "outputs.class_logits.classes: ['car', 'none'] named twice (results, batch figures and "
                "comparisons tell classes by name)"
            ),
        ),
        (
            {"outputs": (*DEFAULT.outputs[:1], replace(DEFAULT.outputs[1], units=5), *DEFAULT.outputs[2:])},
            _invalid("outputs.position.units 5: not a string"),
        ),
        (  # a regression named like the class output's probabilities, and an output named "presence"
            {"outputs": (*DEFAULT.outputs, OutputSpec("class_probs", (5,)), OutputSpec("presence", (4,)))},
            _invalid(
                "outputs: result array 'class_probs' is named twice (outputs, their decoded arrays and "
                "'presence' share the result message)",
                "outputs: result array 'presence' is named twice (outputs, their decoded arrays and "
                "'presence' share the result message)",
            ),
        ),
    ],
)
def test_contracts_that_cannot_be_fed_or_read_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ContractError, match=f"^{re.escape(message)}$"):
        replace(DEFAULT, **changes)


def test_an_invalid_contract_in_json_is_refused_with_the_same_message() -> None:
    raw = json.loads(default_contract().to_json())
    raw["presence_order"] = ["camera", "lidar", "radar"]
    with pytest.raises(
        ContractError, match=re.escape("presence_order ['camera', 'lidar', 'radar']: must name")
    ):
        ModelContract.from_json(json.dumps(raw))


def test_text_fields_of_the_contract_json_are_strings_and_null_is_absent() -> None:
    raw = json.loads(default_contract().to_json())
    raw["outputs"][1]["units"], raw["fusion"] = None, None  # hand-written JSON's "absent"
    contract = ModelContract.from_json(json.dumps(raw))
    assert (contract.outputs[1].units, contract.fusion) == ("", "")
    raw["fusion"], raw["inputs"][0]["modality"] = 7, 3
    with pytest.raises(ContractError) as refused:
        ModelContract.from_json(json.dumps(raw))
    assert str(refused.value) == _invalid(
        "inputs.camera.modality 3: not one of ('camera', 'lidar', 'radar', 'audio', 'generic')",
        "fusion 7: not a string",
    )


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("top", "model contract: unknown keys ['extra_key'] (known: ['fusion', 'inputs', 'outputs', "
         "'presence', 'presence_order', 'version'])"),
        ("input", "inputs[1] ('lidar'): unknown keys ['extra_key'] (known: ['dtype', 'mask', 'meaning', "
         "'modality', 'name', 'preprocess', 'shape'])"),
        ("output", "outputs[0] ('class_logits'): unknown keys ['extra_key'] (known: ['classes', 'kind', "
         "'meaning', 'name', 'shape', 'units'])"),
    ],
)  # fmt: skip
def test_a_key_of_the_contract_json_that_nothing_reads_is_refused(where: str, message: str) -> None:
    """A misspelt key (`"unit"` for `"units"`), or one of a later version, was ignored without a word."""
    raw = json.loads(default_contract().to_json())
    {"top": raw, "input": raw["inputs"][1], "output": raw["outputs"][0]}[where]["extra_key"] = 1
    with pytest.raises(ContractError, match=f"^{re.escape(message)}$"):
        ModelContract.from_json(json.dumps(raw))


def test_an_input_the_contract_lacks_is_named_with_the_inputs_it_has() -> None:
    with pytest.raises(
        ContractError,
        match=re.escape(
            "model contract has no input 'sonar' (inputs: ['camera', 'lidar', 'radar', 'audio'])"
        ),
    ):
        default_contract().input("sonar")
