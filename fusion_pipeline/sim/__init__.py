"""Simulation: the seeded synthetic world, the simulated sensor drivers, the training dataset."""

from __future__ import annotations

from fusion_pipeline.sim.dataset import (
    DATASET_VERSION,
    INPUTS,
    LABELS,
    cache_dir,
    generate,
    render_sample,
)
from fusion_pipeline.sim.drivers import Capture, RenderLead, SensorSchedule, SimSettings, render
from fusion_pipeline.sim.errors import DatasetError, SimError, WorldError
from fusion_pipeline.sim.world import (
    CAMERA_HEIGHT_M,
    CAMERA_SHAPE,
    CLASSES,
    CONDITIONS,
    LIDAR_HEIGHT_M,
    PLACE_S,
    RADAR_HEIGHT_M,
    Actor,
    Labels,
    Scene,
    World,
    WorldConfig,
)

__all__ = [
    "Actor",
    "CAMERA_HEIGHT_M",
    "CAMERA_SHAPE",
    "CLASSES",
    "CONDITIONS",
    "Capture",
    "DATASET_VERSION",
    "DatasetError",
    "INPUTS",
    "LABELS",
    "LIDAR_HEIGHT_M",
    "Labels",
    "PLACE_S",
    "RADAR_HEIGHT_M",
    "RenderLead",
    "Scene",
    "SensorSchedule",
    "SimError",
    "SimSettings",
    "World",
    "WorldConfig",
    "WorldError",
    "cache_dir",
    "generate",
    "render",
    "render_sample",
]
