"""The fused model: torch lives only in this package, and is imported only by its submodules."""

from fusion_pipeline.model.errors import ModelError

__all__ = ["ModelError"]
