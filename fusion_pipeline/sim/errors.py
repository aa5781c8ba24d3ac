"""The simulator's errors: bad sensor settings, a world asked the impossible, a dataset not made or read."""

from __future__ import annotations

from fusion_pipeline.errors import FusionError

__all__ = ["CorruptionError", "DatasetError", "SimError", "WorldError"]


class SimError(FusionError):
    """A stream's [streams.sim] settings are invalid."""


class WorldError(FusionError):
    """A world was asked for something it cannot render (time before its start, bad config)."""


class DatasetError(FusionError):
    """The dataset cannot be generated or its cache file cannot be read."""


class CorruptionError(FusionError):
    """A sensor corruption that does not exist (unknown kind, severity outside 1-3)."""
