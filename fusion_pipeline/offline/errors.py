"""The offline runners' errors."""

from __future__ import annotations

from fusion_pipeline.errors import FusionError

__all__ = ["BatchError"]


class BatchError(FusionError):
    """A batch cannot run as asked: its logs, its output directory or manifest, or Ray; the message says
    which."""
