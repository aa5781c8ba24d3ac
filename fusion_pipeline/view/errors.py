"""The viewer's errors."""

from __future__ import annotations

from fusion_pipeline.errors import FusionError

__all__ = ["ViewError"]


class ViewError(FusionError):
    """The viewer cannot start or write as asked: the [view] extra missing, rerun's analytics switch
    refused, an output file, a viewer process that did not come up; the message says which."""
