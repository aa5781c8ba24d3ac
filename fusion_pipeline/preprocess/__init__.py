"""Preprocessing: sensor payloads -> fixed-shape float32 model inputs. numpy only, one module per modality.

This is the only implementation: dataset generation and the ingest nodes both call it, so a model
never sees inputs prepared differently from those it was trained on. Each module exposes PARAMS (what
goes into the contract's `preprocess` field) and one function; `preprocess_sample` maps a modality's
payload to the contract inputs it feeds, by name.

>>> inputs = preprocess_sample("radar", detections)  # {"radar": (64, 5), "radar_mask": (64,)}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from fusion_pipeline.contract import MODALITIES, ModelContract
from fusion_pipeline.preprocess import audio, camera, lidar, radar
from fusion_pipeline.preprocess.audio import preprocess_audio
from fusion_pipeline.preprocess.camera import preprocess_camera
from fusion_pipeline.preprocess.errors import PreprocessError
from fusion_pipeline.preprocess.lidar import preprocess_lidar
from fusion_pipeline.preprocess.radar import preprocess_radar

__all__ = [
    "PARAMS",
    "PREPROCESSORS",
    "PreprocessError",
    "fill_contract",
    "preprocess_audio",
    "preprocess_camera",
    "preprocess_lidar",
    "preprocess_radar",
    "preprocess_sample",
]

#: modality -> function from the sensor payload to {contract input name: array}.
PREPROCESSORS: dict[str, Callable[[np.ndarray], dict[str, np.ndarray]]] = {
    "camera": lambda image: {"camera": preprocess_camera(image)},
    "lidar": lambda points: {"lidar": preprocess_lidar(points)},
    "radar": lambda detections: dict(zip(("radar", "radar_mask"), preprocess_radar(detections), strict=True)),
    "audio": lambda samples: {"audio": preprocess_audio(samples)},
}

#: modality -> the parameters its preprocessing uses, as recorded in the model contract.
PARAMS: dict[str, dict[str, object]] = {
    "camera": camera.PARAMS,
    "lidar": lidar.PARAMS,
    "radar": radar.PARAMS,
    "audio": audio.PARAMS,
}
assert tuple(PREPROCESSORS) == MODALITIES  # the presence-mask order and this registry must not drift


def preprocess_sample(modality: str, payload: np.ndarray) -> dict[str, np.ndarray]:
    """Preprocess one sensor payload; returns the model inputs it feeds, keyed by contract input name."""
    try:
        fn = PREPROCESSORS[modality]
    except KeyError:
        raise PreprocessError(modality, f"unknown modality; known: {', '.join(PREPROCESSORS)}") from None
    return fn(payload)


def fill_contract(contract: ModelContract) -> ModelContract:
    """The contract with every modality input's `preprocess` field set to this module's PARAMS."""
    inputs = tuple(
        dataclasses.replace(spec, preprocess=dict(PARAMS[spec.modality])) if spec.modality in PARAMS else spec
        for spec in contract.inputs
    )
    return dataclasses.replace(contract, inputs=inputs)
