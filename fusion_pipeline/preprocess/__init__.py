"""Preprocessing: sensor payloads -> fixed-shape float32 model inputs, one module per modality; numpy,
and OpenCV for the camera's area resize.

This is the only implementation: dataset generation and the ingest nodes both call it, so a model
never sees inputs prepared differently from those it was trained on. Each module has a Params dataclass
(the contract input's `preprocess` dict, typed; its defaults are the shipped model's front end) and one
function, which runs its input checks (`check_<modality>`, public: what it would refuse can be known
before its arithmetic runs) and then the arithmetic. `preprocessor_for` turns a contract input into the
callable ingest runs on each payload:

>>> prepare = preprocessor_for(contract.input("radar"))
>>> prepare(detections)  # {"radar": (64, 5), "radar_mask": (64,)}
>>> prepare.check(detections)  # raises the PreprocessError prepare(detections) would, computes nothing
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fusion_pipeline.preprocess.audio import AudioParams, LogMelWindows, check_audio, preprocess_audio
from fusion_pipeline.preprocess.camera import CameraParams, check_camera, preprocess_camera
from fusion_pipeline.preprocess.common import Params
from fusion_pipeline.preprocess.errors import PreprocessError
from fusion_pipeline.preprocess.generic import GENERIC_MODES, GenericParams, check_generic, preprocess_generic
from fusion_pipeline.preprocess.lidar import LidarParams, check_lidar, preprocess_lidar
from fusion_pipeline.preprocess.radar import RadarParams, check_radar, preprocess_radar

__all__ = [
    "AudioParams",
    "CameraParams",
    "GENERIC_MODES",
    "GenericParams",
    "InputPreprocessor",
    "LidarParams",
    "LogMelWindows",
    "PARAMS",
    "Params",
    "PreprocessError",
    "RadarParams",
    "SensorInput",
    "check_audio",
    "check_camera",
    "check_generic",
    "check_lidar",
    "check_radar",
    "preprocess_audio",
    "preprocess_camera",
    "preprocess_generic",
    "preprocess_lidar",
    "preprocess_radar",
    "preprocessor_for",
]

#: modality -> its parameters class; the sensors' order is the demo's presence-bit order.
PARAMS: dict[str, type[Params]] = {
    "camera": CameraParams,
    "lidar": LidarParams,
    "radar": RadarParams,
    "audio": AudioParams,
    "generic": GenericParams,
}


class SensorInput(Protocol):
    """What a front end needs of a model input: fusion_pipeline.contract.InputSpec has it. (The contract
    imports this package for PARAMS, so this package names the fields instead of importing it.)"""

    @property
    def name(self) -> str: ...
    @property
    def modality(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def preprocess(self) -> Mapping[str, Any]: ...
    @property
    def mask(self) -> str: ...


@dataclass(frozen=True)
class InputPreprocessor:
    """One contract input's front end: a sensor payload -> {tensor name: array}."""

    name: str
    mask: str
    params: Params
    _run: Callable[[np.ndarray, Params], np.ndarray | tuple[np.ndarray, np.ndarray]]
    _check: Callable[[np.ndarray, Params], np.ndarray]

    def __call__(self, payload: np.ndarray) -> dict[str, np.ndarray]:
        out = self._run(payload, self.params)
        if isinstance(out, tuple):  # radar: the detections and their mask
            return {self.name: out[0], self.mask: out[1]}
        return {self.name: out}

    def check(self, payload: np.ndarray) -> None:
        """Raise the PreprocessError that calling this front end on `payload` would raise; compute
        nothing. A call that passes it returns the contract input's tensors (float32, its shapes)."""
        self._check(payload, self.params)


#: modality -> (its front end, the checks it runs first: everything that makes it raise)
_FUNCTIONS: dict[str, tuple[Callable, Callable]] = {
    "camera": (preprocess_camera, check_camera),
    "lidar": (preprocess_lidar, check_lidar),
    "radar": (preprocess_radar, check_radar),
    "audio": (preprocess_audio, check_audio),
    "generic": (preprocess_generic, check_generic),
}


def preprocessor_for(spec: SensorInput) -> InputPreprocessor:
    """The front end `spec` asks for; refuses (PreprocessError naming the input) parameters this
    pipeline does not implement, or a shape they do not produce."""
    if spec.modality not in PARAMS:
        raise PreprocessError(
            spec.modality, f"input {spec.name!r}: unknown modality; known: {', '.join(PARAMS)}"
        )
    try:
        params = PARAMS[spec.modality].from_dict(spec.preprocess)
    except PreprocessError as exc:
        raise PreprocessError(spec.modality, f"input {spec.name!r}: {exc.detail}") from exc
    if params.shape != tuple(spec.shape):
        raise PreprocessError(
            spec.modality,
            f"input {spec.name!r}: the model wants shape {tuple(spec.shape)}, its preprocess parameters "
            f"give {params.shape}",
        )
    return InputPreprocessor(spec.name, spec.mask, params, *_FUNCTIONS[spec.modality])
