"""The exception hierarchy: every error the library raises on purpose derives from FusionError."""

__all__ = ["FusionError"]


class FusionError(Exception):
    """Base of all fusion-pipeline errors."""
