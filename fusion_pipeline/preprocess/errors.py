"""The preprocessors' errors."""

from __future__ import annotations

from fusion_pipeline.errors import FusionError

__all__ = ["PreprocessError"]


class PreprocessError(FusionError):
    """A sensor payload cannot be turned into a model input; the message names the modality and why."""

    def __init__(self, modality: str, message: str) -> None:
        super().__init__(f"{modality}: {message}")
        self.modality = modality
