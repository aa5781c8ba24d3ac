"""The model contract: what a fused model takes and returns, stored as JSON in ONNX metadata.

Pure data and checks; no ONNX Runtime, no torch. The runtime, the exporter and the ingest nodes all
read the shapes from here, so one change of an input's shape cannot leave one side behind.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from fusion_pipeline.errors import ContractError

__all__ = [
    "CONTRACT_KEY",
    "MODALITIES",
    "ModelContract",
    "TensorSpec",
    "default_contract",
]

#: ONNX metadata_props key that holds the contract JSON.
CONTRACT_KEY = "fusion.contract"

#: Presence-mask order: bit i of the mask is MODALITIES[i].
MODALITIES: tuple[str, ...] = ("camera", "lidar", "radar", "audio")


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output. `shape` excludes the leading dynamic batch dimension."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    modality: str | None = None  # None for the presence mask and for outputs
    meaning: str = ""
    preprocess: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelContract:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    presence_input: str = "presence"
    modalities: tuple[str, ...] = MODALITIES
    classes: tuple[str, ...] = ("none", "car", "pedestrian", "cyclist", "emergency")
    fusion: str = ""
    version: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelContract:
        try:
            raw = json.loads(text)
            return cls(
                inputs=tuple(_spec(s) for s in raw["inputs"]),
                outputs=tuple(_spec(s) for s in raw["outputs"]),
                presence_input=raw["presence_input"],
                modalities=tuple(raw["modalities"]),
                classes=tuple(raw["classes"]),
                fusion=raw.get("fusion", ""),
                version=int(raw.get("version", 1)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ContractError(f"model contract JSON ({CONTRACT_KEY!r}) is malformed: {exc}") from exc

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise ContractError(f"model contract has no input {name!r}")

    def inputs_for(self, modality: str) -> tuple[TensorSpec, ...]:
        return tuple(s for s in self.inputs if s.modality == modality)


def _spec(raw: dict[str, Any]) -> TensorSpec:
    return TensorSpec(
        name=raw["name"],
        shape=tuple(int(d) for d in raw["shape"]),
        dtype=raw.get("dtype", "float32"),
        modality=raw.get("modality"),
        meaning=raw.get("meaning", ""),
        preprocess=dict(raw.get("preprocess", {})),
    )


# Audio front end: 0.5 s at 16 kHz, 25 ms Hann window, 10 ms hop, no centre padding -> 48 frames.
AUDIO_SAMPLE_RATE = 16_000
AUDIO_WINDOW_S = 0.5
AUDIO_N_FFT = 400
AUDIO_HOP = 160
AUDIO_N_MELS = 40
AUDIO_FRAMES = 1 + (int(AUDIO_SAMPLE_RATE * AUDIO_WINDOW_S) - AUDIO_N_FFT) // AUDIO_HOP


def default_contract(fusion: str = "") -> ModelContract:
    """The contract of the shipped model; preprocessing parameters are filled in by preprocess/."""
    return ModelContract(
        inputs=(
            TensorSpec("camera", (3, 96, 128), modality="camera", meaning="normalised RGB, CHW"),
            TensorSpec(
                "lidar", (3, 64, 64), modality="lidar", meaning="BEV: occupancy, max height, intensity"
            ),
            TensorSpec("radar", (64, 5), modality="radar", meaning="detections x,y,z,v_r,rcs; zero padded"),
            TensorSpec(
                "radar_mask", (64,), modality="radar", meaning="1 for a real detection, 0 for padding"
            ),
            TensorSpec("audio", (1, AUDIO_N_MELS, AUDIO_FRAMES), modality="audio", meaning="log-mel"),
            TensorSpec(
                "presence", (len(MODALITIES),), meaning="1 = modality present, order " + ",".join(MODALITIES)
            ),
        ),
        outputs=(
            TensorSpec("class_logits", (5,), meaning="logits over classes"),
            TensorSpec("position", (2,), meaning="primary actor x, y in the ego frame, m"),
            TensorSpec("velocity", (1,), meaning="primary actor radial velocity, m/s"),
            TensorSpec("siren_logit", (1,), meaning="logit that a siren is present"),
        ),
        fusion=fusion,
    )
