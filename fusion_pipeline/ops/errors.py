"""The operations layer's errors."""

from __future__ import annotations

from fusion_pipeline.errors import FusionError

__all__ = ["StatusError"]


class StatusError(FusionError):
    """No supervisor to ask (exit 2); the message says where the command looked."""
