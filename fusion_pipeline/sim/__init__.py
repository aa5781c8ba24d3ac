"""Simulation: the seeded synthetic world, the simulated sensor drivers, the training dataset.

One scene renders any number of cameras, lidars, radars and microphones, each from its `Mount` (yaw,
position, a camera's field of view), with data in the sensor's own frame; a `Corruption` degrades a
sensor's payload at one of three severities.
"""

from __future__ import annotations

from fusion_pipeline.sim.corruptions import CORRUPTIONS, SEVERITIES, Corruption, CorruptionMix
from fusion_pipeline.sim.dataset import (
    DATASET_VERSION,
    DEFAULT_SENSORS,
    INPUTS,
    LABELS,
    Sensor,
    cache_dir,
    generate,
    render_sample,
    sensors_for,
)
from fusion_pipeline.sim.drivers import Capture, RenderLead, SensorSchedule, SimSettings, render
from fusion_pipeline.sim.errors import CorruptionError, DatasetError, SimError, WorldError
from fusion_pipeline.sim.world import (
    AUDIO_SAMPLE_RATE,
    CAMERA_FOV_DEG,
    CAMERA_HEIGHT_M,
    CAMERA_SHAPE,
    CLASSES,
    CONDITIONS,
    DEFAULT_MOUNT,
    LIDAR_HEIGHT_M,
    PLACE_S,
    RADAR_HEIGHT_M,
    Actor,
    Labels,
    Mount,
    Scene,
    World,
    WorldConfig,
)

__all__ = [
    "AUDIO_SAMPLE_RATE",
    "Actor",
    "CAMERA_FOV_DEG",
    "CAMERA_HEIGHT_M",
    "CAMERA_SHAPE",
    "CLASSES",
    "CONDITIONS",
    "CORRUPTIONS",
    "Capture",
    "Corruption",
    "CorruptionError",
    "CorruptionMix",
    "DATASET_VERSION",
    "DEFAULT_MOUNT",
    "DEFAULT_SENSORS",
    "DatasetError",
    "INPUTS",
    "LABELS",
    "LIDAR_HEIGHT_M",
    "Labels",
    "Mount",
    "PLACE_S",
    "RADAR_HEIGHT_M",
    "RenderLead",
    "SEVERITIES",
    "Scene",
    "Sensor",
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
    "sensors_for",
]
