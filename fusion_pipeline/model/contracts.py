"""The contract of a model that `model train --config` trains for a config. Pure data, no torch."""

from __future__ import annotations

from dataclasses import replace

from fusion_pipeline.config import Config
from fusion_pipeline.contract import ModelContract, default_contract

__all__ = ["contract_for_config"]


def contract_for_config(config: Config, fusion: str = "") -> ModelContract:
    """One sensor input per stream, named as the stream binds (its `input`, else its slug: camera/front
    feeds camera_front), with the default preprocessing of its modality; the presence bits in stream
    order; the default model's four outputs. `sim.dataset.sensors_for(config)` renders these inputs."""
    default = default_contract(fusion)
    by_modality = {spec.modality: spec for spec in default.inputs}
    inputs = []
    for stream in config.streams:
        spec, name = by_modality[stream.modality], stream.input or stream.slug
        inputs.append(replace(spec, name=name, mask=f"{name}_mask" if spec.mask else ""))
    return replace(default, inputs=tuple(inputs), presence_order=tuple(s.name for s in inputs))
