"""The model package's errors."""

from __future__ import annotations

from fusion_pipeline.errors import FusionError

__all__ = ["ModelError"]


class ModelError(FusionError):
    """A model configuration, checkpoint, dataset or export is invalid."""
