"""The model contract: what a fused model takes and returns, stored as JSON in ONNX metadata.

Version 2 (docs/MODEL.md, "The contract"): the model declares its sensor inputs (name, modality, shape,
dtype and the preprocessing parameters the pipeline must apply), its presence input with one bit per
sensor input, and its outputs with a kind that says how to read each. The config binds streams to the
inputs (fusion_pipeline.binding). Version 1 (one input per modality, a 4-bit mask in modality order, the
demo's four outputs by name) is read and converted, so older exported models still load.

Pure data and checks; no ONNX Runtime, no torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, get_args

from fusion_pipeline.errors import ContractError
from fusion_pipeline.preprocess import (
    PARAMS,
    AudioParams,
    CameraParams,
    LidarParams,
    PreprocessError,
    RadarParams,
    preprocessor_for,
)

__all__ = [
    "CONTRACT_KEY",
    "CONTRACT_VERSION",
    "INPUT_MODALITIES",
    "MODALITIES",
    "OUTPUT_KINDS",
    "RESULT_PRESENCE",
    "InputSpec",
    "ModelContract",
    "OutputKind",
    "OutputSpec",
    "default_contract",
    "default_input",
]

#: The result message's array of presence bits, beside the outputs (PROTOCOL.md section 8).
RESULT_PRESENCE = "presence"
#: ONNX metadata_props key that holds the contract JSON.
CONTRACT_KEY = "fusion.contract"
CONTRACT_VERSION = 2

#: The modalities a contract input may have: every one the pipeline can preprocess.
INPUT_MODALITIES: tuple[str, ...] = tuple(PARAMS)
#: The sensor modalities of the simulated world, which the model package builds encoders for; a model of
#: one's own may also take a generic stream's samples (docs/MODEL.md).
MODALITIES: tuple[str, ...] = tuple(m for m in INPUT_MODALITIES if m != "generic")

OutputKind = Literal["class_logits", "regression", "logit", "opaque"]
#: class_logits: softmax over `classes`; regression: values in `units`; logit: a probability after a
#: sigmoid; opaque: passed on as it is.
OUTPUT_KINDS: tuple[str, ...] = get_args(OutputKind)


@dataclass(frozen=True)
class InputSpec:
    """One sensor input: the tensor a bound stream's preprocessed messages fill (no batch dimension).

    A radar input also feeds `mask`, a (slots,) float32 tensor that marks real detections; a generic
    input in window mode (``preprocess.mode = "window"``), a (samples,) float32 tensor that marks the rows
    holding a sample.
    """

    name: str
    modality: str
    shape: tuple[int, ...]
    preprocess: Mapping[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    mask: str = ""
    meaning: str = ""

    @property
    def modalities(self) -> list[str]:
        """The modality of each presence bit, in bit order."""
        return [self.input(name).modality for name in self.presence_order]

    @property
    def tensors(self) -> dict[str, tuple[int, ...]]:
        """The graph inputs this sensor input fills, name -> shape."""
        return {self.name: self.shape, **({self.mask: self.shape[:1]} if self.mask else {})}


@dataclass(frozen=True)
class OutputSpec:
    """One model output (no batch dimension) and how to read it."""

    name: str
    shape: tuple[int, ...]
    kind: OutputKind = "opaque"
    classes: tuple[str, ...] = ()  # class_logits: one name per logit
    units: str = ""  # regression: e.g. "m", "m/s"
    meaning: str = ""

    @property
    def decoded(self) -> str:
        """The result array its kind adds beside it: class_logits -> <stem>_probs, a logit -> <stem>_prob
        (``class_logits`` -> ``class_probs``, ``siren_logit`` -> ``siren_prob``); "" for a regression or
        an opaque output, which the result carries as it is."""
        if self.kind == "class_logits":
            return self.name.removesuffix("_logits") + "_probs"
        if self.kind == "logit":
            return self.name.removesuffix("_logit") + "_prob"
        return ""


@dataclass(frozen=True)
class ModelContract:
    """A model's inputs, presence input and outputs. `presence_order` names the sensor input of each
    bit of the presence input, a float32 vector of len(presence_order)."""

    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    presence: str = "presence"
    presence_order: tuple[str, ...] = ()
    fusion: str = ""
    version: int = CONTRACT_VERSION

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise ContractError("model contract is invalid:\n" + "\n".join(f"  {p}" for p in problems))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelContract:
        """Parse a contract; version 1 is converted (see `_from_v1`), a later version is refused."""
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict):
                raise ContractError(
                    f"model contract JSON ({CONTRACT_KEY!r}) must be an object, not {type(raw).__name__}"
                )
            version = int(raw.get("version", 1))
            if version == 1:
                return _from_v1(raw)
            if version > CONTRACT_VERSION:
                raise ContractError(
                    f"model contract version {version} is newer than this pipeline's ({CONTRACT_VERSION}); "
                    "upgrade fusion-pipeline"
                )
            if version != CONTRACT_VERSION:
                raise ContractError(f"model contract version {version}: there is no such version (1 or 2)")
            _known_keys(raw, cls, "model contract")
            for where, specs, spec_type in (
                ("inputs", raw["inputs"], InputSpec),
                ("outputs", raw["outputs"], OutputSpec),
            ):
                for i, spec in enumerate(specs):
                    _known_keys(spec, spec_type, f"{where}[{i}] ({spec.get('name', '?')!r})")
            return cls(
                inputs=tuple(_input(s) for s in raw["inputs"]),
                outputs=tuple(_output(s) for s in raw["outputs"]),
                presence=raw["presence"],
                presence_order=tuple(raw["presence_order"]),
                fusion=_text(raw, "fusion"),
            )
        except KeyError as exc:
            raise ContractError(f"model contract JSON ({CONTRACT_KEY!r}) has no key {exc.args[0]!r}") from exc
        except (ValueError, TypeError, AttributeError) as exc:
            raise ContractError(f"model contract JSON ({CONTRACT_KEY!r}) is malformed: {exc!r}") from exc

    def input(self, name: str) -> InputSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise ContractError(f"model contract has no input {name!r} (inputs: {[s.name for s in self.inputs]})")

    def inputs_for(self, modality: str) -> tuple[InputSpec, ...]:
        return tuple(s for s in self.inputs if s.modality == modality)

    @property
    def modalities(self) -> list[str]:
        """The modality of each presence bit, in bit order."""
        return [self.input(name).modality for name in self.presence_order]

    @property
    def tensors(self) -> dict[str, tuple[int, ...]]:
        """Every graph input, name -> shape: the sensor inputs' tensors and the presence vector."""
        shapes = {name: shape for spec in self.inputs for name, shape in spec.tensors.items()}
        return {**shapes, self.presence: (len(self.presence_order),)}


def _problems(contract: ModelContract) -> list[str]:
    """What makes a contract unusable, each naming the input or output."""
    problems = []
    names = [n for s in contract.inputs for n in s.tensors] + [contract.presence]
    problems += [f"tensor name {n!r} is used twice" for n in sorted({n for n in names if names.count(n) > 1})]
    for spec in contract.inputs:
        if spec.modality not in INPUT_MODALITIES:
            problems.append(f"inputs.{spec.name}.modality {spec.modality!r}: not one of {INPUT_MODALITIES}")
        if spec.dtype != "float32":
            problems.append(f"inputs.{spec.name}.dtype {spec.dtype!r}: the pipeline feeds float32")
        if bool(spec.mask) != _has_mask(spec):
            problems.append(
                f"inputs.{spec.name}.mask: a radar input and a generic input in window mode have a mask, no "
                "other input has one"
            )
        if spec.modality in INPUT_MODALITIES:
            try:  # parameters the front ends implement, giving the shape the model wants
                preprocessor_for(spec)
            except PreprocessError as exc:
                problems.append(f"inputs.{spec.name}.preprocess: {exc.detail}")
    inputs = [s.name for s in contract.inputs]
    if sorted(contract.presence_order) != sorted(inputs):
        problems.append(
            f"presence_order {list(contract.presence_order)}: must name each sensor input once ({inputs})"
        )
    problems += [
        f"{key} {value!r}: not a string"
        for key, value in (("presence", contract.presence), ("fusion", contract.fusion))
        if not isinstance(value, str)
    ]
    for spec in contract.inputs:  # (a modality of another type is "not one of" the modalities above)
        texts = {"name": spec.name, "mask": spec.mask, "meaning": spec.meaning}
        problems += [
            f"inputs.{spec.name}.{k} {v!r}: not a string" for k, v in texts.items() if not isinstance(v, str)
        ]
    for out in contract.outputs:
        texts = {"name": out.name, "units": out.units, "meaning": out.meaning}
        problems += [
            f"outputs.{out.name}.{k} {v!r}: not a string" for k, v in texts.items() if not isinstance(v, str)
        ]
        if not all(isinstance(c, str) for c in out.classes):
            problems.append(f"outputs.{out.name}.classes {list(out.classes)}: each class name is a string")
        elif twice := sorted({c for c in out.classes if out.classes.count(c) > 1}):
            problems.append(
                f"outputs.{out.name}.classes: {twice} named twice (results, batch figures and comparisons "
                "tell classes by name)"
            )
        if out.kind not in OUTPUT_KINDS:
            problems.append(f"outputs.{out.name}.kind {out.kind!r}: not one of {OUTPUT_KINDS}")
        elif out.kind == "class_logits" and (len(out.shape) != 1 or out.shape[0] != len(out.classes)):
            problems.append(
                f"outputs.{out.name}: class_logits of shape {out.shape} needs one class name per logit "
                f"(classes: {list(out.classes)})"
            )
    arrays = [o.name for o in contract.outputs] + [o.decoded for o in contract.outputs if o.decoded]
    arrays.append(RESULT_PRESENCE)
    problems += [
        f"outputs: result array {n!r} is named twice (outputs, their decoded arrays and "
        f"{RESULT_PRESENCE!r} share the result message)"
        for n in sorted({n for n in arrays if arrays.count(n) > 1})
    ]
    return problems


def _known_keys(raw: dict[str, Any], record: type, where: str) -> None:
    """Refuse keys of a contract's JSON that `record` (a dataclass) has no field for: a misspelt key,
    or one of a later version, would be ignored."""
    unknown = sorted(set(raw) - {f.name for f in fields(record)})
    if unknown:
        raise ContractError(
            f"{where}: unknown keys {unknown} (known: {sorted(f.name for f in fields(record))})"
        )


def _has_mask(spec: InputSpec) -> bool:
    return spec.modality == "radar" or (
        spec.modality == "generic" and spec.preprocess.get("mode") == "window"
    )


def _input(raw: dict[str, Any]) -> InputSpec:
    return InputSpec(
        name=raw["name"],
        modality=raw["modality"],
        shape=tuple(int(d) for d in raw["shape"]),
        preprocess=dict(raw.get("preprocess", {})),
        dtype=raw.get("dtype", "float32"),
        mask=_text(raw, "mask"),
        meaning=_text(raw, "meaning"),
    )


def _output(raw: dict[str, Any]) -> OutputSpec:
    return OutputSpec(
        name=raw["name"],
        shape=tuple(int(d) for d in raw["shape"]),
        kind=raw.get("kind", "opaque"),
        classes=tuple(raw.get("classes", ())),
        units=_text(raw, "units"),
        meaning=_text(raw, "meaning"),
    )


def _text(raw: dict[str, Any], key: str) -> Any:
    """An optional text field: absent or null is empty; any other value is checked as it is."""
    value = raw.get(key)
    return "" if value is None else value


#: How version 1 read the demo's outputs, by name.
_V1_OUTPUTS: dict[str, dict[str, Any]] = {
    "class_logits": {"kind": "class_logits"},
    "position": {"kind": "regression", "units": "m"},
    "velocity": {"kind": "regression", "units": "m/s"},
    "siren_logit": {"kind": "logit"},
}


def _from_v1(raw: dict[str, Any]) -> ModelContract:
    """Version 1: one input per modality named after it (radar's mask as its own `radar_mask` input),
    the presence mask in `modalities` order, outputs read by their names, `classes` at the top."""
    specs = [s for s in raw["inputs"] if s.get("modality") and not s["name"].endswith("_mask")]
    masks = {s["name"] for s in raw["inputs"] if s["name"].endswith("_mask")}
    inputs = tuple(
        replace(_input(s), mask=f"{s['name']}_mask" if f"{s['name']}_mask" in masks else "") for s in specs
    )
    by_modality = {s.modality: s.name for s in inputs}
    outputs = tuple(_v1_output(s, tuple(raw["classes"])) for s in raw["outputs"])
    return ModelContract(
        inputs=inputs,
        outputs=outputs,
        presence=raw["presence_input"],
        presence_order=tuple(by_modality[m] for m in raw["modalities"]),
        fusion=raw.get("fusion", ""),
    )


def _v1_output(raw: dict[str, Any], classes: tuple[str, ...]) -> OutputSpec:
    how = _V1_OUTPUTS.get(raw["name"], {})
    return replace(_output(raw), **how, classes=classes if how.get("kind") == "class_logits" else ())


def default_input(modality: str, name: str) -> InputSpec:
    """The shipped model's input of `modality` under another name (a radar's mask renamed with it): what
    a model trained for a config (`model train --config`) takes from each stream."""
    spec = default_contract().inputs_for(modality)[0]
    mask = f"{name}_mask" if spec.mask else ""
    meaning = spec.meaning.replace(spec.mask, mask) if spec.mask else spec.meaning  # names its mask
    return replace(spec, name=name, mask=mask, meaning=meaning)


def default_contract(fusion: str = "") -> ModelContract:
    """The contract of the shipped model: one input per modality, named after it, with the default
    preprocessing; the presence bits in modality order."""
    camera, lidar, radar, audio = CameraParams(), LidarParams(), RadarParams(), AudioParams()
    return ModelContract(
        inputs=(
            InputSpec("camera", "camera", camera.shape, camera.to_dict(), meaning="normalised RGB, CHW"),
            InputSpec(
                "lidar",
                "lidar",
                lidar.shape,
                lidar.to_dict(),
                meaning="BEV: occupancy, max height, intensity",
            ),
            InputSpec(
                "radar",
                "radar",
                radar.shape,
                radar.to_dict(),
                mask="radar_mask",
                meaning="detections x,y,z,v_r,rcs, zero padded; radar_mask: 1 for a real detection",
            ),
            InputSpec("audio", "audio", audio.shape, audio.to_dict(), meaning="log-mel"),
        ),
        outputs=(
            OutputSpec(
                "class_logits",
                (5,),
                "class_logits",
                classes=("none", "car", "pedestrian", "cyclist", "emergency"),
                meaning="logits over classes",
            ),
            OutputSpec(
                "position", (2,), "regression", units="m", meaning="primary actor x, y in the ego frame"
            ),
            OutputSpec("velocity", (1,), "regression", units="m/s", meaning="primary actor radial velocity"),
            OutputSpec("siren_logit", (1,), "logit", meaning="logit that a siren is present"),
        ),
        presence_order=("camera", "lidar", "radar", "audio"),
        fusion=fusion,
    )
