"""The fused model: torch lives only in this package, and is imported only by its submodules."""

from fusion_pipeline.errors import FusionError

__all__ = ["ModelError"]


class ModelError(FusionError):
    """A model configuration, checkpoint, dataset or export is invalid."""
