"""The logs' errors: a log that cannot be written or read, a write that lost messages, a ROS 2 bag
that cannot be converted."""

from __future__ import annotations

from collections import Counter

from fusion_pipeline.errors import FusionError

__all__ = ["LogError", "LogWriteError", "Ros2Error"]


class LogError(FusionError):
    """A log cannot be written or read; the message names the file."""


class LogWriteError(LogError):
    """Writing failed (disk full, say). `lost` counts, per stream, the messages that were accepted into
    the open chunk but never reached the file: they are lost with it."""

    def __init__(self, message: str, lost: Counter[str]) -> None:
        super().__init__(message)
        self.lost = lost


class Ros2Error(FusionError):
    """A bag cannot be converted; the message names the topic and the type."""
