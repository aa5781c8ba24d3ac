"""The contract of a model that `model train --config` trains for a config. Pure data, no torch."""

from __future__ import annotations

from dataclasses import replace

from fusion_pipeline.config import Config
from fusion_pipeline.contract import ModelContract, default_contract, default_input
from fusion_pipeline.sim.dataset import trained_streams

__all__ = ["contract_for_config"]


def contract_for_config(config: Config, fusion: str = "") -> ModelContract:
    """One sensor input per stream a trained model takes (`trained_streams`), named as the stream binds
    (its `input`, else its slug: camera/front feeds camera_front), with the default preprocessing of its
    modality; the presence bits in stream order; the default model's four outputs.
    `sim.dataset.sensors_for(config)` renders these inputs."""
    inputs = tuple(default_input(stream.modality, stream.input_name) for stream in trained_streams(config))
    return replace(default_contract(fusion), inputs=inputs, presence_order=tuple(s.name for s in inputs))
